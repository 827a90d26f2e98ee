"""Metrics shipped inside the package as `evaluate.Metric` modules, loaded by path (never from the Hub).

    >>> from hf_vlmdrive.metrics import load_metric
    >>> trajectory = load_metric("trajectory")  # doctest: +SKIP

Each metric lives in `metrics/<name>/<name>.py`; the numeric core is a plain function in the same file
(e.g. `trajectory_metrics`) that `Trainer.compute_metrics` calls without evaluate's overhead.
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).parent


def available_metrics() -> list[str]:
    """Names of the metrics shipped with the package."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def metric_path(name: str) -> str:
    """Directory of the shipped metric `name`, suitable for `evaluate.load`."""
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"unknown metric {name!r}; shipped metrics: {available_metrics()}")
    return str(path)


def load_metric(name: str, **kwargs):
    """`evaluate.load` of a shipped metric by its local path (works offline)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = ["available_metrics", "load_metric", "metric_path"]
