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
- `check_launcher_gradient_accumulation(training_args)`: `accelerate launch --gradient_accumulation_steps N`
  never reaches the Trainer (ignored without DeepSpeed, "ds N vs hf 1" with it); `parse_args` calls this check and
  stops with a message naming the script's `--gradient_accumulation_steps` when the two values differ.
- `atomic_directory(path)`: write a folder under a temporary name and rename it into place, so that a reader (another
  rank, or a later run after a crash) sees the whole folder or none of it.
- `is_local_main_process(training_args)`: the process that prepares files on its machine (inside `prepare_once`).
- `broadcast_from_main(training_args, obj)`: every rank returns the main process's `obj` (e.g. the held-out metrics
  only the main process computed); it is also a barrier.
- `build_outside_zero3_init(training_args)`: a context manager around a recipe's model construction under DeepSpeed
  ZeRO-3: the model is built whole (as in one process) and DeepSpeed shards it when Trainer prepares it, instead
  of transformers partitioning every backbone at construction (`zero.Init`) before the recipe's own weight
  initialisation / weight copies ran.
- `seed_per_rank(training_args)` / `per_rank_seed_callback()`: ranks after the first get their own random streams once
  training begins (Trainer seeds every rank alike, so they would draw the same dropout masks).

In one process each helper costs nothing and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
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


@contextlib.contextmanager
def build_outside_zero3_init(training_args) -> Iterator[None]:
    """Build the model inside this block as one process would, also under DeepSpeed ZeRO-3.

    Once a `TrainingArguments` with a ZeRO-3 config exists, transformers builds every model created by
    `from_config` / `from_pretrained` under DeepSpeed's `zero.Init` (whatever accelerate's `zero3_init_flag` says):
    each parameter is partitioned into an empty local tensor as soon as its module is constructed. The waypoint and
    GeoVLA models initialise their own modules and copy backbone weights after the backbones are built (Xavier /
    truncated-normal init, meta-device materialisation), which cannot work on empty shards. Inside this block
    transformers' ZeRO-3 detection is switched off, so the model is built whole, with the same weights as in one
    process (seed first); `deepspeed.initialize` (run by Trainer) then broadcasts rank 0's parameters and shards
    them (DeepSpeed's own conversion of a model not built under `zero.Init`), which is what `zero3_init_flag: false`
    in `examples/configs/accelerate_zero3.yaml` asks for. The cost: every process holds the whole model in host
    memory until Trainer prepares it, as under DDP / ZeRO-2. Without ZeRO-3 the block changes nothing.
    """
    if getattr(training_args, "deepspeed_plugin", None) is None:  # no DeepSpeed (`--deepspeed` or accelerate's config)
        yield
        return
    from transformers.integrations import deepspeed as hf_deepspeed

    # The config transformers consults: `TrainingArguments.hf_deepspeed_config` (`--deepspeed ds.json`) or the
    # accelerate plugin's `dschf` (`accelerate launch --config_file`), held by a module-level weak reference.
    ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    active = ref() if ref is not None else None
    if active is None or not hf_deepspeed.is_deepspeed_zero3_enabled():
        yield
        return
    logger.info("DeepSpeed ZeRO-3: building the model whole on each process; DeepSpeed shards it when training starts")
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(active)


LAUNCHER_GRADIENT_ACCUMULATION_ENV = "ACCELERATE_GRADIENT_ACCUMULATION_STEPS"


def launcher_gradient_accumulation_steps(parent_cmdline: list[str] | None = None) -> tuple[int, str] | None:
    """`(N, where)` when `accelerate launch` was given `--gradient_accumulation_steps N`, else None.

    With DeepSpeed, accelerate exports N as `ACCELERATE_GRADIENT_ACCUMULATION_STEPS` (its DeepSpeed plugin then
    puts N into the DeepSpeed config). Without DeepSpeed it drops the flag without a word; the launcher is then this
    process's parent, and its command line (Linux `/proc`; or `parent_cmdline`) is parsed with accelerate's own
    launch parser. Anything unreadable counts as "not given"."""
    value = os.environ.get(LAUNCHER_GRADIENT_ACCUMULATION_ENV, "").strip()
    if value.isdigit():
        return int(value), f"{LAUNCHER_GRADIENT_ACCUMULATION_ENV}={value}, which `accelerate launch` sets with DeepSpeed"
    argv = parent_cmdline if parent_cmdline is not None else _parent_cmdline()
    launch_args = _accelerate_launch_args(argv or [])
    if launch_args is None:
        return None
    try:
        from accelerate.commands.launch import launch_command_parser

        parsed, _ = launch_command_parser().parse_known_args(launch_args)
    except (SystemExit, Exception):  # a launcher line we cannot read: nothing to check
        return None
    steps = getattr(parsed, "gradient_accumulation_steps", None)
    if steps is None:
        return None
    return int(steps), "on the `accelerate launch` command line"


def _parent_cmdline() -> list[str] | None:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _accelerate_launch_args(argv: list[str]) -> list[str] | None:
    """The arguments after `accelerate launch` / `python -m accelerate.commands.launch` in a command line, or None
    when it is not accelerate's launcher."""
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] in ("accelerate.commands.launch", "accelerate"):
            rest = argv[i + 2:]
            if argv[i + 1] == "accelerate":
                return rest[1:] if rest[:1] == ["launch"] else None
            return rest
        if os.path.basename(arg) in ("accelerate", "accelerate-launch"):
            rest = argv[i + 1:]
            if os.path.basename(arg) == "accelerate-launch":
                return rest
            return rest[1:] if rest[:1] == ["launch"] else None
    return None


def check_launcher_gradient_accumulation(training_args, parent_cmdline: list[str] | None = None) -> None:
    """Stop (UserError) when `accelerate launch --gradient_accumulation_steps N` differs from the training
    arguments' `gradient_accumulation_steps`.

    The Trainer's value is the one that counts (optimiser steps, LR schedule, logging, checkpoints, and DeepSpeed's
    `"gradient_accumulation_steps": "auto"`); the launcher's is dropped without DeepSpeed and clashes with the
    Trainer's with it. Equal values pass (the DeepSpeed config then agrees)."""
    found = launcher_gradient_accumulation_steps(parent_cmdline)
    script_steps = int(getattr(training_args, "gradient_accumulation_steps", 1) or 1)
    if found is None or found[0] == script_steps:
        return
    from .errors import UserError

    steps, where = found
    raise UserError(
        f"`accelerate launch --gradient_accumulation_steps {steps}` ({where}) does not reach the Trainer, whose "
        f"gradient_accumulation_steps is {script_steps}: without DeepSpeed accelerate ignores its flag, with "
        f"DeepSpeed it clashes with the Trainer's value (\"ds {steps} vs hf {script_steps}\"). Give it to the training "
        f"command instead (`... --gradient_accumulation_steps {steps}` after the script or `-m hf_vlmdrive.cli "
        f"train ...`, or `gradient_accumulation_steps: {steps}` in its YAML) and drop it from `accelerate launch`"
    )


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
def atomic_directory(path) -> Iterator:
    """Write a directory in one move: the block fills a temporary sibling folder (yielded as a `Path`), which
    then replaces `path` (`os.replace`; `path` may be missing or an empty folder). A reader (another rank, or a
    later run that takes `path/config.json` as "done") sees the whole directory or none, even after a crash
    mid-write. When `path` is a non-empty folder by then: if another process moved it into place while this block
    ran (two runs preparing the same data side by side, e.g. `hf-vlmdrive sweep --parallel`), that complete copy is
    kept and this one dropped; an older one is a partial copy from an interrupted run (`UserError`: delete it or pick
    another path). The temporary folder is removed in every case."""
    import time
    import uuid

    from .errors import UserError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    started = time.time()
    try:
        yield tmp
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        try:
            os.replace(tmp, path)
        except OSError as err:
            if path.is_dir() and path.stat().st_mtime >= started - 1.0:
                logger.info("%s was written by another process meanwhile; keeping that copy", path)
                return
            raise UserError(f"cannot move the freshly written {tmp.name} to {path}: {path} exists and is not empty "
                            f"({err.strerror}); it is probably a partial copy from an interrupted run: delete it "
                            "or choose another path") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


__all__ = ["atomic_directory", "barrier", "broadcast_from_main", "build_outside_zero3_init",
           "check_launcher_gradient_accumulation",
           "is_local_main_process", "is_main_process", "launcher_gradient_accumulation_steps", "per_rank_seed_callback",
           "prepare_once", "process_index", "seed_everything_for_init", "seed_per_rank", "world_size"]
