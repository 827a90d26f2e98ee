"""Video of LeRobot cameras: encoding frames to mp4 and decoding frames at timestamps (PyAV)."""

from __future__ import annotations

import bisect
import collections
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...errors import UserError, UserFileNotFoundError
from .layout import LeRobotFormatError, _av


def pick_video_codec(preferred: Sequence[str] = ("libx264", "libsvtav1", "mpeg4")) -> str:
    """The first encoder of `preferred` that this PyAV build has (H.264 when available)."""
    av = _av()
    for name in preferred:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - PyAV raises several types for unknown encoders
            continue
    raise RuntimeError(f"none of the video encoders {list(preferred)} is available in this PyAV build")


# LeRobot's `encode_video_frames` writes a key frame every 2 frames (g=2) so that random access stays cheap.
DEFAULT_GOP = 2


def encode_video(path: str | Path, frames: np.ndarray, fps: int, codec: str | None = None, gop: int = DEFAULT_GOP) -> str:
    """Write uint8 frames (N, H, W, 3) to an mp4 at `fps` (frame i at pts i / fps), a key frame every `gop`
    frames (LeRobot's default g=2) and no B-frames. Returns the codec."""
    av = _av()
    codec = codec or pick_video_codec()
    if int(gop) < 1:
        raise UserError(f"gop (frames between key frames) must be >= 1, got {gop}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise UserError(f"video frames need even height and width for yuv420p, got {height}x{width}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"crf": "18", "g": str(gop), "bf": "0"}
        else:
            stream.options = {"g": str(gop)}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return codec


_INHERITED_VIDEOS: list = []  # containers and converters a forked process inherited (see VideoFrameReader._video)


class _OpenVideo:
    """One open mp4: its container and stream, the key frames' pts, and where its decoder stands."""

    __slots__ = ("container", "stream", "time_base", "keyframes", "decoder", "pos", "last", "ahead")

    def __init__(self, path: str, threads: int = 1):
        av = _av()
        self.container = av.open(path)
        self.stream = self.container.streams.video[0]
        if threads:  # 0 = FFmpeg's default (slice threads, one per core)
            self.stream.codec_context.thread_count = threads
        self.time_base = float(self.stream.time_base)
        # The key-frame index: demux once (packets only, nothing decoded), then rewind.
        self.keyframes = sorted(p.pts for p in self.container.demux(self.stream) if p.pts is not None and p.is_keyframe)
        self.container.seek(0, stream=self.stream, backward=True)
        self.decoder = None  # the frame iterator after the last seek
        self.pos: int | None = None  # pts of the last frame the decoder produced
        self.last: tuple[int, np.ndarray, str] | None = None  # (pts, array, pixel format) of the last frame returned
        self.ahead: collections.deque = collections.deque()  # decoded, not yet converted frames after `last`

    def close(self) -> None:
        self.container.close()


class VideoFrameReader:
    """Decode frames at given timestamps from mp4 files, keeping containers and decoders open between calls.

    Per file it keeps the container, the decoder and a key-frame index (read once from the packets). A
    frame is found by decoding forward from the decoder's current position when that position lies
    between the target's key frame and the target (sequential reading, or a later frame of the same
    group of pictures), and otherwise by one seek to the key frame at or before the target. Only the target
    frame is converted (to RGB, or to the pixel format asked for). Containers are not picklable: a DataLoader worker gets an empty reader and
    opens its own files.

    When reads come in order (the previous target was the last frame decoded), the next `read_ahead`
    frames of the file are decoded at once (not converted), so that reading two cameras in turn does not
    switch decoders every frame. `decoder_threads` is the decoder's thread count; 1 (the default) is fastest for the small frames of
    robot datasets and has no frame-pipeline latency after a seek, and DataLoader workers parallelise
    across samples. 0 = FFmpeg's default.

    Frames are converted to RGB by the reader's own single-threaded converter, made in the process that uses
    it. PyAV >= 19 converts `frame.to_ndarray(format=...)` with one cached converter per thread that runs a
    pool of FFmpeg threads; a forked DataLoader worker inherits the parent's cached converter without its
    threads and waits for them forever.
    """

    def __init__(self, tolerance_s: float = 1e-3, max_open: int = 16, decoder_threads: int = 1, read_ahead: int = 8):
        self.tolerance_s = tolerance_s
        self.max_open = max_open
        self.decoder_threads = decoder_threads
        self.read_ahead = read_ahead
        self._open: dict[str, _OpenVideo] = {}  # insertion order = least recently opened first
        self._reformatter = None  # this process's RGB converter (av.video.reformatter.VideoReformatter)
        self._pid = os.getpid()

    def close(self) -> None:
        """Close every open container."""
        for video in self._open.values():
            video.close()
        self._open.clear()

    def __getstate__(self):  # containers are not picklable (DataLoader workers re-open their own)
        return {"tolerance_s": self.tolerance_s, "max_open": self.max_open, "decoder_threads": self.decoder_threads,
                "read_ahead": self.read_ahead}

    def __setstate__(self, state):
        self.__init__(**state)

    def _video(self, path: str) -> _OpenVideo:
        if self._pid != os.getpid():
            # A forked DataLoader worker inherits the parent's open containers (fork copies, it does not
            # pickle): their file offsets are shared with the parent and freeing them here hangs in FFmpeg,
            # so they are set aside untouched (never used, never freed) and this process opens its own. The
            # same for the RGB converter: its FFmpeg state belongs to the parent.
            _INHERITED_VIDEOS.append((self._open, self._reformatter))
            self._open, self._reformatter = {}, None
            self._pid = os.getpid()
        video = self._open.get(path)
        if video is None:
            if not Path(path).is_file():
                raise UserFileNotFoundError(f"video file {path} is missing (named by meta/info.json video_path)")
            if len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open))).close()
            video = _OpenVideo(path, self.decoder_threads)
            self._open[path] = video
        return video

    def _convert(self, frame, pix_fmt: str) -> np.ndarray:
        """The frame as an array of `pix_fmt` ("rgb24": (H, W, 3) uint8; "gray12le": (H, W) uint16), converted by
        this process's own single-threaded converter."""
        if self._reformatter is None:
            _av()
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        return self._reformatter.reformat(frame, format=pix_fmt, threads=1).to_ndarray()

    def read(self, path: str | Path, timestamp: float, pix_fmt: str = "rgb24") -> np.ndarray:
        """The frame shown at `timestamp` seconds in `path` (a str is fastest): RGB (H, W, 3) uint8 by default,
        or as `pix_fmt` (e.g. "gray12le" for the 12-bit codes of a LeRobot depth video, (H, W) uint16)."""
        # Fast path: this process's own open file (a forked worker must not use the parent's; see `_video`).
        video = self._open.get(path) if self._pid == os.getpid() else None
        if video is None:
            video = self._video(str(path))
        tb, tol = video.time_base, self.tolerance_s
        last = video.last
        if last is not None and abs(last[0] * tb - timestamp) <= tol and last[2] == pix_fmt:
            return last[1]
        ahead = video.ahead
        while ahead:  # frames decoded ahead by a sequential read: the next target is usually the first
            frame = ahead.popleft()
            t = frame.pts * tb
            if t < timestamp - tol:
                continue
            if t - timestamp > tol:
                ahead.appendleft(frame)
                break
            rgb = self._convert(frame, pix_fmt)
            video.last = (frame.pts, rgb, pix_fmt)
            return rgb
        pos = video.pos
        sequential = last is not None and pos is not None and last[0] == pos and not ahead
        # Decode forward (no seek) when the decoder stands before the target and at most one group of
        # pictures further back than a seek would land (the key frame before the target's own key frame):
        # sequential reading never seeks.
        keys = video.keyframes
        k = bisect.bisect_right(keys, (timestamp + tol) / tb) - 1  # the target's key frame
        key = keys[k] if k >= 0 else (keys[0] if keys else 0)
        if video.decoder is None or pos is None or pos * tb >= timestamp - tol or pos < (keys[k - 1] if k >= 1 else key):
            video.container.seek(key, stream=video.stream, backward=True)
            video.decoder = video.container.decode(video.stream)
            video.pos, sequential = None, False
            ahead.clear()
        for frame in video.decoder:
            pts = frame.pts
            video.pos = pts
            t = pts * tb
            if t < timestamp - tol:
                continue
            if t - timestamp > tol:
                ahead.append(frame)  # keep it: it may be the next target
                break
            rgb = self._convert(frame, pix_fmt)
            video.last = (pts, rgb, pix_fmt)
            if sequential and self.read_ahead:
                # Reading in order (the previous target was the decoder's last frame): decode the next
                # frames of this file now, in one run, while its decoder state is hot in the CPU caches.
                for nxt in video.decoder:
                    ahead.append(nxt)
                    video.pos = nxt.pts
                    if len(ahead) >= self.read_ahead:
                        break
            return rgb
        if not ahead:  # the decoder ran out: start afresh next time (else it stands at the frame after)
            video.decoder, video.pos = None, None
        raise LeRobotFormatError(
            f"no frame at t={timestamp:.4f}s (tolerance {tol}s) in {path}; the episode's from_timestamp / "
            "timestamps disagree with the video"
        )


__all__ = ["DEFAULT_GOP", "VideoFrameReader", "encode_video", "pick_video_codec"]
