"""Analysis toolkit (SPEC 1.4): dataset statistics, stratified sampling, safe checkpoint inspection, context-vector
extraction with forward hooks, and the comparison of two sets of context vectors. Each is also an
`hf-vlmdrive analyze <what>` command with JSON output. Names are imported on first access."""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY_ATTRS = {
    "dataset_stats": ".dataset_stats",
    "stratified_sample": ".sampling",
    "save_sample": ".sampling",
    "load_sample": ".sampling",
    "DEFAULT_FRACTIONS": ".sampling",
    "inspect_checkpoint": ".checkpoint",
    "load_state_dict": ".checkpoint",
    "safe_torch_load": ".checkpoint",
    "UnsafeCheckpointError": ".checkpoint",
    "ContextHooks": ".hooks",
    "extract_context_vectors": ".hooks",
    "save_vectors": ".hooks",
    "load_vectors": ".hooks",
    "compare_vectors": ".compare",
    "compare_files": ".compare",
    "make_figures": ".compare",
    "write_report": ".compare",
    "METRIC_DEFINITIONS": ".compare",
}

__all__ = list(_LAZY_ATTRS)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
