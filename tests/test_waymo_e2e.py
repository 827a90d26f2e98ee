"""WOD-E2E reader: TFRecord framing, E2EDFrame parsing, datasets (map + streaming), corrupt files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from hf_vlmdrive.data.synthetic.driving import sample_waypoint_scene
from hf_vlmdrive.data.synthetic.waymo import write_synthetic_e2ed
from hf_vlmdrive.data.waymo_e2e import (
    ReadStats,
    TFRecordError,
    TFRecordWriter,
    build_e2ed_frame,
    iter_e2ed_rows,
    iter_tfrecord,
    load_e2ed_dataset,
    masked_crc32c,
    parse_e2ed_frame,
    read_submission,
    write_submission,
)
from hf_vlmdrive.data.waypoint import load_waypoint_dataset

CAMS = ("FRONT_LEFT", "FRONT", "FRONT_RIGHT")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    paths = write_synthetic_e2ed(out, 8, seed=3, num_shards=2, width=48, height=32, camera_names=CAMS, progress=False)
    return out, paths


def test_masked_crc_known_value():
    # CRC32C("123456789") = 0xE3069283 (RFC 3720 check value); masking as in TensorFlow's crc32c.h.
    crc = 0xE3069283
    expected = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"123456789") == expected


def test_tfrecord_framing_roundtrip_bytes(tmp_path):
    path = tmp_path / "x.tfrecord"
    with TFRecordWriter(path) as w:
        w.write(b"hello")
        w.write(b"")
    raw = path.read_bytes()
    assert struct.unpack("<Q", raw[:8])[0] == 5 and raw[12:17] == b"hello"
    assert len(raw) == (12 + 5 + 4) + (12 + 0 + 4)
    assert [r for _, r in iter_tfrecord(path)] == [b"hello", b""]
    assert [o for o, _ in iter_tfrecord(path)] == [0, 21]


def test_frames_match_the_synthetic_scene(shards):
    out, paths = shards
    assert [p.name for p in paths] == ["training.tfrecord-00000-of-00002", "training.tfrecord-00001-of-00002"]
    rows = {r["frame_name"]: r for r in iter_e2ed_rows(str(out), CAMS)}
    assert len(rows) == 8
    sample = sample_waypoint_scene(3 * 1_000_003 + 5, 48, 32, CAMS)
    row = rows[sample.frame_name]
    np.testing.assert_allclose(row["past_states"], sample.past_states, atol=1e-5)
    np.testing.assert_allclose(row["future_waypoints"], sample.future_waypoints, atol=1e-5)
    assert row["intent"] == sample.intent
    assert [c["name"] for c in row["calibrations"]] == list(CAMS)
    np.testing.assert_allclose(row["calibrations"][1]["intrinsic"], sample.cameras["FRONT"].intrinsic)
    np.testing.assert_allclose(np.reshape(row["calibrations"][0]["extrinsic"], (4, 4)), sample.cameras["FRONT_LEFT"].extrinsic)
    assert row["jpeg"][0][:2] == b"\xff\xd8"  # JPEG
    # rater 1 is the logged future
    np.testing.assert_allclose(row["preference_trajectories"][0], sample.future_waypoints, atol=1e-5)
    assert 9.0 <= row["preference_scores"][0] <= 10.0


def test_dataset_map_and_streaming(shards):
    out, _ = shards
    ds = load_e2ed_dataset(f"{out}/training.tfrecord*", camera_names=CAMS)
    assert len(ds) == 8
    row = ds[0]
    assert len(row["images"]) == 3 and row["images"][0].size == (48, 32)
    assert row["image"].size == (48, 32)
    assert np.asarray(row["past_states"]).shape == (16, 6)
    assert np.asarray(row["future_waypoints"]).shape == (20, 2)
    assert np.asarray(row["preference_trajectories"]).shape == (3, 20, 2)
    stats = ReadStats()
    stream = load_e2ed_dataset(str(out), camera_names=("FRONT",), streaming=True, stats=stats)
    names = [r["frame_name"] for r in stream]
    assert sorted(names) == sorted(ds["frame_name"])
    assert stats.records == 8 and stats.skipped == 0


def test_waypoint_spec_reads_tfrecords(shards):
    out, _ = shards
    ds = load_waypoint_dataset(f"{out}/training.tfrecord-00000-of-00002", camera_names=("FRONT",))
    assert len(ds) == 4 and {"image", "past_states", "intent", "future_waypoints"} <= set(ds.column_names)


def test_test_split_has_no_future(tmp_path):
    write_synthetic_e2ed(tmp_path, 2, split="test", width=32, height=32, camera_names=("FRONT",), progress=False)
    ds = load_e2ed_dataset(tmp_path, camera_names=("FRONT",))
    assert "future_waypoints" not in ds.column_names
    assert list(ds[0]["preference_scores"]) == [-1.0, -1.0, -1.0]


def test_missing_camera_is_reported_and_skipped(shards):
    out, _ = shards
    stats = ReadStats()
    assert list(iter_e2ed_rows(str(out), ("REAR",), stats)) == []
    assert stats.skipped == 8 and "REAR" in stats.problems[0][2]
    with pytest.raises(ValueError, match="unknown camera"):
        list(iter_e2ed_rows(str(out), ("BACK",)))


def _frames(n):
    return [
        build_e2ed_frame(f"f{i}", {"FRONT": b"\xff\xd8jpeg"}, np.zeros((16, 6)), 1, np.ones((20, 2)) * i)
        for i in range(n)
    ]


def test_corrupt_data_crc_is_skipped_with_offset(tmp_path):
    path = tmp_path / "c.tfrecord"
    frames = _frames(3)
    with TFRecordWriter(path) as w:
        for f in frames:
            w.write(f)
    raw = bytearray(path.read_bytes())
    second = 12 + len(frames[0]) + 4
    raw[second + 12 + 3] ^= 0xFF  # flip a byte inside record 2's data
    path.write_bytes(bytes(raw))
    stats = ReadStats()
    rows = list(iter_e2ed_rows(str(path), ("FRONT",), stats))
    assert [r["frame_name"] for r in rows] == ["f0", "f2"]
    assert stats.records == 2 and stats.skipped == 1
    assert stats.problems[0][0] == str(path) and stats.problems[0][1] == second
    assert "CRC" in stats.problems[0][2]


def test_corrupt_length_header_resynchronises(tmp_path):
    path = tmp_path / "h.tfrecord"
    frames = _frames(3)
    with TFRecordWriter(path) as w:
        for f in frames:
            w.write(f)
    raw = bytearray(path.read_bytes())
    second = 12 + len(frames[0]) + 4
    raw[second] ^= 0x01  # corrupt record 2's length
    path.write_bytes(bytes(raw))
    stats = ReadStats()
    rows = list(iter_e2ed_rows(str(path), ("FRONT",), stats))
    assert [r["frame_name"] for r in rows] == ["f0", "f2"]
    assert stats.skipped == 1 and "length" in stats.problems[0][2]


def test_truncated_file(tmp_path):
    path = tmp_path / "t.tfrecord"
    frames = _frames(2)
    with TFRecordWriter(path) as w:
        for f in frames:
            w.write(f)
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    stats = ReadStats()
    rows = list(iter_e2ed_rows(str(path), ("FRONT",), stats))
    assert [r["frame_name"] for r in rows] == ["f0"]
    assert stats.skipped == 1 and "truncated" in stats.problems[0][2]
    assert stats.problems[0][1] == 12 + len(frames[0]) + 4


def test_valid_framing_but_not_a_frame(tmp_path):
    path = tmp_path / "p.tfrecord"
    with TFRecordWriter(path) as w:
        w.write(b"\xff\xff\xff not a proto")
        w.write(_frames(1)[0])
    stats = ReadStats()
    ds = load_e2ed_dataset(path, stats=stats)
    assert ds["frame_name"] == ["f0"] and stats.skipped == 1


def test_not_a_tfrecord_file(tmp_path):
    path = tmp_path / "notes.tfrecord"
    path.write_text("this is a text file, not a TFRecord at all\n")
    with pytest.raises(TFRecordError, match="is not a TFRecord file"):
        list(iter_tfrecord(path))
    gz = tmp_path / "g.tfrecord.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40)
    with pytest.raises(TFRecordError, match="gzip"):
        list(iter_tfrecord(gz))
    with pytest.raises(FileNotFoundError, match="no TFRecord file matches"):
        load_e2ed_dataset(str(tmp_path / "missing*.tfrecord"))


def test_writer_is_atomic_on_error(tmp_path):
    path = tmp_path / "a.tfrecord"
    with pytest.raises(RuntimeError):
        with TFRecordWriter(path) as w:
            w.write(b"x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_submission_roundtrip(tmp_path):
    traj = np.random.default_rng(0).normal(size=(3, 20, 2)).astype(np.float32)
    path = tmp_path / "sub.binproto"
    n = write_submission(path, ["a", "b", "c"], traj, method_name="m", num_model_parameters="1M")
    assert n == 3
    sub = read_submission(path)
    assert sub.submission_type == 1 and sub.unique_method_name == "m"
    assert [p.frame_name for p in sub.predictions] == ["a", "b", "c"]
    np.testing.assert_allclose(sub.predictions[1].trajectory.pos_y, traj[1, :, 1])
    with pytest.raises(ValueError, match="20, 2"):
        write_submission(path, ["a"], np.zeros((1, 10, 2)))
    with pytest.raises(ValueError, match="unique"):
        write_submission(path, ["a", "a"], np.zeros((2, 20, 2)))


def test_proto_field_numbers_are_the_official_ones():
    from hf_vlmdrive.data.protos import (
        dataset_pb2,
        end_to_end_driving_data_pb2,
        end_to_end_driving_submission_pb2,
    )

    f = end_to_end_driving_data_pb2.E2EDFrame.DESCRIPTOR.fields_by_name
    assert {k: f[k].number for k in ("frame", "future_states", "past_states", "intent", "preference_trajectories")} == {
        "frame": 1, "future_states": 5, "past_states": 6, "intent": 7, "preference_trajectories": 8,
    }
    s = end_to_end_driving_data_pb2.EgoTrajectoryStates.DESCRIPTOR.fields_by_name
    assert [s[k].number for k in ("pos_x", "pos_y", "pos_z", "vel_x", "vel_y", "accel_x", "accel_y", "preference_score")] == list(range(1, 9))
    fr = dataset_pb2.Frame.DESCRIPTOR.fields_by_name
    assert (fr["context"].number, fr["timestamp_micros"].number, fr["images"].number) == (1, 2, 4)
    c = dataset_pb2.CameraCalibration.DESCRIPTOR.fields_by_name
    assert [c[k].number for k in ("name", "intrinsic", "extrinsic", "width", "height")] == [1, 2, 3, 4, 5]
    sub = end_to_end_driving_submission_pb2.E2EDChallengeSubmission.DESCRIPTOR.fields_by_name
    assert (sub["predictions"].number, sub["submission_type"].number, sub["num_model_parameters"].number) == (1, 2, 12)
    assert parse_e2ed_frame(_frames(1)[0])["frame_name"] == "f0"
