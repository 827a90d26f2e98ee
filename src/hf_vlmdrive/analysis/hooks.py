"""Context-vector extraction with forward hooks at named modules, over a sample of episode frames.

The default hook is the RoboVLM policy head's *input*: the backbone's last hidden state at the action token, one
(latent * D)-vector per frame (the "context vector"). Any module can be named (`"backbone.text_model.model"`),
with `:input` or `:output` (default output for other modules); a captured (B, L, latent, D) tensor gives one row per
frame, a (N, S, D) sequence tensor of the backbone's language model is read at the action token(s), anything else
is flattened per row. Saved as `<name>.npy` (N, D) float32 + `<name>.json` metadata (episode, frame, progress, task,
model, hook).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.episodes_hdf5 import EpisodeSource, open_episodes
from ..errors import UserError

DEFAULT_HOOK = "policy_head:input"


def _parse(spec: str) -> tuple[str, str]:
    name, _, where = spec.partition(":")
    where = where or ("input" if name == "policy_head" else "output")
    if where not in ("input", "output"):
        raise UserError(f"hook {spec!r}: say ':input' or ':output' after the module name")
    return name, where


class ContextHooks:
    """Context manager capturing the input / output of named modules on every forward (lists of tensors)."""

    def __init__(self, model: torch.nn.Module, specs: Sequence[str]):
        self.model, self.specs = model, list(specs)
        modules = dict(model.named_modules())
        self.captured: dict[str, list[torch.Tensor]] = {s: [] for s in self.specs}
        self._targets = []
        for spec in self.specs:
            name, where = _parse(spec)
            if name not in modules:
                near = [n for n in modules if n.endswith(name.split(".")[-1])][:5]
                raise UserError(f"hook {spec!r}: the model has no module {name!r}" + (f"; similar: {near}" if near else ""))
            self._targets.append((spec, modules[name], where))
        self._handles = []

    def __enter__(self) -> ContextHooks:
        for spec, module, where in self._targets:
            if where == "input":
                self._handles.append(module.register_forward_pre_hook(self._pre(spec)))
            else:
                self._handles.append(module.register_forward_hook(self._post(spec)))
        return self

    def _pre(self, spec):
        def hook(module, args):
            self.captured[spec].append(self._first(args).detach())
        return hook

    def _post(self, spec):
        def hook(module, args, output):
            self.captured[spec].append(self._first(output).detach())
        return hook

    @staticmethod
    def _first(x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x
        if isinstance(x, (tuple, list)) and x:
            return ContextHooks._first(x[0])
        if hasattr(x, "last_hidden_state"):
            return x.last_hidden_state
        raise UserError(f"a hooked module passed a {type(x).__name__}, not a tensor")

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _rows(t: torch.Tensor, act_mask: torch.Tensor | None) -> torch.Tensor:
    if t.ndim == 4:  # (B, L, latent, D): one row per frame
        return t.flatten(2).flatten(0, 1)
    if t.ndim == 3 and act_mask is not None and tuple(t.shape[:2]) == tuple(act_mask.shape):
        return t[act_mask].reshape(t.shape[0], -1)  # the action token(s) of every row
    return t.flatten(1)


@torch.no_grad()
def extract_context_vectors(model, processor, source: str | Path | EpisodeSource, records: list[dict],
                            hooks: Sequence[str] = (DEFAULT_HOOK,), batch_size: int = 16,
                            progress: bool = True) -> dict[str, np.ndarray]:
    """{hook spec: (N, D) float32} for the sampled frames (`records` from `stratified_sample`), one frame per
    forward (window of 1, as RoboVLMs' history "post" encodes every frame on its own)."""
    from tqdm.auto import tqdm

    src = source if isinstance(source, EpisodeSource) else open_episodes(source)
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, list[np.ndarray]] = {h: [] for h in hooks}
    act_masks: list[torch.Tensor] = []
    build = getattr(model, "build_sequence", None)

    if build is not None:  # remember the action-token mask of every forward, for sequence-shaped captures
        def remember(*args, **kwargs):
            result = build(*args, **kwargs)
            act_masks.append(result[2])
            return result

        model.build_sequence = remember
    try:
        with ContextHooks(model, hooks) as cap:
            for start in tqdm(range(0, len(records), batch_size), desc="extract", disable=not progress):
                chunk = records[start:start + batch_size]
                frames = [[src.load_frames(r["episode_index"], [r["frame"]])[0]] for r in chunk]
                batch = processor(images=frames, text=[r["task"] for r in chunk])
                for v in cap.captured.values():
                    v.clear()
                act_masks.clear()
                model(**{k: v.to(device) for k, v in batch.items()})
                mask = act_masks[-1] if act_masks else None
                for spec in hooks:
                    if not cap.captured[spec]:
                        raise UserError(f"hook {spec!r} did not fire during the forward")
                    out[spec].append(_rows(cap.captured[spec][-1], mask).float().cpu().numpy())
    finally:
        if build is not None:
            del model.build_sequence
    return {h: np.concatenate(v).astype(np.float32) for h, v in out.items()}


def save_vectors(vectors: np.ndarray, records: list[dict], path: str | Path, model_name: str, hook: str) -> tuple[Path, Path]:
    """Write `<path>.npy` (N, D) and `<path>.json` (model, hook, shape and one metadata record per row)."""
    path = Path(path)
    if path.suffix == ".npy":
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(vectors) != len(records):
        raise UserError(f"{len(vectors)} vectors but {len(records)} sample records")
    np.save(path.with_suffix(".npy"), vectors)
    meta = {"model": model_name, "hook": hook, "shape": list(vectors.shape),
            "rows": [{k: r[k] for k in ("episode_index", "episode_id", "frame", "progress", "task") if k in r}
                     for r in records]}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return path.with_suffix(".npy"), path.with_suffix(".json")


def load_vectors(path: str | Path) -> tuple[np.ndarray, dict | None]:
    """(N, D) array and its metadata JSON (None when there is no `<name>.json` beside it)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"vector file {path} does not exist")
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 2:
        raise UserError(f"{path}: expected an (N, D) array, got shape {arr.shape}")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
    return arr, meta


__all__ = ["ContextHooks", "DEFAULT_HOOK", "extract_context_vectors", "load_vectors", "save_vectors"]
