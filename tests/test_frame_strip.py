"""plot_episode_frame_strips: one row per episode video, evenly spaced frames with their steps."""

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("matplotlib")

from hf_vlmdrive.visualization import plot_episode_frame_strips, read_video_frames  # noqa: E402


def _video(path, n, seed):
    from hf_vlmdrive.data.lerobot import encode_video

    rng = np.random.default_rng(seed)
    frames = np.zeros((n, 32, 64, 3), np.uint8)
    for i in range(n):  # a bright square moving right: frame i is identifiable by the square's column
        frames[i, 8:16, 2 * i:2 * i + 8] = 255
    frames[..., 2] = rng.integers(0, 30, size=(32, 64))
    encode_video(path, frames, fps=10)
    return frames


def test_strip_has_one_row_per_video_and_the_first_and_last_frames(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    _video(a, 20, 0)
    _video(b, 9, 1)
    decoded = read_video_frames(a)
    assert decoded.shape == (20, 32, 64, 3)
    assert decoded[19, 8:16, 40:46, 0].mean() > 200 and decoded[0, 8:16, 40:46, 0].mean() < 60  # the last frame's square
    out = plot_episode_frame_strips([a, b], tmp_path / "strip.png", titles=["success", "failure"], num_frames=5)
    from PIL import Image

    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] > 100 and img.shape[1] > 300
    with pytest.raises(ValueError, match="1 titles for 2 videos"):
        plot_episode_frame_strips([a, b], tmp_path / "x.png", titles=["one"])
