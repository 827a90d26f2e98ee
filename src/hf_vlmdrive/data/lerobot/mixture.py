"""Several LeRobot datasets as one, sampled by weight; named mixtures such as `"libero_all"`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ...errors import UserError, UserFileNotFoundError
from .dataset import LeRobotDataset

# Named mixtures: each name is a list of (sub-directory, weight). LIBERO suites as published in LeRobot
# format (`lerobot/libero_object` ...); weights proportional to episode counts would be
# 454 / 428 / 432 / 379, equal weights are the reference recipe's default.
MIXTURES: dict[str, list[tuple[str, float]]] = {
    "libero_all": [("libero_object", 1.0), ("libero_goal", 1.0), ("libero_spatial", 1.0), ("libero_10", 1.0)],
}


class LeRobotMixture(Dataset):
    """Several LeRobot datasets concatenated, with a sampling weight per dataset.

    Indexing is over the concatenation; [`WeightedMixtureSampler`] draws datasets by weight (a dataset's
    frames are drawn uniformly inside it). Cameras, depth cameras, state and action widths must agree.
    """

    def __init__(self, datasets: Sequence[LeRobotDataset], weights: Sequence[float] | None = None):
        if not datasets:
            raise UserError("a mixture needs at least one dataset")
        weights = list(weights) if weights is not None else [1.0] * len(datasets)
        if len(weights) != len(datasets) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise UserError(f"mixture weights must be {len(datasets)} non-negative numbers with a positive sum, got {weights}")
        ref = datasets[0]
        for ds in datasets[1:]:
            if (ds.camera_keys != ref.camera_keys or ds.depth_keys != ref.depth_keys
                    or ds.states.shape[1] != ref.states.shape[1] or ds.actions.shape[1] != ref.actions.shape[1]):
                raise UserError(
                    f"dataset {ds.name!r} does not match {ref.name!r} in cameras / depth cameras / state / action widths"
                )
        self.datasets = list(datasets)
        self.weights = [w / sum(weights) for w in weights]
        self.offsets = np.cumsum([0] + [len(d) for d in datasets])
        self.camera_keys = ref.camera_keys

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        d = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.datasets[d][i - int(self.offsets[d])]

    @property
    def states(self) -> np.ndarray:
        """All states of every dataset, (N, S)."""
        return np.concatenate([d.states for d in self.datasets])

    @property
    def actions(self) -> np.ndarray:
        """All actions of every dataset, (N, A)."""
        return np.concatenate([d.actions for d in self.datasets])


class WeightedMixtureSampler(Sampler[int]):
    """Draw `num_samples` indices of a [`LeRobotMixture`]: a dataset by weight, then a frame uniformly."""

    def __init__(self, mixture: LeRobotMixture, num_samples: int | None = None, seed: int = 0):
        self.mixture = mixture
        self.num_samples = num_samples or len(mixture)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream (called by Trainer/accelerate each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        which = torch.multinomial(torch.tensor(self.mixture.weights), self.num_samples, replacement=True, generator=g)
        for d in which.tolist():
            size = len(self.mixture.datasets[d])
            yield int(self.mixture.offsets[d]) + int(torch.randint(size, (1,), generator=g))


def load_mixture(
    spec: str | Sequence[str] | Mapping[str, float], root: str | Path, **dataset_kwargs
) -> LeRobotMixture:
    """Open a mixture: a named one (`"libero_all"`), a list of sub-directories, or {sub-directory: weight}.

    Sub-directories are relative to `root`; a single dataset directory is `[""]` or its own path.
    """
    root = Path(root)
    if isinstance(spec, str):
        if spec in MIXTURES:
            pairs = MIXTURES[spec]
        else:
            pairs = [(s.strip(), 1.0) for s in spec.split(",") if s.strip()]
    elif isinstance(spec, Mapping):
        pairs = [(k, float(v)) for k, v in spec.items()]
    else:
        pairs = [(s, 1.0) for s in spec]
    datasets = []
    for sub, _ in pairs:
        path = root / sub if sub not in ("", ".") else root
        if not path.is_dir():
            raise UserFileNotFoundError(f"mixture member {sub!r}: directory {path} does not exist")
        datasets.append(LeRobotDataset(path, name=sub or root.name, **dataset_kwargs))
    return LeRobotMixture(datasets, [w for _, w in pairs])


__all__ = ["MIXTURES", "LeRobotMixture", "WeightedMixtureSampler", "load_mixture"]
