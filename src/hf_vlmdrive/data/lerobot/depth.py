"""Depth cameras of LeRobot v3.0 datasets (lerobot >= 0.4.4): which features are depth maps, and their values.

A depth feature is an `image` / `video` feature whose `info` in meta/info.json carries `is_depth_map: true`
(or the legacy `video.is_depth_map`, in `info` or `video_info`), as lerobot's
`LeRobotDatasetMetadata.depth_keys` decides (lerobot 0.6.1, `datasets/dataset_metadata.py`).

Depth video (lerobot 0.6.1, `configs/video.py` `DepthEncoderConfig` and `datasets/depth_utils.py`): each frame is
quantised to 12-bit codes q in [0, 4095] (`DEPTH_QMAX`) and encoded as one `gray12le` plane (HEVC Main 12, x265
lossless by default). The quantiser's parameters are stored in the feature's info as `video.depth_min`,
`video.depth_max`, `video.shift` (metres) and `video.use_log` (defaults 0.01, 10.0, 3.5, True when absent):

    use_log:  q = rint((log(d + shift) - log(min + shift)) / (log(max + shift) - log(min + shift)) * 4095)
    linear:   q = rint((d - min) / (max - min) * 4095)

clipped to [0, 4095]. Reading inverts the same mapping, clamps to [depth_min, depth_max] metres and returns
float32 metres, or float32 millimetres rounded to whole millimetres (lerobot's default `depth_output_unit="mm"`).
Depth stored as images (`dtype: image`) is a raw TIFF (`uint16` mm or `float32` m, recorded in
`info.depth_unit`), returned in its values, converted only when `info.depth_unit` names the other unit.

[`dequantize_depth`] follows lerobot's own torch path (`dequantize_depth` with a tensor input, float32
throughout, the same operations in the same order) so that the values are lerobot's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UserError
from .layout import LeRobotFormatError

DEPTH_QMAX = (1 << 12) - 1  # 12-bit codes: 0 .. 4095
DEPTH_PIX_FMT = "gray12le"  # the plane lerobot decodes depth video to, whatever the stream's own format
DEPTH_UNITS = ("mm", "m")
MM_PER_METRE = 1000.0
_UINT16_MAX = 65535.0


def is_depth_feature(feature: Mapping[str, Any]) -> bool:
    """Whether a meta/info.json feature is a depth map (lerobot's rule: `is_depth_map` in `info`, or the
    legacy `video.is_depth_map` in `info` or `video_info`)."""
    info = feature.get("info") or {}
    video_info = feature.get("video_info") or {}
    return bool(info.get("is_depth_map") or info.get("video.is_depth_map") or video_info.get("video.is_depth_map"))


@dataclass(frozen=True)
class DepthQuantization:
    """The depth quantiser of one depth video feature (lerobot's `DepthEncoderConfig` fields).

    Args:
        depth_min (`float`, defaults to 0.01): depth in metres at code 0.
        depth_max (`float`, defaults to 10.0): depth in metres at code 4095.
        shift (`float`, defaults to 3.5): metres added before the logarithm (log mode only).
        use_log (`bool`, defaults to True): logarithmic (True) or linear (False) quantisation.
    """

    depth_min: float = 0.01
    depth_max: float = 10.0
    shift: float = 3.5
    use_log: bool = True

    @classmethod
    def from_feature(cls, feature: Mapping[str, Any], name: str = "", source: str = "meta/info.json") -> DepthQuantization:
        """The quantiser recorded in a feature's info (`video.depth_min` ...); absent keys take lerobot's
        defaults. Raises [`LeRobotFormatError`] naming `source` and the feature when the values cannot be
        inverted."""
        info = feature.get("info") or {}
        values: dict[str, Any] = {}
        for field_name in ("depth_min", "depth_max", "shift", "use_log"):
            value = info.get(f"video.{field_name}")
            if value is not None:
                values[field_name] = value
        try:
            quant = cls(**{k: (bool(v) if k == "use_log" else float(v)) for k, v in values.items()})
        except (TypeError, ValueError) as err:
            raise LeRobotFormatError(f"{source}: depth feature {name!r} has a non-numeric quantiser {values}: {err}") from err
        if not quant.depth_max > quant.depth_min:
            raise LeRobotFormatError(
                f"{source}: depth feature {name!r} has video.depth_max={quant.depth_max} <= "
                f"video.depth_min={quant.depth_min}"
            )
        if quant.use_log and quant.depth_min + quant.shift <= 0:
            raise LeRobotFormatError(
                f"{source}: depth feature {name!r} uses log quantisation but video.depth_min + video.shift = "
                f"{quant.depth_min} + {quant.shift} <= 0"
            )
        return quant


def dequantize_depth(codes: np.ndarray, quant: DepthQuantization, unit: str = "mm") -> np.ndarray:
    """Depth values of 12-bit codes (any shape), float32: metres (`unit="m"`, within [depth_min, depth_max])
    or millimetres rounded to whole millimetres (`unit="mm"`), as lerobot 0.6.1 returns them."""
    import torch

    if unit not in DEPTH_UNITS:
        raise UserError(f"depth unit must be one of {DEPTH_UNITS}, got {unit!r}")
    if quant.use_log:
        log_min = math.log(quant.depth_min + quant.shift)
        log_max = math.log(quant.depth_max + quant.shift)
        scale, offset = (log_max - log_min) / DEPTH_QMAX, log_min
    else:
        scale, offset = (quant.depth_max - quant.depth_min) / DEPTH_QMAX, quant.depth_min
    # float32 in-place operations in lerobot's order (codes <= 4095 are exact in float32).
    buf = torch.from_numpy(np.asarray(codes, dtype=np.float32).copy())
    buf.mul_(scale).add_(offset)
    if quant.use_log:
        buf.exp_().sub_(quant.shift)
    buf.clamp_(quant.depth_min, quant.depth_max)
    if unit == "mm":
        buf.mul_(MM_PER_METRE).round_().clamp_(0.0, _UINT16_MAX)
    return buf.numpy()


def convert_depth_unit(values: np.ndarray, stored_unit: str | None, unit: str) -> np.ndarray:
    """Depth image values (float32) from their recorded unit (`info.depth_unit`; None: left as they are) to
    `unit`, as lerobot converts depth stored as images."""
    if unit not in DEPTH_UNITS:
        raise UserError(f"depth unit must be one of {DEPTH_UNITS}, got {unit!r}")
    values = np.asarray(values, dtype=np.float32)
    if stored_unit is None or stored_unit == unit:
        return values
    if stored_unit not in DEPTH_UNITS:
        raise LeRobotFormatError(f"depth_unit {stored_unit!r} is neither of {DEPTH_UNITS}")
    factor = np.float32(MM_PER_METRE)
    return values * factor if stored_unit == "m" else values / factor


__all__ = [
    "DEPTH_QMAX",
    "DEPTH_UNITS",
    "DepthQuantization",
    "convert_depth_unit",
    "dequantize_depth",
    "is_depth_feature",
]
