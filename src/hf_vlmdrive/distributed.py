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

In one process each helper costs nothing and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

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


__all__ = ["barrier", "is_main_process", "prepare_once", "process_index", "seed_everything_for_init", "world_size"]


@contextlib.contextmanager
def atomic_directory(path) -> Iterator:
    """Write a directory in one move: the block fills a temporary sibling folder (yielded as a `Path`), which
    then replaces `path` (`os.replace`; `path` may be missing or an empty folder). A reader (another rank, or a
    later run that takes `path/config.json` as "done") sees the whole directory or none, even after a crash
    mid-write. Raises `UserError` when `path` is a non-empty folder by then (a partial copy from an older run):
    delete it or pick another path. The temporary folder is removed when the block fails."""
    import shutil
    import uuid
    from pathlib import Path

    from .errors import UserError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise UserError(f"cannot move the freshly written {tmp.name} to {path}: {path} exists and is not empty "
                            f"({err.strerror}); it is probably a partial copy from an interrupted run: delete it "
                            "or choose another path") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ += ["atomic_directory"]


def seed_per_rank(training_args) -> None:
    """Give every rank but the first its own python / numpy / torch random streams (dropout masks, ...).

    Trainer seeds every rank alike (`set_seed(args.seed)`), so without this the ranks draw the same dropout masks
    for different samples. Rank 0 keeps the stream a one-process run has. Call it once Trainer has built the
    train DataLoader (accelerate's seedable sampler reads `torch.initial_seed()` there when `data_seed` is unset,
    and every rank must shuffle alike): `per_rank_seed_callback()` does it from `on_train_begin`. On resume,
    Trainer then restores each rank's saved streams (`rng_state_<rank>.pth`)."""
    rank = process_index(training_args)
    if world_size(training_args) <= 1 or rank == 0:
        return
    import hashlib

    from transformers import set_seed

    set_seed(int.from_bytes(hashlib.sha256(f"{training_args.seed}/rank{rank}".encode()).digest()[:4], "little"))


def per_rank_seed_callback():
    """A `TrainerCallback` that calls `seed_per_rank(args)` when training begins (see there)."""
    from transformers import TrainerCallback

    class PerRankSeedCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seed_per_rank(args)

    return PerRankSeedCallback()


__all__ += ["per_rank_seed_callback", "seed_per_rank"]
