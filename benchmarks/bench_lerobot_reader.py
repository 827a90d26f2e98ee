"""LeRobot reader throughput vs decoding the same mp4 frames directly with PyAV (the reader's overhead).

Writes a synthetic LeRobot v3.0 dataset (mp4, H.264 when available, a key frame every `--gop` frames:
LeRobot's own writer uses 2), then measures in the same run, best of `--repeats` interleaved rounds:
  baseline   PyAV: open each mp4 and decode every frame to RGB, in order, one decoder thread (the codec's
             own cost; the reader decodes with one thread too). FFmpeg's default threading is shown beside;
  ...        the single-process rows are timed in process CPU time by default (`--timer cpu`: robust on
             a shared machine, equal to wall time on a quiet one for single-threaded work); the DataLoader
             rows are wall time (their work runs in worker processes);
  reader     LeRobotDataset[i] for every frame in order (frames + state + action chunk + language);
  shuffled   LeRobotDataset[i] in random order (what a shuffled DataLoader does);
  workers    a shuffled DataLoader with 0 and with 2 worker processes (persistent workers; the epoch after
             the first is timed, so process start-up is not);
  lerobot    (with --lerobot-python PATH) LeRobot's own LeRobotDataset on the same directory, in order
             and shuffled, run by that interpreter (lerobot 0.4.4 lives in its own venv with its own torch).
Prints frames/s (one frame = one camera image) and the ratios to the baseline (1.0 = no overhead).

    PYTHONPATH=src python benchmarks/bench_lerobot_reader.py                  # ~30 s
    PYTHONPATH=src python benchmarks/bench_lerobot_reader.py --episodes 20 --length 100 --image_size 224
    PYTHONPATH=src python benchmarks/bench_lerobot_reader.py --lerobot-python /opt/lerobot-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from torch.utils.data import DataLoader

from hf_vlmdrive.data.lerobot import LeRobotDataset, make_synthetic_libero


def decode_all(paths: list[Path], threads: int | None) -> int:
    # One RGB converter for the run, as the reader keeps one (PyAV 18's `to_ndarray(format=...)` builds a new
    # one per frame, which costs more than decoding these small frames).
    convert = VideoReformatter()
    n = 0
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if threads is not None:
                stream.codec_context.thread_count = threads
            for frame in container.decode(stream):
                convert.reformat(frame, format="rgb24", threads=1 if threads else 0).to_ndarray()
                n += 1
    return n


LEROBOT_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    root, n_shuffled, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    clock = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
    out = {}
    for backend in ("pyav", "torchcodec"):
        try:
            ds = LeRobotDataset("local/bench", root=root, video_backend=backend)
            ds[0]
        except Exception as e:  # torchcodec needs the system FFmpeg libraries
            out[backend] = {"error": f"{type(e).__name__}: {e}"[:300]}
            continue
        cams = len(ds.meta.video_keys)
        order = np.random.default_rng(0).permutation(len(ds))[:n_shuffled]
        res = {}
        for name, idx in (("sequential", range(len(ds))), ("shuffled", order)):
            best = 0.0
            for _ in range(repeats):
                ds = LeRobotDataset("local/bench", root=root, video_backend=backend)  # not timed, as ours
                t = clock()
                for i in idx:
                    ds[int(i)]
                best = max(best, len(idx) * cams / (clock() - t))
            res[name] = best
        out[backend] = res
    print("LEROBOT_JSON " + json.dumps(out))
""")


def run_lerobot(python: str, root: Path, n_shuffled: int, repeats: int, timer: str) -> dict:
    proc = subprocess.run([python, "-c", LEROBOT_SCRIPT, str(root), str(n_shuffled), str(repeats), timer],
                          capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("LEROBOT_JSON "):
            return json.loads(line[len("LEROBOT_JSON "):])
    return {"error": (proc.stderr or proc.stdout)[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--gop", type=int, default=2, help="frames between key frames (LeRobot's writer: 2)")
    parser.add_argument("--shuffled_samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--timer", choices=("cpu", "wall"), default="cpu",
                        help="clock of the single-process rows (the DataLoader rows are always wall time)")
    parser.add_argument("--lerobot-python", dest="lerobot_python", default=None,
                        help="python of a venv with lerobot 0.4.4, to time LeRobot's own reader side by side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_libero(Path(tmp) / "ds", num_episodes=args.episodes, episode_length=args.length,
                                     image_size=args.image_size, image_storage="video", episodes_per_file=4,
                                     gop=args.gop)
        ds = LeRobotDataset(root, action_horizon=8)
        cams = ds.camera_keys
        videos = sorted(root.glob("videos/**/*.mp4"))
        print(f"dataset: {len(ds)} frames x {len(cams)} cameras, {len(videos)} mp4 files, "
              f"codec {ds.features[cams[0]]['info']['video.codec']}, {args.image_size}px, key frame every {args.gop}")

        decode_all(videos, None)  # warm-up (library loading, page cache), untimed

        def fresh() -> LeRobotDataset:  # parquet + metadata loading is not timed; opening the videos is
            return LeRobotDataset(root, action_horizon=8)

        def sequential(d) -> int:
            for i in range(len(d)):
                d[i]
            return len(d) * len(cams)

        order = np.random.default_rng(0).permutation(len(ds))[: args.shuffled_samples]

        def shuffled(d) -> int:
            for i in order:
                d[int(i)]
            return len(order) * len(cams)

        def loader(workers: int):
            def setup():  # a DataLoader whose first epoch (worker start-up, file opening) is not timed
                dl = DataLoader(fresh(), batch_size=args.batch_size, shuffle=True, num_workers=workers,
                                collate_fn=list, persistent_workers=workers > 0)
                sum(len(b) for b in dl)
                return dl

            def run(dl) -> int:  # the next epoch: what every epoch of a long training run costs
                return sum(len(b) for b in dl) * len(cams)
            return run, setup

        # Interleaved repeats (each measurement once per round, best round kept): a machine whose load
        # changes during the run then biases no measurement against another.
        runs = {
            "base_default": (lambda _: decode_all(videos, None), None),
            "base_single": (lambda _: decode_all(videos, 1), None),
            "reader": (sequential, fresh),
            "shuffled": (shuffled, fresh),
            "workers0": loader(0),
            "workers2": loader(2),
        }
        best = dict.fromkeys(runs, 0.0)
        for _ in range(args.repeats):
            for name, (fn, setup) in runs.items():
                arg = setup() if setup is not None else None
                clock = time.perf_counter if (name.startswith("workers") or name == "base_default"
                                              or args.timer == "wall") else time.process_time
                t = clock()
                n = fn(arg)
                best[name] = max(best[name], n / (clock() - t))
        base_default, base_single = best["base_default"], best["base_single"]
        base = base_single
        reader, shuf, w0, w2 = best["reader"], best["shuffled"], best["workers0"], best["workers2"]
        lerobot = run_lerobot(args.lerobot_python, root, args.shuffled_samples, args.repeats, args.timer) if args.lerobot_python else None

    print(f"PyAV decode, FFmpeg threads:   {base_default:8.1f} frames/s   (wall time, for reference)")
    print(f"PyAV decode, 1 thread:         {base_single:8.1f} frames/s   (baseline; {args.timer} time)")
    print(f"reader, sequential:            {reader:8.1f} frames/s   ratio reader/baseline = {reader / base:.2f}")
    print(f"reader, shuffled access:       {shuf:8.1f} frames/s   ratio shuffled/baseline = {shuf / base:.2f}")
    print(f"DataLoader shuffled, 0 workers:{w0:8.1f} frames/s")
    print(f"DataLoader shuffled, 2 workers:{w2:8.1f} frames/s   ratio workers2/workers0 = {w2 / w0:.2f}")
    if lerobot is not None:
        if "error" in lerobot:
            print(f"lerobot: could not run: {lerobot['error']}")
        for backend, res in lerobot.items():
            if backend == "error":
                continue
            if "error" in res:
                print(f"lerobot ({backend}): {res['error']}")
                continue
            print(f"lerobot ({backend}), sequential:{res['sequential']:8.1f} frames/s   "
                  f"ratio lerobot_{backend}/baseline = {res['sequential'] / base:.2f}   ours/lerobot = {reader / res['sequential']:.2f}")
            print(f"lerobot ({backend}), shuffled:  {res['shuffled']:8.1f} frames/s   "
                  f"ratio lerobot_{backend}_shuffled/baseline = {res['shuffled'] / base:.2f}   ours/lerobot = {shuf / res['shuffled']:.2f}")


if __name__ == "__main__":
    main()
