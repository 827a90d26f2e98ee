"""RoboVLM episodes: HDF5 files (h5py), LeRobot datasets through the library's reader, the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from hf_vlmdrive.data.episodes_hdf5 import (  # noqa: E402
    HDF5EpisodeSource,
    LeRobotEpisodeSource,
    open_episodes,
    write_episode_hdf5,
)
from hf_vlmdrive.data.synthetic.mobile_robot import (  # noqa: E402
    TASKS,
    make_mobile_robot_episodes,
    write_mobile_robot_hdf5,
    write_mobile_robot_lerobot,
)


def test_synthetic_episodes_depend_on_the_task():
    eps = make_mobile_robot_episodes(6, seed=1)
    assert [e.task for e in eps] == [TASKS[i % 2] for i in range(6)]
    for e in eps:
        assert e.images.shape == (18, 32, 32, 3) and e.images.dtype == np.uint8
        assert e.actions.shape == (18, 2)
        red = (e.images[0, ..., 0] > 180) & (e.images[0, ..., 1] < 80)
        cols = np.nonzero(red.any(axis=0))[0]
        # the box is left of centre for "horizontal left" (turn left: angular_z > 0), right for "right"
        if e.task == "horizontal left":
            assert cols.mean() < 16 and (e.actions[:-1, 1] > 0).all()
        else:
            assert cols.mean() > 16 and (e.actions[:-1, 1] < 0).all()
    again = make_mobile_robot_episodes(6, seed=1)
    assert all(np.array_equal(a.images, b.images) for a, b in zip(eps, again))


def test_hdf5_round_trip_and_errors(tmp_path):
    root = write_mobile_robot_hdf5(tmp_path / "eps", num_episodes=4, seed=0)
    src = open_episodes(root)
    assert isinstance(src, HDF5EpisodeSource) and len(src) == 4
    assert [i.length for i in src.infos] == [18] * 4
    assert src.tasks == sorted(TASKS)
    ep = src.load(1)
    ref = make_mobile_robot_episodes(4, seed=0)[1]
    assert np.array_equal(ep.images, ref.images) and np.allclose(ep.actions, ref.actions) and ep.task == ref.task
    assert np.array_equal(src.load_frames(1, [0, 17]), ref.images[[0, 17]])
    assert all(i.size_bytes == (root / i.files[0]).stat().st_size for i in src.infos)

    bad = tmp_path / "bad"
    bad.mkdir()
    with h5py.File(bad / "e.hdf5", "w") as f:
        f.create_dataset("action", data=np.zeros((3, 2), np.float32))
        f.attrs["task"] = "x"
    with pytest.raises(ValueError, match="observations/images"):
        HDF5EpisodeSource(bad)
    (bad / "e.hdf5").unlink()
    write_episode_hdf5(bad / "e.hdf5", np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 2)), "t")
    with h5py.File(bad / "e.hdf5", "a") as f:
        del f.attrs["task"]
    with pytest.raises(ValueError, match="'task' attribute"):
        HDF5EpisodeSource(bad)
    with pytest.raises(FileNotFoundError):
        open_episodes(tmp_path / "nope")


def test_lerobot_source_reads_the_same_episodes(tmp_path):
    root = write_mobile_robot_lerobot(tmp_path / "lr", num_episodes=3, seed=2)
    src = open_episodes(root)
    assert isinstance(src, LeRobotEpisodeSource) and len(src) == 3
    ref = make_mobile_robot_episodes(3, seed=2)
    for i in range(3):
        ep = src.load(i)
        assert ep.task == ref[i].task and len(ep) == 18
        assert np.array_equal(ep.images, ref[i].images)  # inline PNG: lossless
        assert np.allclose(ep.actions, ref[i].actions)
