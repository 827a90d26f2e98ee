"""`torch_threads(n)`: run a block with n torch intra-op threads, then restore the previous count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """The quick-path demos train with one thread: on shared 2-core machines two were measured far slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
