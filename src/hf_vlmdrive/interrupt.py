"""Ctrl-C during training: finish the step, save a checkpoint, say how to resume.

`train_interruptibly(trainer, resume_from_checkpoint)` is `trainer.train(...)` with a SIGINT handler: the
first Ctrl-C asks the Trainer to stop after the current optimiser step and save a checkpoint (whatever
`save_strategy` is); a second Ctrl-C stops at once (KeyboardInterrupt, as before). The interrupted run
raises [`TrainingInterrupted`], which the command line prints with the command that resumes it
(`--resume_from_checkpoint last`) and exit code 130. Nothing is corrupted either way: checkpoints are
written by Trainer's own saving code.

`resume_from_checkpoint` accepts what every recipe documents: a checkpoint directory, or `last` / `true`
for the newest `checkpoint-*` in `output_dir` (None when there is none: a fresh start, logged).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .errors import TrainingInterrupted

logger = logging.getLogger(__name__)


class _StopRequest(TrainerCallback):
    """Turns a pending stop request into Trainer's own save-and-stop at the end of the step."""

    def __init__(self):
        self.requested = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control


def resolve_resume(resume: Any, output_dir: str | None) -> str | None:
    """A checkpoint directory for `resume_from_checkpoint` (see the module docstring)."""
    if resume in (None, False, "", "false", "False", "no", "none", "None"):
        return None
    if resume in (True, "true", "True", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if output_dir and Path(output_dir).is_dir() else None
        logger.info("resuming from %s", last or f"scratch (no checkpoint in {output_dir})")
        return last
    if not Path(str(resume)).is_dir():
        from .errors import UserFileNotFoundError

        raise UserFileNotFoundError(
            f"resume_from_checkpoint={resume!r} is not a checkpoint directory; give one, or 'last' for the newest "
            f"checkpoint-* in output_dir"
        )
    return str(resume)


def _no_pinning_without_accelerator(args) -> None:
    # TrainingArguments pins DataLoader memory by default; with no accelerator, torch warns that pinning has no
    # effect (from every DataLoader the run builds). Pinning cannot help there, so it is switched off.
    import torch

    if args.dataloader_pin_memory and not torch.accelerator.is_available():
        args.dataloader_pin_memory = False


def train_interruptibly(trainer, resume_from_checkpoint: Any = None):
    """`trainer.train(resume_from_checkpoint=...)`; Ctrl-C saves a checkpoint and raises `TrainingInterrupted`."""
    resume = resolve_resume(resume_from_checkpoint, trainer.args.output_dir)
    _no_pinning_without_accelerator(trainer.args)
    stop = _StopRequest()
    trainer.add_callback(stop)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main_thread else None

    def on_sigint(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        logger.warning("interrupt: finishing the current step and saving a checkpoint (Ctrl-C again stops at once)")

    if main_thread:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        trainer.remove_callback(stop)
    if stop.requested:
        from transformers.trainer_utils import get_last_checkpoint

        output_dir = trainer.args.output_dir
        checkpoint = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        raise TrainingInterrupted(trainer.state.global_step, checkpoint, output_dir)
    return result


__all__ = ["TrainingInterrupted", "resolve_resume", "train_interruptibly"]
