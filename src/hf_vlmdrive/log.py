"""Logging set-up shared by the command line and the example scripts, and the two upstream import-time records it drops.

`configure_logging()` is what `hf-vlmdrive` and the example scripts call first: INFO records of every library
as `LEVEL logger: message` on stderr. `drop_import_noise()` runs on `import hf_vlmdrive` (so before any caller of
`configure_logging` gets here); it adds one filter to each of the two loggers named below and changes nothing
else of a user's logging set-up.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Since transformers 5.25 (which requires the `kernels` package), `from transformers import TrainingArguments`
# imports peft (transformers/trainer_utils.py, whenever peft is installed), peft imports bitsandbytes
# (peft/helpers.py), and bitsandbytes 0.50's CPU backend, on a CPU with AVX512-BF16, asks the `kernels` package
# for the Hub kernel 'kernels-community/quantization-bitsandbytes' while being imported. Offline, kernels 0.19
# logs a publisher-trust WARNING, and bitsandbytes then logs that the kernel failed to load (before 5.25, with
# no `kernels` installed, only the second, saying `pip install kernels`). No command of ours quantizes on
# import, every transformers training script pays the same import, and nothing in our code can skip it, so
# exactly those two records are dropped; every other record of both loggers passes.
_DROPPED: dict[str, str] = {
    "kernels._internals.hf_hub": "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'",
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
}


class _DropRecord(logging.Filter):
    """Drops the WARNING records of one logger whose format string starts with `prefix`."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and str(record.msg).startswith(self.prefix))


def drop_import_noise() -> None:
    """Install the filters above on their loggers (once each; a logger need not exist yet).

    A logger's filters act where its records are made, so they must be in place before the import that logs:
    `import hf_vlmdrive` before `transformers` / `trl` in a script.
    """
    for name, prefix in _DROPPED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropRecord) for f in logger.filters):
            logger.addFilter(_DropRecord(prefix))


def configure_logging(debug: bool = False) -> None:
    """INFO logging to stderr for a command-line run; `debug` keeps bitsandbytes' warnings.

    bitsandbytes warns on import about optional kernels a run without quantization never uses; below
    `--debug` its loggers show errors only.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


# TRL 1.16's `SFTConfig` defaults `gradient_checkpointing=True` and its SFTTrainer asks the model
# `is_gradient_checkpointing`; transformers 5.25 renamed both (`activation_checkpointing`) and warns with a
# FutureWarning each time, about names the user never wrote. `quiet_trl_renames()` drops exactly those two
# warnings around the library's SFT paths (the CLI, the demo and the example); nothing else is hidden.
_TRL_RENAMES = (r"`gradient_checkpointing` is deprecated and will be removed in v6",
                r"`is_gradient_checkpointing` is deprecated and will be removed in v6")


@contextlib.contextmanager
def quiet_trl_renames() -> Iterator[None]:
    """Run a block without the two FutureWarnings transformers 5.25 gives for TRL 1.16's own defaults."""
    with warnings.catch_warnings():
        for message in _TRL_RENAMES:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        yield


__all__ = ["configure_logging", "drop_import_noise", "quiet_trl_renames"]
