"""Depth cameras of LeRobot 0.6 datasets, against a dataset lerobot 0.6.1 wrote and the items it read back.

The fixture (tests/fixtures/lerobot06_depth/) comes from scripts/make_lerobot06_depth_fixture.py, run in a lerobot
0.6.1 venv: the dataset written with lerobot's own API (an AV1 RGB camera, an HEVC gray12le depth camera with
`is_depth_map`, two episodes) and `lerobot_items.npz`, what lerobot's `LeRobotDataset` returned for some items.
Depth values are compared exactly: our de-quantisation runs lerobot's float32 torch operations in its order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hf_vlmdrive.data.lerobot import LeRobotDataset, LeRobotFormatError
from hf_vlmdrive.data.lerobot.depth import (
    DEPTH_QMAX,
    DepthQuantization,
    convert_depth_unit,
    dequantize_depth,
    is_depth_feature,
)
from hf_vlmdrive.errors import UserError

pytest.importorskip("pyarrow")
av = pytest.importorskip("av")

FIXTURE = Path(__file__).parent / "fixtures" / "lerobot06_depth"
RGB, DEPTH = "observation.images.rgb", "observation.images.depth"
ITEMS = (0, 1, 5, 6, 10)


def _has_decoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "r")
        return True
    except Exception:  # noqa: BLE001 - PyAV raises several types for unknown codecs
        return False


needs_decoders = pytest.mark.skipif(
    not (_has_decoder("hevc") and (_has_decoder("libdav1d") or _has_decoder("av1"))),
    reason="this PyAV build cannot decode HEVC and AV1",
)


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE / "lerobot_items.npz") as z:
        return {k: z[k] for k in z.files}


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(FIXTURE / "dataset", root)
    return root


def _edit_info(root: Path, edit) -> None:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))


def test_fixture_was_written_by_lerobot_06(reference):
    versions = json.loads(str(reference["versions"]))
    assert versions["lerobot"].startswith("0.6")
    info = json.loads((FIXTURE / "dataset" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["features"][DEPTH]["info"]["is_depth_map"] is True
    assert info["features"][DEPTH]["info"]["video.pix_fmt"] == "gray12le"
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) < 1_000_000


@needs_decoders
def test_depth_camera_items_equal_lerobots(reference):
    ds = LeRobotDataset(FIXTURE / "dataset", action_horizon=1)
    assert ds.camera_keys == [RGB] and ds.depth_keys == [DEPTH]
    for i in ITEMS:
        item = ds[i]
        assert item["depth_keys"] == [DEPTH]
        depth = item["depth"][0]
        assert depth.shape == (64, 64, 1) and depth.dtype == np.float32  # as meta/info.json says
        ref = reference[f"{i}/{DEPTH}"]  # lerobot: (1, H, W) float32 millimetres
        np.testing.assert_array_equal(depth[..., 0], ref[0], err_msg=f"item {i}")
        # RGB: lerobot returns float32 uint8/255 (CHW); the same uint8 values.
        np.testing.assert_array_equal(item["images"][0], np.rint(reference[f"{i}/{RGB}"] * 255).transpose(1, 2, 0))
        np.testing.assert_array_equal(item["state"], reference[f"{i}/observation.state"])
        np.testing.assert_array_equal(item["actions"][0], reference[f"{i}/action"])
        assert item["language"] == str(reference[f"{i}/task"])
        for key in ("episode_index", "frame_index", "index"):
            assert item[key] == int(reference[f"{i}/{key}"])


@needs_decoders
def test_depth_in_metres_equals_lerobots_and_the_written_depth(reference):
    depth = LeRobotDataset(FIXTURE / "dataset", depth_unit="m").read_depth(DEPTH, 0)
    np.testing.assert_array_equal(depth[..., 0], reference[f"m/0/{DEPTH}"][0])
    # Against what was written (uint16 mm): within one 12-bit log step inside [depth_min, depth_max].
    written = reference["written_depth_mm"][0, ..., 0].astype(np.float64) / 1000.0
    inside = (written >= 0.01) & (written <= 10.0)
    step = (np.log(10.0 + 3.5) - np.log(0.01 + 3.5)) / DEPTH_QMAX  # relative step of (d + shift)
    assert np.all(np.abs(depth[..., 0][inside] - written[inside]) <= (written[inside] + 3.5) * step)
    # 0 mm and 12 m were written: codes 0 and 4095, the ends of the range (float32 rounding of exp / log).
    assert depth[0, 0, 0] == pytest.approx(0.01, abs=1e-6) and depth[-1, -1, 0] == pytest.approx(10.0, abs=1e-5)


@needs_decoders
def test_depth_keys_and_units_are_checked():
    root = FIXTURE / "dataset"
    with pytest.raises(UserError, match="is a depth map.*depth_keys"):
        LeRobotDataset(root, camera_keys=[RGB, DEPTH])
    with pytest.raises(UserError, match="not a depth-map feature"):
        LeRobotDataset(root, depth_keys=[RGB])
    with pytest.raises(UserError, match="depth_unit must be one of"):
        LeRobotDataset(root, depth_unit="cm")
    only_rgb = LeRobotDataset(root, depth_keys=[])[0]
    assert "depth" not in only_rgb and len(only_rgb["images"]) == 1


@needs_decoders
def test_broken_depth_metadata_names_file_field_and_value(tmp_path):
    root = _copy(tmp_path)
    _edit_info(root, lambda info: info["features"][DEPTH]["info"].update({"video.depth_max": 0.001}))
    with pytest.raises(LeRobotFormatError, match=r"info.json.*'observation.images.depth'.*video.depth_max=0.001"):
        LeRobotDataset(root)
    root = _copy(tmp_path / "b")
    _edit_info(root, lambda info: info["features"][DEPTH].update({"shape": [64, 32, 1]}))
    with pytest.raises(LeRobotFormatError, match=r"depth camera 'observation.images.depth' .* says \[64, 32, 1\]"):
        LeRobotDataset(root)[0]


def test_depth_feature_rule_and_quantiser_defaults():
    assert is_depth_feature({"dtype": "video", "info": {"is_depth_map": True}})
    assert is_depth_feature({"dtype": "video", "info": {"video.is_depth_map": True}})  # legacy key
    assert is_depth_feature({"dtype": "video", "video_info": {"video.is_depth_map": True}})
    assert not is_depth_feature({"dtype": "video", "info": {"video.is_depth_map": False}})  # our RGB writer's info
    quant = DepthQuantization.from_feature({"info": {"is_depth_map": True}})
    assert quant == DepthQuantization(0.01, 10.0, 3.5, True)  # lerobot's DepthEncoderConfig defaults


def test_dequantize_depth_maps_code_ends_to_the_range_and_is_monotonic():
    codes = np.arange(DEPTH_QMAX + 1, dtype=np.uint16)
    for quant in (DepthQuantization(), DepthQuantization(0.2, 4.0, 0.0, False)):
        metres = dequantize_depth(codes, quant, "m")
        assert metres.dtype == np.float32
        assert metres[0] == pytest.approx(quant.depth_min, abs=1e-5)  # float32 exp / log rounding
        assert metres[-1] == pytest.approx(quant.depth_max, abs=1e-5)
        assert np.all(np.diff(metres) > 0)
        mm = dequantize_depth(codes, quant, "mm")
        np.testing.assert_array_equal(mm, np.rint(metres.astype(np.float32) * np.float32(1000)))
    linear = dequantize_depth(np.array([2047.5]), DepthQuantization(0.0, 4.095, 0.0, False), "m")
    assert linear[0] == pytest.approx(2.0475, rel=1e-6)


def test_depth_image_units_convert_as_lerobot():
    values = np.array([[250.0, 1000.0]], np.float32)
    np.testing.assert_array_equal(convert_depth_unit(values, "mm", "m"), values / np.float32(1000))
    np.testing.assert_array_equal(convert_depth_unit(values, "m", "mm"), values * np.float32(1000))
    np.testing.assert_array_equal(convert_depth_unit(values, None, "m"), values)  # unit unknown: unchanged
    with pytest.raises(LeRobotFormatError, match="depth_unit 'cm'"):
        convert_depth_unit(values, "cm", "m")


@needs_decoders
def test_timestamp_task_index_and_extra_features_equal_lerobots(reference):
    ds = LeRobotDataset(FIXTURE / "dataset", action_horizon=1)
    assert ds.extra_keys == ["observation.environment_state", "next.reward", "next.done"]
    for i in ITEMS:
        item = ds[i]
        assert np.float32(item["timestamp"]) == reference[f"{i}/timestamp"]
        assert item["task_index"] == int(reference[f"{i}/task_index"])
        for key in ds.extra_keys:
            ref = reference[f"{i}/{key}"]
            value = np.asarray(item[key])
            assert value.shape == ref.shape and value.dtype == ref.dtype, key  # shape [1]: a scalar, as lerobot
            np.testing.assert_array_equal(value, ref, err_msg=f"item {i} {key}")


def test_extra_features_are_checked(tmp_path):
    with pytest.raises(UserError, match="'observation.state' is not an extra numeric feature"):
        LeRobotDataset(FIXTURE / "dataset", extra_keys=["observation.state"])
    assert "next.reward" not in LeRobotDataset(FIXTURE / "dataset", extra_keys=[], depth_keys=[])[0]
    root = _copy(tmp_path)
    _edit_info(root, lambda info: info["features"]["observation.environment_state"].update({"shape": [3]}))
    with pytest.raises(LeRobotFormatError, match=r"'observation.environment_state' has 2 values per row .* \[3\]"):
        LeRobotDataset(root)
