"""Resolve a waypoint data specification into a `datasets.Dataset`.

A specification is one of:
- `synthetic:N` or `synthetic:N:SEED` — N procedural scenes (`data.synthetic.driving`), seed 0 by default;
- a directory written by `Dataset.save_to_disk`.

Every waypoint dataset has the columns `frame_name`, `image` (or `images` for several cameras),
`past_states` (16x6), `intent` and, except for test splits, `future_waypoints` (20x2).
"""

from __future__ import annotations

from pathlib import Path

REQUIRED_COLUMNS = ("past_states", "intent")


def load_waypoint_dataset(
    spec: str,
    image_width: int = 192,
    image_height: int = 128,
    camera_names: tuple[str, ...] = ("FRONT",),
    progress: bool = True,
):
    """Load / generate the dataset described by `spec` (see the module docstring)."""
    import datasets

    if spec.startswith("synthetic:"):
        parts = spec.split(":")
        try:
            count = int(parts[1])
            seed = int(parts[2]) if len(parts) > 2 else 0
        except (IndexError, ValueError) as err:
            raise ValueError(f"synthetic data spec must be 'synthetic:N' or 'synthetic:N:SEED', got {spec!r}") from err
        from .synthetic.driving import generate_waypoint_dataset

        return generate_waypoint_dataset(
            count, seed=seed, width=image_width, height=image_height, camera_names=tuple(camera_names), progress=progress
        )
    path = Path(spec)
    if path.is_dir() and (path / "dataset_info.json").is_file():
        ds = datasets.load_from_disk(str(path))
    elif path.exists():
        raise ValueError(
            f"{spec!r} is not a waypoint dataset: expected a directory written by Dataset.save_to_disk "
            "or 'synthetic:N[:SEED]'"
        )
    else:
        raise FileNotFoundError(f"waypoint data {spec!r} does not exist (nor is it 'synthetic:N[:SEED]')")
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if "image" not in ds.column_names and "images" not in ds.column_names:
        missing.append("image")
    if missing:
        raise ValueError(f"waypoint dataset {spec!r} lacks column(s) {missing}; it has {ds.column_names}")
    return ds


__all__ = ["load_waypoint_dataset"]
