"""LeRobot v2.1 / v3.0 reader and writer: files written in the real layout, read back, and broken on purpose."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hf_vlmdrive.data.lerobot import (
    MIXTURES,
    LeRobotDataset,
    LeRobotEpisode,
    LeRobotFormatError,
    LeRobotMixture,
    WeightedMixtureSampler,
    load_mixture,
    load_stats,
    make_synthetic_libero,
    write_lerobot_dataset,
)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("av")

CAM = "observation.images.image"


def _episodes(n=3, length=10, size=32, seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    for e in range(n):
        frames = np.zeros((length, size, size, 3), np.uint8)
        for i in range(length):  # a flat colour that changes per frame: survives lossy video coding
            frames[i] = (20 * i + 10, 100 + 10 * e, 200 - 15 * i)
        eps.append(LeRobotEpisode(
            task=f"task {e % 2}",
            state=rng.normal(size=(length + e, 8)).astype(np.float32)[:length],
            action=rng.normal(size=(length, 7)).astype(np.float32),
            images={CAM: frames},
        ))
    return eps


@pytest.fixture(scope="module", params=[("v3.0", "video"), ("v3.0", "image"), ("v2.1", "video"), ("v2.1", "image")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def written(request, tmp_path_factory):
    version, storage = request.param
    root = tmp_path_factory.mktemp(f"ds_{version}_{storage}")
    eps = _episodes()
    write_lerobot_dataset(root, eps, fps=10, version=version, image_storage=storage,
                          episodes_per_file=2 if version == "v3.0" else None)
    return root, eps, version, storage


def test_layout_and_meta_files(written):
    root, eps, version, storage = written
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == version
    assert info["total_episodes"] == 3 and info["total_frames"] == 30 and info["fps"] == 10
    assert info["features"][CAM]["dtype"] == storage and info["features"]["action"]["shape"] == [7]
    assert (root / "meta/stats.json").is_file()
    if version == "v3.0":
        # as LeRobot 0.4.4 reads it: pandas, the task string is the row's index (`tasks.iloc[task_index].name`)
        import pandas as pd

        tasks = pd.read_parquet(root / "meta/tasks.parquet")
        assert tasks.index.name == "task" and list(tasks.columns) == ["task_index"]
        assert {tasks.iloc[i].name: int(tasks.iloc[i]["task_index"]) for i in range(len(tasks))} == {
            t: i for i, t in LeRobotDataset(root).tasks.items()}
        assert all(isinstance(tasks.iloc[i].name, str) for i in range(len(tasks)))
        assert (root / "data/chunk-000/file-000.parquet").is_file() and (root / "data/chunk-000/file-001.parquet").is_file()
        ep = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
        assert [e["dataset_from_index"] for e in ep] == [0, 10, 20]
        assert [e["dataset_to_index"] for e in ep] == [10, 20, 30]
        if storage == "video":
            # episodes 0 and 1 share file-000.mp4: episode 1 starts 1 s into it
            assert ep[1][f"videos/{CAM}/from_timestamp"] == pytest.approx(1.0)
            assert ep[2][f"videos/{CAM}/file_index"] == 1 and ep[2][f"videos/{CAM}/from_timestamp"] == 0.0
            assert (root / f"videos/{CAM}/chunk-000/file-000.mp4").is_file()
    else:
        assert (root / "meta/episodes.jsonl").is_file() and (root / "meta/tasks.jsonl").is_file()
        assert (root / "data/chunk-000/episode_000002.parquet").is_file()
        if storage == "video":
            assert (root / f"videos/chunk-000/{CAM}/episode_000001.mp4").is_file()


def test_reader_values_chunks_and_images(written):
    root, eps, version, storage = written
    ds = LeRobotDataset(root, action_horizon=4)
    assert len(ds) == 30 and ds.num_episodes == 3 and ds.camera_keys == [CAM]
    s = ds[12]  # episode 1, frame 2
    assert s["episode_index"] == 1 and s["frame_index"] == 2 and s["language"] == "task 1"
    np.testing.assert_array_equal(s["state"], eps[1].state[2])
    np.testing.assert_array_equal(s["actions"], eps[1].action[2:6])
    assert not s["action_is_pad"].any()
    end = ds[19]  # last frame of episode 1: 3 padded steps repeating the last action
    assert end["action_is_pad"].tolist() == [False, True, True, True]
    np.testing.assert_array_equal(end["actions"], np.repeat(eps[1].action[9:10], 4, axis=0))
    for row, (e, i) in [(0, (0, 0)), (13, (1, 3)), (19, (1, 9)), (25, (2, 5)), (7, (0, 7))]:  # random access order
        img = ds[row]["images"][0]
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        expected = eps[e].images[CAM][i].astype(int)
        if storage == "image":
            np.testing.assert_array_equal(img, expected)
        else:
            assert np.abs(img.astype(int) - expected).mean() < 6, (row, np.abs(img.astype(int) - expected).mean())


def test_stats_match_numpy(written):
    root, eps, _, _ = written
    stats = load_stats(root)
    actions = np.concatenate([e.action for e in eps])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], actions.std(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["q01"], np.quantile(actions, 0.01, axis=0), rtol=1e-5, atol=1e-6)
    assert stats["action"]["count"].tolist() == [30]
    assert stats[CAM]["mean"].shape == (3, 1, 1)


def test_v21_episode_stats_aggregate_to_dataset_stats(tmp_path):
    eps = _episodes()
    root = write_lerobot_dataset(tmp_path / "d", eps, version="v2.1", image_storage="image")
    assert (root / "meta/episodes_stats.jsonl").is_file()
    from hf_vlmdrive.data.lerobot import aggregate_episode_stats

    lines = [json.loads(x)["stats"] for x in (root / "meta/episodes_stats.jsonl").read_text().splitlines()]
    agg = aggregate_episode_stats(lines)
    states = np.concatenate([e.state for e in eps])
    np.testing.assert_allclose(agg["observation.state"]["mean"], states.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(agg["observation.state"]["std"], states.std(0), rtol=1e-5, atol=1e-6)
    assert agg["action"]["count"] == [30]
    (root / "meta/stats.json").unlink()  # a v2.1 dataset without stats.json: the reader aggregates
    np.testing.assert_allclose(LeRobotDataset(root).stats["action"]["mean"], agg["action"]["mean"])


def _copy(written, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(written[0], root)
    return root


def test_wrong_version_is_an_error(written, tmp_path):
    root = _copy(written, tmp_path)
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v2.0"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotFormatError, match="codebase_version='v2.0'"):
        LeRobotDataset(root)


def test_missing_files_are_errors(written, tmp_path):
    root = _copy(written, tmp_path)
    version, storage = written[2], written[3]
    data = sorted(root.glob("data/**/*.parquet"))[-1]
    data.unlink()
    with pytest.raises(FileNotFoundError, match="data file .* is missing"):
        LeRobotDataset(root)
    (root / "meta/info.json").unlink()
    with pytest.raises(FileNotFoundError, match="info.json is missing"):
        LeRobotDataset(root)
    if storage == "video":
        root2 = tmp_path / "copy2"
        shutil.copytree(written[0], root2)
        for mp4 in root2.glob("videos/**/*.mp4"):
            mp4.unlink()
        ds = LeRobotDataset(root2)
        with pytest.raises(FileNotFoundError, match="video file .* is missing"):
            ds[0]
    del version


def test_shape_disagreeing_with_info_is_an_error(written, tmp_path):
    root = _copy(written, tmp_path)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["action"]["shape"] = [6]
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotFormatError, match="'action' has 7 values per row but meta/info.json says shape \\[6\\]"):
        LeRobotDataset(root)
    info["features"]["action"]["shape"] = [7]
    info["features"][CAM]["shape"] = [64, 64, 3]
    (root / "meta/info.json").write_text(json.dumps(info))
    ds = LeRobotDataset(root)
    with pytest.raises(LeRobotFormatError, match="frame has shape \\(32, 32, 3\\) but meta/info.json says \\[64, 64, 3\\]"):
        ds[0]


def test_episode_length_mismatch_is_an_error(tmp_path):
    root = write_lerobot_dataset(tmp_path / "d", _episodes(2, 6), version="v2.1", image_storage="image")
    lines = (root / "meta/episodes.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["length"] = 5
    (root / "meta/episodes.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    with pytest.raises(LeRobotFormatError, match="episode 0 has 6 data rows but its metadata says length=5"):
        LeRobotDataset(root)


def test_libero_all_mixture_and_weighted_sampler(tmp_path):
    names = [n for n, _ in MIXTURES["libero_all"]]
    assert names == ["libero_object", "libero_goal", "libero_spatial", "libero_10"]
    for k, name in enumerate(names):
        make_synthetic_libero(tmp_path / name, num_episodes=1, episode_length=4 + 2 * k, image_size=16,
                              image_storage="image", seed=k)
    mix = load_mixture("libero_all", tmp_path, action_horizon=2)
    assert isinstance(mix, LeRobotMixture) and len(mix) == 4 + 6 + 8 + 10
    assert mix[4]["dataset"] == "libero_goal" and mix[4]["frame_index"] == 0
    weighted = load_mixture({"libero_object": 3.0, "libero_10": 1.0}, tmp_path, action_horizon=2)
    draws = list(WeightedMixtureSampler(weighted, num_samples=4000, seed=0))
    from_object = np.mean([i < 4 for i in draws])
    assert 0.7 < from_object < 0.8  # weight 3:1, regardless of dataset sizes 4 vs 10
    with pytest.raises(FileNotFoundError, match="libero_missing"):
        load_mixture("libero_object,libero_missing", tmp_path)


def test_cli_lerobot_stats(cli, tmp_path, capsys):
    root = write_lerobot_dataset(tmp_path / "d", _episodes(2, 5), version="v3.0", image_storage="image",
                                 write_stats=False)
    assert not (root / "meta/stats.json").exists()
    assert cli("data", "lerobot-stats", "--root", root) == 0
    assert load_stats(root)["action"]["count"].tolist() == [10]
    assert '"frames": 10' in capsys.readouterr().out
