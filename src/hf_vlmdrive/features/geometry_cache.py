"""Content-addressed cache of frozen geometry-encoder features (CPU bf16, memory budget, spill to disk).

The geometry encoder of GeoVLA is frozen, so its output for a given preprocessed input never changes:
the reference system cached it keyed by an MD5 of the preprocessed image (its plan said ~600 KB per frame in
bf16 from "196 tokens"; MapAnything at 224 px gives V x 256 tokens x 1536, 1.5 MiB for 2 views, so all of LIBERO
needs several hundred GB per process). This cache keeps the same key but bounds the memory:

- entries are stored on CPU in bf16 (configurable), least recently used first out;
- beyond `memory_budget_mb`, the least recently used entries are written to `spill_dir` as safetensors
  files and read back from there on a hit; a disk hit moves the entry back into RAM when it fits in the
  budget without pushing anything out (a working set that shrank below the budget returns to RAM);
- beyond `disk_budget_mb`, the least recently used spilled files are deleted (those samples are encoded
  again on their next use);
- a temporary spill directory (`spill_dir=None`) is removed by `close()`, which the GeoVLA recipe calls
  when training ends (also after an interruption);
- hits / misses (memory and disk) are counted and the hit rate is logged every `log_every` lookups.

Several processes may share one `spill_dir` (the ranks of a multi-process run given the same
`--geometry_cache_dir`): a file is written to a temporary name and moved into place with `os.replace`, so a
reader sees a whole file or none; each process keeps its own index and its own memory / disk budgets (a shared
folder holds up to N x `disk_budget_mb`), reads only files it spilled itself, and deletes only those; a file
another process deleted first (the same key evicted or promoted there) is a miss here, encoded again. Two
processes that spill the same key write the same bytes (the encoder is frozen and identical on every rank).

The key is the SHA-256 of the preprocessed tensor's bytes (float32, C-contiguous) and shape (the
reference used MD5; SHA-256 is collision-resistant and, with the CPU's SHA extensions, 2.4x faster here:
0.7 vs 1.65 ms per 1.2 MB batch). For a
multi-view encoder the whole view set of a sample is one entry (the views attend to each other). Any
random augmentation before the encoder would make every key new and every cached value stale, so a
cache built with `augmentation=True` is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..errors import UserError, UserTypeError

logger = logging.getLogger(__name__)


def content_key(pixel_values: torch.Tensor) -> str:
    """SHA-256 hex digest of a preprocessed input (its float32 bytes and its shape)."""
    t = pixel_values.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(t.shape)).encode())
    h.update(memoryview(t.numpy()).cast("B"))  # the buffer itself, no copy
    return h.hexdigest()


class GeometryFeatureCache:
    """LRU cache of encoder outputs keyed by `content_key`, with a CPU memory budget and disk spill.

    Args:
        memory_budget_mb: bytes of cached tensors kept in RAM (per process).
        spill_dir: where entries beyond the budget go (a temporary directory, removed by `close()`, if None).
        dtype: storage dtype (bf16 halves memory; the model casts back to its own dtype).
        augmentation: must be False; a cache in front of randomly augmented inputs is refused.
        log_every: log the hit rate every this many lookups (0 = never).
        disk_budget_mb: bytes of spilled files kept on disk (None = unbounded); the least recently used
            spilled entries are deleted beyond it.
    """

    def __init__(
        self,
        memory_budget_mb: float = 1024.0,
        spill_dir: str | Path | None = None,
        dtype: torch.dtype = torch.bfloat16,
        augmentation: bool = False,
        log_every: int = 1000,
        disk_budget_mb: float | None = None,
    ):
        if augmentation:
            raise UserError(
                "GeometryFeatureCache refuses augmented inputs: with random augmentation every preprocessed image "
                "is new, so the cache would only grow and never hit. Turn augmentation off for the geometry "
                "input (deterministic preprocessing) or disable the cache"
            )
        if memory_budget_mb < 0:
            raise UserError(f"memory_budget_mb must be >= 0, got {memory_budget_mb}")
        if disk_budget_mb is not None and disk_budget_mb < 0:
            raise UserError(f"disk_budget_mb must be >= 0 or None (unbounded), got {disk_budget_mb}")
        self.disk_budget_bytes = None if disk_budget_mb is None else int(disk_budget_mb * 2**20)
        self.memory_budget_bytes = int(memory_budget_mb * 2**20)
        self.dtype = dtype
        self.log_every = log_every
        self._own_dir = spill_dir is None
        self._spill_dir = Path(spill_dir) if spill_dir is not None else None
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._on_disk: OrderedDict[str, int] = OrderedDict()  # key -> file size, least recently used first
        self.memory_bytes = 0
        self.disk_bytes = 0
        self.hits_memory = self.hits_disk = self.misses = self.spilled = 0
        self.promoted = self.evicted = self.vanished = 0

    # ------------------------------------------------------------------ storage
    @property
    def spill_dir(self) -> Path:
        """Directory of spilled entries (created on first spill)."""
        if self._spill_dir is None:
            self._spill_dir = Path(tempfile.mkdtemp(prefix="geovla_geom_cache_"))
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        return self._spill_dir

    def __len__(self) -> int:
        return len(self._memory) + len(self._on_disk)

    def __contains__(self, key: str) -> bool:
        return key in self._memory or key in self._on_disk

    def _spill_path(self, key: str) -> Path:
        return self.spill_dir / f"{key}.safetensors"

    @staticmethod
    def _nbytes(value: torch.Tensor) -> int:
        return value.numel() * value.element_size()

    def _spill(self, key: str, value: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path = self._spill_path(key)
        # write-then-rename: another process reading this key (a shared spill folder) never sees a partial file
        tmp = path.with_name(f".{key}.{uuid.uuid4().hex}.tmp")
        try:
            save_file({"features": value}, str(tmp))
            size = tmp.stat().st_size
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._on_disk[key] = size
        self.disk_bytes += size
        self.spilled += 1
        if self.disk_budget_bytes is not None:
            while self.disk_bytes > self.disk_budget_bytes and self._on_disk:
                self._drop_from_disk(next(iter(self._on_disk)))
                self.evicted += 1

    def _read_spilled(self, key: str) -> torch.Tensor | None:
        """The spilled tensor of `key`, or None when its file is gone (another process sharing the folder
        evicted or promoted the same key; the entry leaves this index and counts as a miss)."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        path = self._spill_path(key)
        try:
            # one open + read: once open, the bytes stay readable even if another process deletes the file
            # (load_file opens it twice, header then storage, and can lose it in between)
            return load(path.read_bytes())["features"]
        except FileNotFoundError:
            logger.debug("geometry cache: %s is gone (another process dropped it); encoding it again", path.name)
        except SafetensorError as err:  # not written by this cache's atomic writes (e.g. a full disk): re-encode
            logger.warning("geometry cache: cannot read %s (%s); encoding it again", path, err)
            path.unlink(missing_ok=True)
        self.disk_bytes -= self._on_disk.pop(key)
        self.vanished += 1
        return None

    def _drop_from_disk(self, key: str) -> None:
        self.disk_bytes -= self._on_disk.pop(key)
        self._spill_path(key).unlink(missing_ok=True)

    def put(self, key: str, value: torch.Tensor) -> None:
        """Store `value` (moved to CPU, cast to the storage dtype) under `key`, spilling LRU entries if needed."""
        if key in self:
            return
        value = value.detach().to("cpu", self.dtype).contiguous()
        self._memory[key] = value
        self.memory_bytes += self._nbytes(value)
        while self.memory_bytes > self.memory_budget_bytes and self._memory:
            old_key, old = self._memory.popitem(last=False)
            self.memory_bytes -= self._nbytes(old)
            self._spill(old_key, old)

    def get(self, key: str) -> torch.Tensor | None:
        """The cached tensor for `key` (from RAM or disk), or None; counts the hit or miss."""
        value = self._memory.get(key)
        if value is not None:
            self._memory.move_to_end(key)
            self.hits_memory += 1
        elif key in self._on_disk and (value := self._read_spilled(key)) is not None:
            self.hits_disk += 1
            if self.memory_bytes + self._nbytes(value) <= self.memory_budget_bytes:
                self._drop_from_disk(key)  # promoted: back in RAM, its file and disk budget freed
                self._memory[key] = value
                self.memory_bytes += self._nbytes(value)
                self.promoted += 1
            else:
                self._on_disk.move_to_end(key)
        else:
            self.misses += 1
        lookups = self.lookups
        if self.log_every and lookups % self.log_every == 0:
            logger.info("geometry cache: %s", self.format_stats())
        return value

    # ------------------------------------------------------------------ batched use
    def encode(
        self,
        pixel_values: torch.Tensor,
        encode_fn: Callable[[torch.Tensor], torch.Tensor],
        dtype: torch.dtype | None = None,
        keys: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Features of a batch (B, ...) -> (B, ...): cached samples are read, the misses encoded in one call.

        The result has `dtype` (default: the input's floating dtype), whether it came from the cache or not.
        `keys` are the samples' `content_key`s when the caller already has them (the GeoVLA collator computes
        them in the DataLoader workers, on the CPU tensor it built); otherwise they are computed here, which
        hashes the batch inside the training step and, for a GPU tensor, copies it back to the host first.
        """
        dtype = dtype or (pixel_values.dtype if pixel_values.is_floating_point() else torch.float32)
        if keys is None:
            keys = [content_key(p) for p in pixel_values]
        elif len(keys) != len(pixel_values):
            raise UserError(f"geometry cache: {len(keys)} keys for a batch of {len(pixel_values)} samples; pass one "
                            "`content_key` per sample (GeoVLACollator(cache_keys=True) does) or none")
        found = [self.get(k) for k in keys]
        missing = [i for i, v in enumerate(found) if v is None]
        if missing:
            with torch.no_grad():
                fresh = encode_fn(pixel_values[missing])
            for j, i in enumerate(missing):
                self.put(keys[i], fresh[j])
                found[i] = fresh[j].detach().to("cpu", self.dtype)  # same rounding as a later hit
        return torch.stack([v.to(pixel_values.device, dtype) for v in found])

    # ------------------------------------------------------------------ statistics
    @property
    def lookups(self) -> int:
        """Number of `get` calls so far."""
        return self.hits_memory + self.hits_disk + self.misses

    @property
    def hit_rate(self) -> float:
        """Fraction of lookups served from RAM or disk."""
        return (self.hits_memory + self.hits_disk) / self.lookups if self.lookups else 0.0

    def stats(self) -> dict[str, float]:
        """Counters for logging: hit rate, hits (memory/disk), misses, entries, MB in RAM, spilled entries."""
        return {
            "geom_cache_hit_rate": self.hit_rate,
            "geom_cache_hits_memory": self.hits_memory,
            "geom_cache_hits_disk": self.hits_disk,
            "geom_cache_misses": self.misses,
            "geom_cache_entries": len(self),
            "geom_cache_memory_mb": self.memory_bytes / 2**20,
            "geom_cache_disk_mb": self.disk_bytes / 2**20,
            "geom_cache_spilled": self.spilled,
            "geom_cache_promoted": self.promoted,
            "geom_cache_evicted": self.evicted,
            "geom_cache_vanished": self.vanished,
        }

    def format_stats(self) -> str:
        """One-line summary of `stats()`."""
        s = self.stats()
        return (f"hit rate {s['geom_cache_hit_rate']:.1%} ({self.hits_memory} RAM + {self.hits_disk} disk hits, "
                f"{self.misses} misses), {len(self)} entries, {s['geom_cache_memory_mb']:.1f} MB RAM, "
                f"{s['geom_cache_disk_mb']:.1f} MB disk, {self.spilled} spilled, {self.promoted} back in RAM, "
                f"{self.evicted} dropped from disk, {self.vanished} gone from a shared folder")

    def close(self) -> None:
        """Drop every entry and remove a temporary spill directory."""
        self._memory.clear()
        self._on_disk.clear()
        self.memory_bytes = self.disk_bytes = 0
        if self._own_dir and self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None

    def __getstate__(self):
        raise UserTypeError("GeometryFeatureCache lives in one process; create one per process (it is not picklable)")


__all__ = ["GeometryFeatureCache", "content_key"]
