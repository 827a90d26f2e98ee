"""On-disk cache of frozen-encoder outputs, content-addressed, safe to share between processes.

A frozen vision tower gives the same output for the same image every epoch, so recomputing it wastes
almost all of a head-only training run. This cache stores one safetensors file per image:

```
<cache_dir>/<namespace>/meta.json                 what the namespace was built from (for people)
<cache_dir>/<namespace>/<k[:2]>/<k>.safetensors   one entry: {"features": tensor}, metadata {"key": k}
```

- `namespace` = SHA-256 of the *identity*: the encoder's config, a fingerprint of its weights (SHA-256 of
  every tensor's name, dtype, shape and bytes), the preprocessing (the image processor's settings and
  class) and what is stored (e.g. pooled features vs. patch tokens). `k` = SHA-256 of the namespace and
  the image's content digest (its encoded bytes, or its pixels for an in-memory image). A change of any of
  these gives other keys, so stale features are never served.
- Writes are atomic: the entry is written to a temporary file in the same directory and renamed over
  the final name (`os.replace`). A killed writer leaves at most a `.tmp` file, which readers never open;
  readers see a whole entry or none, so any number of processes (dataloader workers, ranks) may read
  while others write. Two writers of one key write the same bytes; the last rename wins.
- A file that is nevertheless unreadable (disk corruption, a truncated copy) or holds another key is
  reported with its path, counted as `corrupt`, treated as a miss and overwritten by the next `put`.

The cache is a plain picklable object (a directory and a namespace), so every dataloader worker can
hold one. Model-specific choices (which tensor to cache, how to build the identity) live with the model;
see `WaypointVLMModel.feature_cache_identity`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError, UserFileNotFoundError, UserTypeError

logger = logging.getLogger(__name__)

CACHE_ENV = "HF_VLMDRIVE_FEATURE_CACHE"
_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "_commit_hash", "_attn_implementation_autoset")
_VOLATILE_PROCESSOR_KEYS = ("processor_class", "_processor_class")


def default_cache_dir() -> Path:
    """`$HF_VLMDRIVE_FEATURE_CACHE`, else `$XDG_CACHE_HOME/hf_vlmdrive/features` (`~/.cache/...`)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "hf_vlmdrive" / "features"


# ---------------------------------------------------------------------------------------------- digests
def image_digest(image: Any) -> str:
    """SHA-256 hex digest of an image's content.

    Accepts what a `datasets.Image` column yields: with `decode=False` a dict `{"bytes", "path"}` (the
    encoded file bytes are hashed, read from `path` when `bytes` is empty) — or a decoded `PIL.Image`
    (its mode, size and pixel bytes are hashed) — or raw `bytes`.
    """
    h = hashlib.sha256()
    if isinstance(image, (bytes, bytearray, memoryview)):
        h.update(b"bytes:")
        h.update(image)
    elif isinstance(image, dict):
        data = image.get("bytes")
        if data is None:
            path = image.get("path")
            if not path:
                raise UserError(f"image entry has neither bytes nor a path: keys {sorted(image)}")
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                raise UserFileNotFoundError(f"image file {path} cannot be read for the feature cache: {err}") from err
        h.update(b"bytes:")
        h.update(data)
    elif hasattr(image, "tobytes") and hasattr(image, "mode"):  # PIL
        h.update(f"pil:{image.mode}:{image.size}:".encode())
        h.update(image.tobytes())
    else:
        raise UserTypeError(f"cannot hash an image of type {type(image).__name__}: pass bytes, a datasets image dict or PIL")
    return h.hexdigest()


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict: every tensor's name, dtype, shape and raw bytes, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def config_digest(config: Any) -> dict:
    """A transformers config as a JSON-able dict without the fields that do not change the computation."""
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {k: v for k, v in sorted(data.items()) if k not in _VOLATILE_CONFIG_KEYS}


def preprocessing_digest(image_processor: Any) -> dict:
    """The settings of an image processor (and its class: slow and fast processors round differently)."""
    data = image_processor.to_dict() if hasattr(image_processor, "to_dict") else {"repr": repr(image_processor)}
    data = {k: v for k, v in sorted(data.items()) if k not in _VOLATILE_PROCESSOR_KEYS}
    data["class"] = type(image_processor).__name__
    return data


def _json_default(value: Any):
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, torch.dtype):
        return str(value)
    return repr(value)


def identity_namespace(identity: dict) -> str:
    """SHA-256 of the canonical JSON of `identity` (sorted keys)."""
    blob = json.dumps(identity, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- cache
class FeatureCache:
    """Content-addressed on-disk store of encoder outputs (see the module docstring).

    Args:
        identity: everything that determines the encoder output besides the image (encoder config, weights
            fingerprint, preprocessing, what is stored); hashed into the namespace.
        cache_dir: root directory (default: `default_cache_dir()`).
        dtype: storage dtype; None keeps the encoder's dtype (cached training is then bit-identical to
            recomputing), `torch.float16` / `torch.bfloat16` halve the disk use.
    """

    def __init__(self, identity: dict, cache_dir: str | Path | None = None, dtype: torch.dtype | None = None):
        self.identity = identity
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.dtype = dtype
        self.namespace = identity_namespace(identity)
        self.root = self.cache_dir / self.namespace[:16]
        self.hits = self.misses = self.corrupt = self.writes = 0

    # ------------------------------------------------------------------ keys and paths
    def key(self, digest: str) -> str:
        """Entry key of an image digest in this namespace."""
        return hashlib.sha256(f"{self.namespace}:{digest}".encode()).hexdigest()

    def path(self, key: str) -> Path:
        """File of an entry."""
        return self.root / key[:2] / f"{key}.safetensors"

    def __contains__(self, digest: str) -> bool:
        return self.path(self.key(digest)).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.safetensors")) if self.root.is_dir() else 0

    def _write_meta(self) -> None:
        meta = self.root / "meta.json"
        if meta.is_file():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        blob = json.dumps({"namespace": self.namespace, "identity": self.identity}, indent=1, default=_json_default)
        _atomic_write_bytes(meta, blob.encode())

    # ------------------------------------------------------------------ read / write
    def get(self, digest: str) -> torch.Tensor | None:
        """The cached tensor of an image digest, or None (a miss; unreadable entries count as corrupt)."""
        key = self.key(digest)
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        from safetensors.torch import load

        try:
            tensors = load(data)
            value = tensors["features"]
            stored_key = _read_metadata(data).get("key")
            if stored_key != key:
                raise UserError(f"entry holds key {stored_key!r}")
        except Exception as err:  # noqa: BLE001  (any unreadable entry is a miss, never a crash)
            self.corrupt += 1
            self.misses += 1
            logger.warning("feature cache: unreadable entry %s (%s); treating it as a miss, it will be rewritten", path, err)
            return None
        self.hits += 1
        return value

    def is_complete(self, digest: str) -> bool:
        """Whether the entry exists and is whole, reading only its header: the header parses, holds this
        key, and the file is exactly as long as the header says. Unreadable entries count as corrupt."""
        key = self.key(digest)
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
            end = max(t["data_offsets"][1] for name, t in header.items() if name != "__metadata__")
            stored_key = (header.get("__metadata__") or {}).get("key")
            if stored_key != key:
                raise UserError(f"entry holds key {stored_key!r}")
            if path.stat().st_size != 8 + size + end:
                raise UserError(f"file has {path.stat().st_size} bytes, its header describes {8 + size + end}")
        except FileNotFoundError:
            return False
        except Exception as err:  # noqa: BLE001  (any unreadable entry is a miss, never a crash)
            self.corrupt += 1
            logger.warning("feature cache: unreadable entry %s (%s); it will be rewritten", path, err)
            return False
        return True

    def put(self, digest: str, value: torch.Tensor) -> None:
        """Store `value` for an image digest, atomically (temporary file + rename)."""
        from safetensors.torch import save

        key = self.key(digest)
        value = value.detach().to("cpu")
        if self.dtype is not None:
            value = value.to(self.dtype)
        self._write_meta()
        blob = save({"features": value.contiguous()}, metadata={"key": key})
        _atomic_write_bytes(self.path(key), blob)
        self.writes += 1

    # ------------------------------------------------------------------ maintenance
    def remove_partial_writes(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary files of killed writers older than `older_than_s` seconds; returns how many."""
        if not self.root.is_dir():
            return 0
        now, removed = time.time(), 0
        for tmp in self.root.glob("**/.*.tmp"):
            try:
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def stats(self) -> dict[str, int]:
        """Counters of this process: hits, misses, corrupt entries seen, writes."""
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt, "writes": self.writes}

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r}, dtype={self.dtype})"


def _read_metadata(blob: bytes) -> dict:
    """The `__metadata__` of a serialized safetensors blob."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    return header.get("__metadata__") or {}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fill_feature_cache(
    cache: FeatureCache,
    images: Iterable[list[Any]],
    encode: Callable[[list[Any]], torch.Tensor],
    total: int | None = None,
    desc: str = "caching features",
    progress: bool = True,
) -> dict[str, int]:
    """Encode and store every image of `images` that the cache lacks.

    `images` yields batches (lists) of raw images (datasets image dicts, PIL images or bytes); `encode`
    maps a list of raw images to a tensor with one row per image. Images already cached are hashed and
    skipped, not decoded. Returns {"images", "cached", "computed", "corrupt"}.
    """
    from tqdm.auto import tqdm

    counts = {"images": 0, "cached": 0, "computed": 0, "corrupt": 0}
    corrupt_before = cache.corrupt
    cache.remove_partial_writes()
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for batch in images:
            digests = [image_digest(img) for img in batch]
            todo = {}
            for img, digest in zip(batch, digests, strict=True):
                if digest in todo:
                    continue
                if cache.is_complete(digest):  # header check only: a warm cache is not read in full
                    continue
                todo[digest] = img
            if todo:
                with torch.no_grad():
                    out = encode(list(todo.values()))
                if out.shape[0] != len(todo):
                    raise UserError(f"encode returned {out.shape[0]} rows for {len(todo)} images")
                for row, digest in zip(out, todo, strict=True):
                    cache.put(digest, row)
            counts["images"] += len(batch)
            counts["computed"] += len(todo)
            counts["cached"] += len(batch) - len(todo)
            bar.update(len(batch))
    counts["corrupt"] = cache.corrupt - corrupt_before
    return counts


__all__ = [
    "CACHE_ENV",
    "FeatureCache",
    "config_digest",
    "default_cache_dir",
    "fill_feature_cache",
    "identity_namespace",
    "image_digest",
    "preprocessing_digest",
    "weights_fingerprint",
]
