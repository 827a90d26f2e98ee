"""Resolve a waypoint data specification into a `datasets.Dataset`.

A specification is one of:
- `synthetic:N` or `synthetic:N:SEED` — N procedural scenes (`data.synthetic.driving`), seed 0 by default;
- a directory written by `Dataset.save_to_disk`;
- WOD-E2E TFRecord file(s): a path, a glob (`data/validation.tfrecord*`), a directory holding
  `*tfrecord*` files, or a comma-separated list of those, read by `hf_vlmdrive.data.waymo_e2e`
  (which adds `calibrations`, `preference_trajectories` and `preference_scores` columns).

Every waypoint dataset has the columns `frame_name`, `image` (or `images` for several cameras),
`past_states` (16x6), `intent` and, except for test splits, `future_waypoints` (20x2).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError, UserFileNotFoundError

REQUIRED_COLUMNS = ("past_states", "intent")


def load_waypoint_dataset(
    spec: str,
    image_width: int = 192,
    image_height: int = 128,
    camera_names: tuple[str, ...] = ("FRONT",),
    progress: bool = True,
    stats=None,
):
    """Load / generate the dataset described by `spec` (see the module docstring).

    With `stats` (a `waymo_e2e.ReadStats`), TFRecord input is read with every skipped record counted there
    (`stats.summary()` is the read / skipped / why line); a read that yields no frame raises a `UserError`.
    """
    import datasets

    if spec.startswith("synthetic:"):
        parts = spec.split(":")
        try:
            count = int(parts[1])
            seed = int(parts[2]) if len(parts) > 2 else 0
        except (IndexError, ValueError) as err:
            raise UserError(f"synthetic data spec must be 'synthetic:N' or 'synthetic:N:SEED', got {spec!r}") from err
        from .synthetic.driving import generate_waypoint_dataset

        return generate_waypoint_dataset(
            count, seed=seed, width=image_width, height=image_height, camera_names=tuple(camera_names), progress=progress
        )
    path = Path(spec)
    if path.is_dir() and (path / "dataset_info.json").is_file():
        ds = datasets.load_from_disk(str(path))
    elif _looks_like_tfrecords(spec):
        from .waymo_e2e import load_e2ed_dataset

        ds = load_e2ed_dataset(spec, camera_names=tuple(camera_names), stats=stats)
    elif path.exists():
        raise UserError(
            f"{spec!r} is not a waypoint dataset: expected WOD-E2E TFRecord file(s), a directory written by "
            "Dataset.save_to_disk or 'synthetic:N[:SEED]'"
        )
    else:
        raise UserFileNotFoundError(
            f"waypoint data {spec!r} does not exist (nor is it 'synthetic:N[:SEED]' or a glob of TFRecord files)"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if "image" not in ds.column_names and "images" not in ds.column_names:
        missing.append("image")
    if missing:
        raise UserError(f"waypoint dataset {spec!r} lacks column(s) {missing}; it has {ds.column_names}")
    if len(ds) == 0:
        raise UserError(f"waypoint data {spec!r} holds no rows")
    if stats is not None and not stats.records and not stats.skipped:
        stats.records = len(ds)
    return ds


def _looks_like_tfrecords(spec: str) -> bool:
    """A file, a glob / comma list matching files, or a directory holding `*tfrecord*` files."""
    import glob
    import os

    for item in (s for s in spec.split(",") if s):
        if os.path.isfile(item):
            continue
        if os.path.isdir(item) and glob.glob(os.path.join(item, "*tfrecord*")):
            continue
        if any(c in item for c in "*?[") and glob.glob(item):
            continue
        return False
    return bool(spec.strip(","))


__all__ = ["load_waypoint_dataset"]
