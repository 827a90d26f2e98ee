"""Observation mapping: a LIBERO env observation -> the request openpi's LIBERO client sends a policy.

Both cameras rotated 180 degrees and `resize_with_pad` to 224, the 8-d state eef_pos (3) + axis-angle (3) +
gripper_qpos (2), the task's language as `prompt` (`libero_observation`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

STATE_DIM = 8


def quat_to_axis_angle(quat: Sequence[float] | np.ndarray) -> np.ndarray:
    """Quaternion in robosuite's (x, y, z, w) order -> axis-angle vector `axis * angle` (float64, (3,)).

    The same formula as robosuite's `transform_utils.quat2axisangle` (and openpi's copy of it), which produced
    the states of the LIBERO training data: w is clipped to [-1, 1], the quaternion is not re-normalised, the
    angle is `2 * acos(w)` in [0, 2 pi], and a (near) zero rotation gives zeros. Unlike openpi's copy it does
    not modify its input.
    """
    q = np.asarray(quat, dtype=np.float64).reshape(4)
    w = float(np.clip(q[3], -1.0, 1.0))
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3, dtype=np.float64)
    return q[:3] * 2.0 * math.acos(w) / den


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """openpi-client's `image_tools.resize_with_pad` for one HWC image (PIL bilinear, centred, zero padding).

    Keeps the aspect ratio (tf.image.resize_with_pad); an image already of the target size is returned as is.
    """
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    pil = Image.fromarray(image)
    cur_width, cur_height = pil.size
    ratio = max(cur_width / width, cur_height / height)
    resized_height, resized_width = int(cur_height / ratio), int(cur_width / ratio)
    resized = pil.resize((resized_width, resized_height), resample=Image.BILINEAR)
    canvas = Image.new(resized.mode, (width, height), 0)
    canvas.paste(resized, (max(0, int((width - resized_width) / 2)), max(0, int((height - resized_height) / 2))))
    return np.asarray(canvas)


def preprocess_image(image: np.ndarray, size: int = 224) -> np.ndarray:
    """A LIBERO camera image as the policy sees it: rotated 180 degrees, `resize_with_pad` to size, uint8 HWC.

    LIBERO renders upside down (OpenGL origin); openpi's and the LeRobot LIBERO datasets' images are rotated,
    so the rotation matches the training data. Float images in [0, 1] are scaled to uint8.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    if np.issubdtype(image.dtype, np.floating):
        image = (255 * image).astype(np.uint8)
    image = np.ascontiguousarray(image[::-1, ::-1])
    return np.ascontiguousarray(resize_with_pad(image, size, size), dtype=np.uint8)


def libero_state(obs: Mapping[str, Any]) -> np.ndarray:
    """The 8-d LIBERO state: eef_pos (3) + axis-angle of eef_quat (3) + gripper_qpos (2), float64."""
    state = np.concatenate([
        np.asarray(obs["robot0_eef_pos"], dtype=np.float64).reshape(3),
        quat_to_axis_angle(obs["robot0_eef_quat"]),
        np.asarray(obs["robot0_gripper_qpos"], dtype=np.float64).reshape(2),
    ])
    return state


def libero_observation(obs: Mapping[str, Any], prompt: str, image_size: int = 224) -> dict[str, Any]:
    """Convert a LIBERO env observation to the request openpi's LIBERO client sends.

    Returns `{"observation/image": uint8 (S, S, 3)` (agentview), `"observation/wrist_image": uint8 (S, S, 3)`
    (robot0_eye_in_hand), both through `preprocess_image` (180 degree rotation + resize_with_pad to S = 224),
    `"observation/state": float64 (8,)` (`libero_state`), `"prompt": str}`.
    """
    return {
        "observation/image": preprocess_image(obs["agentview_image"], image_size),
        "observation/wrist_image": preprocess_image(obs["robot0_eye_in_hand_image"], image_size),
        "observation/state": libero_state(obs),
        "prompt": str(prompt),
    }


__all__ = ["STATE_DIM", "libero_observation", "libero_state", "preprocess_image", "quat_to_axis_angle",
           "resize_with_pad"]
