"""Shared pytest setup: offline, CPU, small thread counts, deterministic seeds."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# Training uses the on-disk feature cache by default: keep the tests' entries out of the user's cache.
if "HF_VLMDRIVE_FEATURE_CACHE" not in os.environ:
    import tempfile

    os.environ["HF_VLMDRIVE_FEATURE_CACHE"] = tempfile.mkdtemp(prefix="hf_vlmdrive_test_features_")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cli():
    """Run `hf-vlmdrive <argv>` in-process and return its exit code."""
    from hf_vlmdrive.cli import main

    def run(*argv: str) -> int:
        return main([str(a) for a in argv])

    return run


# Every test has a time limit (pytest-timeout; `timeout` in pyproject.toml), so a hang fails with its stack instead of
# running into CI's limit. The end-to-end tests marked `slow` (a learning run each) get a longer one.
SLOW_TEST_TIMEOUT_S = 900


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))
