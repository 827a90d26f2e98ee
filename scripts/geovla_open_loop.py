"""Open-loop check of a trained GeoVLA on LIBERO demonstrations: per task, the first 5 actions of the predicted
chunk (the part the evaluation executes) against the demonstration's, as the arm's mean absolute error and the
gripper's sign agreement. Tells a policy that does not fit the expert apart from one that fits it along the
expert's states yet fails closed loop (compounding error).

    python scripts/geovla_open_loop.py RUN_DIR DATASET_DIR [--frames 150] [--image-size 128]

DATASET_DIR: a LeRobot dataset of `hf-vlmdrive data libero-demos` (the training one, or demonstrations on the
evaluation's fixed initial states: `--init-states fixed`).
"""

import argparse

import numpy as np

from hf_vlmdrive.data.lerobot.dataset import LeRobotDataset
from hf_vlmdrive.serving.policy import load_policy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("dataset")
    p.add_argument("--frames", type=int, default=150, help="frames drawn (seed 0) from the dataset")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--executed", type=int, default=5, help="actions of a chunk compared (the replan steps)")
    args = p.parse_args()
    ds = LeRobotDataset(args.dataset, action_horizon=8)
    policy = load_policy(args.run, key_map={"image_shape": [args.image_size, args.image_size, 3]}, device="cpu",
                         noise="fixed")
    rows = np.random.default_rng(0).choice(len(ds), min(args.frames, len(ds)), replace=False)
    per_task: dict[str, list[tuple[float, float, float]]] = {}
    for row in rows:
        item = ds[int(row)]
        cams = dict(zip(item["camera_keys"], item["images"]))
        obs = {"observation/image": cams["observation.images.image"],
               "observation/wrist_image": cams["observation.images.wrist_image"],
               "observation/state": item["state"].astype(np.float64), "prompt": item["language"]}
        pred = np.asarray(policy.infer(obs)["actions"])[: args.executed]
        true = item["actions"][: args.executed]
        per_task.setdefault(item["language"], []).append((
            float(np.abs(pred[:, :6] - true[:, :6]).mean()), float((np.sign(pred[:, 6]) == np.sign(true[:, 6])).mean()),
            float(np.abs(true[:, :6]).mean())))
    for task, values in sorted(per_task.items()):
        a = np.array(values)
        print(f"{task}: {len(a)} frames, arm L1 {a[:, 0].mean():.3f} (expert mean |action| {a[:, 2].mean():.3f}), "
              f"gripper sign agreement {a[:, 1].mean():.1%}")


if __name__ == "__main__":
    main()
