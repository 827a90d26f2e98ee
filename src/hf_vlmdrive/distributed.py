"""What every recipe needs to be one correct run under N processes (`accelerate launch`, `torchrun`, DeepSpeed).

Trainer already shards the training data, all-reduces gradients and saves checkpoints from the main process. What
it cannot know is what a recipe does around it; these helpers cover that:

- `prepare_once(training_args, desc)`: a context manager for work that writes files the other ranks then read
  (synthetic data, tiny backbones, a feature cache): the main process runs the block first, the others wait at a
  barrier and then run it themselves, finding the files in place (so the block must skip work that is done).
- `is_main_process(training_args)`: write a file (model card, metrics, processor, figures) only where this is true.
- `barrier(training_args)`: every rank waits for the others (a no-op in one process).
- `seed_everything_for_init(training_args)`: `transformers.set_seed(seed)` before a model is built, so that `--seed`
  fixes the initial weights and every rank builds the same ones.
- `atomic_directory(path)`: write a folder under a temporary name and rename it into place, so that a reader (another
  rank, or a later run after a crash) sees the whole folder or none of it.
- `is_local_main_process(training_args)`: the process that prepares files on its machine (inside `prepare_once`).
- `broadcast_from_main(training_args, obj)`: every rank returns the main process's `obj` (e.g. the held-out metrics
  only the main process computed); it is also a barrier.

In one process each helper costs nothing and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


def world_size(training_args=None) -> int:
    """The number of processes of this run (1 without a launcher)."""
    if training_args is not None:
        return int(getattr(training_args, "world_size", 1) or 1)
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_index(training_args=None) -> int:
    """This process's global rank (0 without a launcher)."""
    if training_args is not None:
        return int(getattr(training_args, "process_index", 0) or 0)
    return int(os.environ.get("RANK", "0"))


def is_main_process(training_args=None) -> bool:
    """True on the process that writes the run's files (global rank 0)."""
    return process_index(training_args) == 0


def is_local_main_process(training_args=None) -> bool:
    """True on the first process of this machine (the one `prepare_once` runs first)."""
    if training_args is not None:
        return int(getattr(training_args, "local_process_index", 0) or 0) == 0
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


@contextlib.contextmanager
def prepare_once(training_args, desc: str = "preparing files") -> Iterator[None]:
    """Run the block on the main process first, then on the others (see the module docstring). Every rank of a
    machine shares its disk, so the local main process prepares (`local=True`, as Trainer's own dataset preparation
    does); on several machines each machine's first process prepares its own copy."""
    if world_size(training_args) <= 1:
        yield
        return
    with training_args.main_process_first(local=True, desc=desc):
        yield


def barrier(training_args=None) -> None:
    """Wait for every rank (no-op in one process)."""
    if world_size(training_args) <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def seed_everything_for_init(training_args) -> None:
    """Seed python / numpy / torch from `training_args.seed` before the model is built: `--seed` then fixes the
    initial weights, and every rank starts from the same ones (DDP broadcasts rank 0's anyway, DeepSpeed does not
    for every stage)."""
    from transformers import set_seed

    set_seed(training_args.seed)


def broadcast_from_main(training_args, obj):
    """The main process's `obj` on every rank (picklable; `obj` of the other ranks is ignored). In one process it
    returns `obj`. Every rank must call it: it waits for the main process like `barrier`."""
    if world_size(training_args) <= 1:
        return obj
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj if is_main_process(training_args) else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def atomic_directory(path) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; when the block succeeds it is renamed to `path` (one `os.replace`),
    so nobody ever reads a half-written `path`. A failed block leaves nothing behind. If `path` appeared meanwhile
    (written by another process), that one is kept and the temporary folder is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
            logger.info("%s was written meanwhile by another process; keeping that one", path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["atomic_directory", "barrier", "broadcast_from_main", "is_local_main_process", "is_main_process",
           "prepare_once", "process_index", "seed_everything_for_init", "world_size"]
