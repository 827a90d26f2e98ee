"""Policies behind the websocket server: the `Policy` protocol and `ModelPolicy`, a trained GeoVLA checkpoint.

```
 observation dict (openpi LIBERO layout, by default)           ModelPolicy.infer
   "observation/image"       uint8 (224, 224, 3) ---+
   "observation/wrist_image" uint8 (224, 224, 3) ---+--> validate (key, shape, dtype, finite) -> KeyMap
   "observation/state"       float64 (8,)  ---------+--> GeoVLAProcessor.prepare_inputs (ALL preprocessing)
   "prompt"                  str  ------------------+--> model.predict_action(noise = seeded)  -> un-normalised
                                                                    {"actions": float32 (T, D)}
```

`Policy` has openpi's `BasePolicy` shape (`infer(obs) -> dict`, `reset()`) plus `metadata`, the dict the
server sends on connect. Determinism: the flow-matching noise of every request is drawn from a CPU
`torch.Generator` seeded with `seed + step` (`noise="episode"`, the default: step counts requests since the
last `reset()`, so an episode replays exactly), with `seed` alone (`noise="fixed"`: the same observation
always gives the same actions) or unseeded (`noise="random"`). Noise is drawn on the CPU, so it does not
depend on the device. The server gives every connection its own session (`new_session()`: shared model and
lock, own step counter) and resets it on connect and on the reset key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import UserError, UserFileNotFoundError
from ..hub import check_model_family, family_name

logger = logging.getLogger(__name__)

NOISE_MODES = ("episode", "fixed", "random")


class ObservationError(ValueError):
    """A request the policy cannot serve: names the key and what was expected. `key` is None for the whole map."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@runtime_checkable
class Policy(Protocol):
    """What the server serves (openpi's `BasePolicy` shape, plus the metadata sent on connect)."""

    @property
    def metadata(self) -> dict[str, Any]:
        """msgpack-able description of the policy (sent to every client on connect)."""
        ...

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """One observation -> a reply dict holding at least `"actions"`: (T, D) ndarray."""
        ...

    def reset(self) -> None:
        """Start a new episode (clear per-episode state)."""
        ...


@dataclass
class KeyMap:
    """Where the policy finds its inputs in an observation dict. The default is openpi's LIBERO layout.

    Args:
        images: one key per camera, in the model's view order (agentview, then wrist).
        state: the robot-state key: a float (state_dim,) array (float64 from openpi; any float dtype accepted).
        prompt: the task-instruction key (a str).
        image_shape: (H, W, 3) every image must have, or None to accept any (H, W, 3) uint8 image (the
            processor resizes); openpi's LIBERO client sends 224x224x3.
        reset: a key that, when true in an observation, resets the episode before this request is served;
            a map holding only this key resets and is answered with `{"reset": True}`.
    """

    images: Sequence[str] = ("observation/image", "observation/wrist_image")
    state: str = "observation/state"
    prompt: str = "prompt"
    image_shape: Sequence[int] | None = (224, 224, 3)
    reset: str = "reset"

    def __post_init__(self):
        self.images = tuple(self.images)
        if not self.images:
            raise ValueError("KeyMap.images must name at least one camera key")
        if self.image_shape is not None:
            self.image_shape = tuple(int(x) for x in self.image_shape)
            if len(self.image_shape) != 3 or self.image_shape[-1] != 3:
                raise ValueError(f"KeyMap.image_shape must be (H, W, 3) or None, got {self.image_shape}")
        names = [*self.images, self.state, self.prompt, self.reset]
        if len(set(names)) != len(names):
            raise ValueError(f"KeyMap keys must be distinct, got {names}")

    @classmethod
    def from_any(cls, value: KeyMap | Mapping[str, Any] | str | None) -> KeyMap:
        """A KeyMap from itself, a dict of its fields, a JSON string of one, or None (the LIBERO default)."""
        if value is None:
            return cls()
        if isinstance(value, KeyMap):
            return value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise UserError(f"key map {value!r} is not JSON ({err}); e.g. "
                                '\'{"images": ["cam0", "cam1"], "state": "state", "prompt": "task"}\'') from err
        if not isinstance(value, Mapping):
            raise UserError(f"key map must be a JSON object of KeyMap fields, got {type(value).__name__} {value!r}")
        unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown key_map fields {sorted(unknown)}; valid: {[f.name for f in dataclasses.fields(cls)]}")
        try:
            return cls(**value)
        except UserError:
            raise
        except (TypeError, ValueError) as err:
            raise UserError(f"key map {dict(value)}: {err}") from err


def reset_requested(obs: Any, key: str) -> bool:
    """True when `obs[key]` is a true bool / int (numpy included); arrays and strings never count."""
    value = obs.get(key) if isinstance(obs, Mapping) else None
    return isinstance(value, (bool, int, np.bool_, np.integer)) and bool(value)


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:80]


@dataclass
class ModelPolicy:
    """A GeoVLA model + its `GeoVLAProcessor` behind the `Policy` protocol. Build it with [`load_policy`].

    Args:
        model: a `GeoVLAForActionPrediction` with normalisation statistics, in eval mode.
        processor: its `GeoVLAProcessor` (all preprocessing lives there).
        key_map: where the inputs are in an observation (default: openpi LIBERO).
        num_steps: Euler steps at inference (default: the config's `num_inference_steps`).
        seed, noise: noise determinism (see the module docstring): `noise` in {"episode", "fixed", "random"}.
        model_dir: the checkpoint directory (reported in the metadata).
        norm_stats_sha256: identity of the statistics (sha256 of norm_stats.json, or of their JSON dump).
    """

    model: Any
    processor: Any
    key_map: KeyMap = field(default_factory=KeyMap)
    num_steps: int | None = None
    seed: int = 0
    noise: str = "episode"
    model_dir: str | None = None
    norm_stats_sha256: str | None = None
    _lock: Any = field(default_factory=threading.Lock, repr=False)
    _step: int = field(default=0, repr=False)

    def __post_init__(self):
        self.key_map = KeyMap.from_any(self.key_map)
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        cfg = self.model.config
        views = getattr(cfg.geometry_config, "num_views", None)  # MapAnything takes any number of views
        if views is not None and len(self.key_map.images) != views:
            raise ValueError(f"key_map.images has {len(self.key_map.images)} keys {list(self.key_map.images)} but the "
                             f"model was trained with {views} cameras")
        if getattr(self.model, "norm_stats", None) is None:
            raise ValueError("the model has no normalisation statistics (norm_stats.json): it cannot un-normalise "
                             "actions; save the checkpoint with its statistics")
        if self.num_steps is not None and int(self.num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.norm_stats_sha256 is None:
            dump = {k: {s: v.tolist() for s, v in d.items()} for k, d in self.model.norm_stats.items()}
            self.norm_stats_sha256 = hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()
        self._param = next(self.model.parameters())
        self._metadata = self._build_metadata()

    # ------------------------------------------------------------------ protocol
    @property
    def metadata(self) -> dict[str, Any]:
        """Model type, chunk size / action dim, image keys and shapes, state key / dim, norm-stats identity."""
        return dict(self._metadata)

    def reset(self) -> None:
        """New episode: the noise step counter restarts (GeoVLA itself keeps no history between frames)."""
        self._step = 0

    def new_session(self) -> ModelPolicy:
        """A policy sharing this one's model, processor and lock, with its own episode state (one per connection)."""
        session = copy.copy(self)
        session._step = 0
        return session

    def infer(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `obs`, preprocess with the processor, predict. Returns {"actions": float32 (T, D),
        "policy_timing": {"infer_ms", "wait_ms"}}. Raises `ObservationError` naming the bad key."""
        images, state, prompt = self.validate(obs)
        if reset_requested(obs, self.key_map.reset):
            self.reset()
        import torch

        t0 = time.perf_counter()
        with self._lock:  # one model call at a time, across sessions and threads
            t1 = time.perf_counter()
            inputs = self.processor.prepare_inputs([images], [prompt], state=[state])
            inputs = {k: v.to(self._param.device) for k, v in inputs.items()}
            cfg = self.model.config
            shape = (1, cfg.action_chunk_size, cfg.action_dim)
            if self.noise == "random":
                noise = torch.randn(shape)
            else:
                step = self._step if self.noise == "episode" else 0
                noise = torch.randn(shape, generator=torch.Generator().manual_seed(self.seed + step))
            self._step += 1
            actions = self.model.predict_action(**inputs, noise=noise.to(self._param.device, self._param.dtype),
                                                num_steps=self.num_steps)
            out = actions[0].float().cpu().numpy().astype(np.float32, copy=False)
            t2 = time.perf_counter()
        return {"actions": out, "policy_timing": {"infer_ms": (t2 - t1) * 1e3, "wait_ms": (t1 - t0) * 1e3}}

    # ------------------------------------------------------------------ validation
    def expected(self) -> dict[str, str]:
        """Human-readable expectation per observation key (used in error messages and the docs)."""
        km = self.key_map
        img = f"uint8 {km.image_shape}" if km.image_shape else "uint8 (H, W, 3)"
        return {**{k: img for k in km.images}, km.state: f"float64 ({self.model.config.state_dim},)",
                km.prompt: "str"}

    def validate(self, obs: Any) -> tuple[list[np.ndarray], np.ndarray, str]:
        """Check every key, shape, dtype and value; return (images, state float32, prompt)."""
        km, expected = self.key_map, self.expected()
        if not isinstance(obs, Mapping):
            raise ObservationError(f"an observation must be a msgpack map {expected}, got {_describe(obs)}")
        missing = [k for k in expected if k not in obs]
        if missing:
            raise ObservationError(
                f"observation is missing key {missing[0]!r} (expected {expected[missing[0]]}); "
                f"missing {missing}, got keys {sorted(map(str, obs))}", key=missing[0])
        images = []
        for key in km.images:
            im = obs[key]
            ok = (isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.ndim == 3 and im.shape[-1] == 3
                  and (km.image_shape is None or tuple(im.shape) == km.image_shape))
            if not ok:
                raise ObservationError(f"observation key {key!r}: expected {expected[key]}, got {_describe(im)}", key)
            images.append(np.ascontiguousarray(im) if im.flags.writeable else np.array(im))
        key, st, dim = km.state, obs[km.state], self.model.config.state_dim
        if not (isinstance(st, np.ndarray) and st.dtype.kind == "f" and tuple(st.shape) == (dim,)):
            raise ObservationError(f"observation key {key!r}: expected {expected[key]} (any float dtype), got "
                                   f"{_describe(st)}", key)
        if not np.isfinite(st).all():
            bad = np.flatnonzero(~np.isfinite(st)).tolist()
            raise ObservationError(f"observation key {key!r}: expected finite {expected[key]}, got NaN/inf at "
                                   f"indices {bad}: {st.tolist()}", key)
        prompt = obs[km.prompt]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ObservationError(f"observation key {km.prompt!r}: expected a non-empty str, got {_describe(prompt)}",
                                   km.prompt)
        return images, st.astype(np.float32), prompt

    def _build_metadata(self) -> dict[str, Any]:
        from .. import __version__

        cfg, km = self.model.config, self.key_map
        shape = list(km.image_shape) if km.image_shape else None
        return {
            "server": f"hf_vlmdrive {__version__}",
            "protocol": "openpi-msgpack-numpy",
            "model_type": cfg.model_type,
            "model_dir": self.model_dir,
            "action_chunk_size": int(cfg.action_chunk_size),
            "action_dim": int(cfg.action_dim),
            "action_key": "actions",
            "image_keys": list(km.images),
            "image_shapes": {k: shape for k in km.images},
            "image_dtype": "uint8",
            "state_key": km.state,
            "state_dim": int(cfg.state_dim),
            "state_dtype": "float64",
            "prompt_key": km.prompt,
            "reset_key": km.reset,
            "dataset_keys": {"state": cfg.state_key, "action": cfg.action_key},
            "normalization_mode": cfg.normalization_mode,
            "norm_stats_sha256": self.norm_stats_sha256,
            "num_steps": int(self.num_steps or cfg.num_inference_steps),
            "noise": self.noise,
            "seed": int(self.seed),
            "device": str(self._param.device),
            "dtype": str(self._param.dtype).replace("torch.", ""),
        }


def check_policy_dir(model_dir: str | Path, flag: str = "--model") -> Path:
    """The checks `load_policy` makes before it loads anything: a local GeoVLA checkpoint directory with its
    norm_stats.json. Raises a `UserError` naming the directory, what is wrong and what to do."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise UserFileNotFoundError(f"{flag} {model_dir}: no such directory; give a GeoVLA checkpoint directory "
                                    "(the output_dir of `hf-vlmdrive train geovla`, or one of its checkpoint-* folders)")
    if not (model_dir / "config.json").is_file():
        raise UserFileNotFoundError(f"{flag} {model_dir} is not a checkpoint directory (no config.json); give the "
                                    "output_dir of `hf-vlmdrive train geovla` or one of its checkpoint-* folders")
    check_model_family(str(model_dir), flag, ("geovla",), "the policy server")
    if not (model_dir / "norm_stats.json").is_file():
        raise UserFileNotFoundError(
            f"{flag} {model_dir} has no norm_stats.json, so actions cannot be un-normalised; give a directory "
            "`hf-vlmdrive train geovla` wrote (it saves the file to output_dir and every checkpoint-* folder)")
    return model_dir


def load_policy(
    model_dir: str | Path,
    key_map: KeyMap | Mapping[str, Any] | str | None = None,
    device: str | None = None,
    num_steps: int | None = None,
    *,
    dtype: str | None = None,
    seed: int = 0,
    noise: str = "episode",
) -> ModelPolicy:
    """Load a GeoVLA checkpoint directory (`AutoModel` + `AutoProcessor` + norm_stats.json) as a [`ModelPolicy`].

    Args:
        model_dir: a directory written by training (`config.json`, weights, `norm_stats.json`, processor files).
        key_map: observation layout ([`KeyMap`], dict or JSON string); default openpi's LIBERO layout.
        device: "cpu", "cuda", "cuda:1"...; default CUDA when available, else CPU.
        num_steps: Euler steps at inference (default: the checkpoint's `num_inference_steps`).
        dtype: parameter dtype ("float32", "bfloat16", "float16"); default as saved (float32).
        seed, noise: noise determinism, see [`ModelPolicy`].
    """
    import torch
    from transformers import AutoModel, AutoProcessor

    import hf_vlmdrive  # noqa: F401  (registers the Auto classes)

    model_dir = check_policy_dir(model_dir)
    stats_file = model_dir / "norm_stats.json"
    key_map = KeyMap.from_any(key_map)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
    model = AutoModel.from_pretrained(model_dir, **kwargs)
    if getattr(model.config, "model_type", None) != "geovla":
        raise UserError(f"{model_dir} holds a {family_name(model.config.model_type)} model; the policy server "
                        f"serves {family_name('geovla')} policies")
    model.to(device).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    if not hasattr(processor, "prepare_inputs"):
        raise ValueError(f"{model_dir}: AutoProcessor gave {type(processor).__name__}, expected a GeoVLAProcessor "
                         f"(save the training processor next to the model)")
    sha = hashlib.sha256(stats_file.read_bytes()).hexdigest()
    policy = ModelPolicy(model, processor, key_map, num_steps=num_steps, seed=seed, noise=noise,
                         model_dir=str(model_dir), norm_stats_sha256=sha)
    logger.info("loaded %s from %s on %s (chunk %d x %d, %d Euler steps)", type(model).__name__, model_dir, device,
                model.config.action_chunk_size, model.config.action_dim, policy.metadata["num_steps"])
    return policy


__all__ = ["KeyMap", "ModelPolicy", "NOISE_MODES", "ObservationError", "Policy", "check_policy_dir", "load_policy",
           "reset_requested"]
