"""Episode videos: the frames sent to the policy (agentview | wrist) written as an mp4 (PyAV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Write RGB uint8 HWC `frames` to `path` (libx264 when PyAV has it, else mpeg4; yuv420p)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
