"""Checkpoint inspection without running pickled code: PyTorch Lightning `.ckpt`, plain `torch.save` files with
nested dicts, DeepSpeed checkpoint directories (also Lightning's DeepSpeed layout) and safetensors.

Safety: every pickle is read with `torch.load(weights_only=True)` (PyTorch's restricted unpickler: tensors,
containers, numbers, strings and PyTorch's own allowlist). A file that needs any other global (`argparse.Namespace`,
a class of a training framework, a payload reducing to `builtins.exec`) is refused with [`UnsafeCheckpointError`]
naming the globals (found with `torch.serialization.get_unsafe_globals_in_checkpoint`, which reads the pickle's
opcodes without executing them); nothing in it runs. There is no `weights_only=False` and no extra allowlist.
DeepSpeed optimizer shards (`*_optim_states.pt`) need DeepSpeed's classes: they are listed with their size and the
globals they would need, and skipped. safetensors files are read from their JSON header only (no torch); `epoch`
and `global_step` come from its `__metadata__` when present (integer strings, as Lightning-style exporters write
them; another string is reported as null, with a note in `notes`), and are null when absent.

Layouts (from the tools' sources):
- Lightning `.ckpt` (`Trainer.save_checkpoint`): {epoch, global_step, pytorch-lightning_version, state_dict,
  loops, callbacks, optimizer_states, lr_schedulers, hparams_name, hyper_parameters}.
- DeepSpeed (`DeepSpeedEngine.save_checkpoint(dir, tag)`): `dir/latest` holds the tag; `dir/<tag>/
  mp_rank_XX_model_states.pt` = {module: state dict, buffer_names, optimizer, param_shapes, ..., global_steps,
  global_samples, dp_world_size, mp_world_size, ds_config, ds_version, **client_state}; ZeRO writes the optimizer
  to `dir/<tag>/zero_pp_rank_N_mp_rank_XX_optim_states.pt` (and `bf16_zero_pp_rank_...` under bf16).
- An optimizer's `state_dict()` (Trainer's `optimizer.pt`): {state: {param id: {step, exp_avg, ...}},
  param_groups: [...]}: format `torch_optimizer`, its tensors keyed `state.<id>.<name>`, the param groups'
  hyperparameters. Any other file without model weights reports every nested tensor (`torch_tensors`).
- Lightning + DeepSpeed (`DeepSpeedStrategy.save_checkpoint`): a DeepSpeed directory named like the `.ckpt`, tag
  `checkpoint`, the Lightning keys (minus state_dict / optimizer_states) as client state, module keys prefixed
  `_forward_module.`.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import struct
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..errors import UserError, UserFileNotFoundError

# Prefixes of wrappers removed before grouping keys: DDP / DeepSpeed `module.`, Lightning-DeepSpeed `_forward_module.`.
WRAPPER_PREFIXES = ("module.", "_forward_module.")
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "module", "model", "model_states")
# Counters read from a safetensors file's `__metadata__` (strings, as Lightning-style exporters write them).
SAFETENSORS_COUNTER_KEYS = ("epoch", "global_step")
VERSION_KEYS = ("pytorch-lightning_version", "ds_version", "transformers_version", "torch_version", "version")
_SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                            "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
_SAFETENSORS_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                            "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                            "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U16": "uint16", "U32": "uint32",
                            "U64": "uint64"}


class UnsafeCheckpointError(UserError):
    """The file needs globals outside PyTorch's weights-only allowlist; it was not loaded."""

    def __init__(self, path: Path, globals_needed: list[str]):
        self.path, self.globals_needed = path, globals_needed
        super().__init__(
            f"{path}: refused to load: the pickle needs the non-allowlisted global(s) {', '.join(globals_needed)}; "
            "only weights_only=True loading is done, so nothing in the file was run. Re-save the checkpoint with "
            "plain containers (e.g. vars(args) instead of an argparse.Namespace) or as safetensors."
        )


def unsafe_globals(path: str | Path) -> list[str]:
    """Globals a torch checkpoint needs beyond the weights-only allowlist, read from its opcodes (nothing runs)."""
    import torch

    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # not a zip checkpoint (legacy or raw pickle): scan the opcodes ourselves
        return _scan_pickle_globals(Path(path).read_bytes())


def _scan_pickle_globals(data: bytes) -> list[str]:
    import pickletools

    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a truncated / non-pickle file: report what was seen
        pass
    return sorted(set(found))


def safe_torch_load(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True, map_location="cpu")`; a file needing other globals raises
    [`UnsafeCheckpointError`] naming them (the file's code never runs)."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as err:
        named = re.findall(r"GLOBAL ([\w\.]+)", str(err))
        needed = sorted(set(named) | set(unsafe_globals(path)))
        raise UnsafeCheckpointError(path, needed or [str(err).splitlines()[0][:200]]) from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({str(err).splitlines()[0][:300]})") from None


# ----------------------------------------------------------------------------------------------- helpers
def _is_tensor(x) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj) and all(
        _is_tensor(v) for v in obj.values())


def find_state_dict(obj: Any) -> tuple[str | None, dict]:
    """(where, state dict) inside a loaded checkpoint: under `state_dict`, `model_state_dict`, `module`, `model`,
    nested one level deeper, or the object itself when it maps names to tensors. (None, {}) when there is none."""
    if _is_state_dict(obj):
        return "", obj
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if key in obj:
                where, sd = find_state_dict(obj[key])
                if sd:
                    return key + ("." + where if where else ""), sd
    return None, {}


def strip_wrapper_prefix(key: str) -> str:
    """Remove wrapper prefixes (`module.`, `_forward_module.`), repeatedly."""
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def _jsonable(x: Any, depth: int = 0) -> Any:
    if depth > 8:
        return repr(x)[:200]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x if not (isinstance(x, float) and not math.isfinite(x)) else repr(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in x]
    if _is_tensor(x):
        return x.item() if x.numel() == 1 else {"tensor": list(x.shape), "dtype": str(x.dtype).replace("torch.", "")}
    return repr(x)[:200]


def tensor_summary(entries: dict[str, tuple[list[int], str, int]]) -> dict:
    """Statistics of {key: (shape, dtype name, bytes)}: counts, numel by prefix (depth 1 / 2, wrapper prefixes
    removed), dtypes, bytes, the key list and a memory estimate in fp32 / bf16."""
    by1, by2 = defaultdict(int), defaultdict(int)
    dtypes, numel_by_dtype = Counter(), defaultdict(int)
    total = nbytes = 0
    keys = {}
    for key, (shape, dtype, size) in entries.items():
        n = math.prod(shape) if shape else 1
        total += n
        nbytes += size
        parts = strip_wrapper_prefix(key).split(".")
        by1[parts[0]] += n
        by2[".".join(parts[:2])] += n
        dtypes[dtype] += 1
        numel_by_dtype[dtype] += n
        keys[key] = {"shape": list(shape), "dtype": dtype}
    return {
        "num_tensors": len(entries),
        "num_elements": total,
        "numel_by_prefix_depth1": dict(sorted(by1.items(), key=lambda kv: -kv[1])),
        "numel_by_prefix_depth2": dict(sorted(by2.items(), key=lambda kv: -kv[1])),
        "dtypes": dict(dtypes),
        "numel_by_dtype": dict(numel_by_dtype),
        "bytes": nbytes,
        "keys": keys,
        "memory_estimate": {"fp32_bytes": 4 * total, "bf16_bytes": 2 * total,
                            "fp32_gib": round(4 * total / 2**30, 6), "bf16_gib": round(2 * total / 2**30, 6)},
    }


def _torch_entries(sd: dict) -> dict[str, tuple[list[int], str, int]]:
    return {k: (list(v.shape), str(v.dtype).replace("torch.", ""), v.numel() * v.element_size()) for k, v in sd.items()}


def _metadata(obj: Any) -> dict:
    meta: dict[str, Any] = {"epoch": None, "global_step": None, "versions": {}, "hyper_parameters": None}
    if not isinstance(obj, dict):
        return meta
    meta["epoch"] = _jsonable(obj.get("epoch"))
    step = obj.get("global_step", obj.get("global_steps"))
    meta["global_step"] = _jsonable(step)
    for k in VERSION_KEYS:
        if k in obj and isinstance(obj[k], (str, int, float)):
            meta["versions"][k] = obj[k]
    hp = obj.get("hyper_parameters", obj.get("hparams"))
    if hp is not None:
        meta["hyper_parameters"] = _jsonable(hp)
    meta["top_level_keys"] = {str(k): type(v).__name__ for k, v in obj.items()}
    return meta


# ----------------------------------------------------------------------------------------------- formats
def read_safetensors_header(path: str | Path) -> tuple[dict, dict]:
    """({name: {dtype, shape, data_offsets}}, metadata strings) of a safetensors file, from its header only."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise UserError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise UserError(f"{path}: not a safetensors file (header length {n})")
        try:
            header = json.loads(f.read(n))
        except ValueError as err:
            raise UserError(f"{path}: not a safetensors file (bad JSON header: {err})") from None
    meta = header.pop("__metadata__", None) or {}
    return header, meta


def _inspect_safetensors(files: list[Path]) -> dict:
    entries, meta = {}, {}
    for f in files:
        header, m = read_safetensors_header(f)
        meta.update(m)
        for k, v in header.items():
            shape, dt = list(v["shape"]), v["dtype"]
            entries[k] = (shape, _SAFETENSORS_DTYPE_NAMES.get(dt, dt.lower()),
                          int(v["data_offsets"][1] - v["data_offsets"][0]))
    out = {"format": "safetensors", "files": [str(f) for f in files], "safetensors_metadata": meta,
           "epoch": None, "global_step": None, "versions": {}, "hyper_parameters": None}
    notes = []
    for key in SAFETENSORS_COUNTER_KEYS:
        out[key], note = _metadata_int(meta, key)
        if note:
            notes.append(note)
    if notes:
        out["notes"] = notes
    out["state_dict"] = tensor_summary(entries)
    return out


def _metadata_int(meta: dict, key: str) -> tuple[int | None, str | None]:
    """(`meta[key]` as an int, None), (None, None) when absent, or (None, a note) when it is no integer.

    safetensors metadata holds strings only, so exporters write counters as `"3"`; a value that is not an
    integer (`"3.5"`, `"last"`) is reported as null with a note naming it, not guessed at."""
    if key not in meta:
        return None, None
    value = meta[key]
    try:
        return int(str(value).strip()), None
    except ValueError:
        return None, (f"safetensors metadata {key}={value!r} is not an integer; reported as null "
                      "(write the counter as a decimal integer string, e.g. '3')")


def _deepspeed_tag(root: Path) -> str:
    latest = root / "latest"
    if latest.is_file():
        return latest.read_text(encoding="utf-8").strip()
    tags = sorted(p.name for p in root.iterdir() if p.is_dir() and list(p.glob("mp_rank_*_model_states.pt")))
    if len(tags) != 1:
        raise UserError(f"{root}: a DeepSpeed directory needs a 'latest' file naming the tag; found tag folders {tags}")
    return tags[0]


def _inspect_deepspeed(root: Path) -> dict:
    tag = _deepspeed_tag(root)
    tag_dir = root / tag
    model_files = sorted(tag_dir.glob("mp_rank_*_model_states.pt"))
    if not model_files:
        raise UserFileNotFoundError(f"{tag_dir}: no mp_rank_*_model_states.pt (tag {tag!r} from {root / 'latest'})")
    obj = safe_torch_load(model_files[0])
    where, sd = find_state_dict(obj)
    lightning = isinstance(obj, dict) and "pytorch-lightning_version" in obj
    skipped = []
    for f in sorted(tag_dir.glob("*optim_states.pt")):
        skipped.append({"file": str(f.relative_to(root)), "bytes": f.stat().st_size, "needs_globals": unsafe_globals(f),
                        "reason": "optimizer shard: needs DeepSpeed classes, not unpickled"})
    out = {"format": "lightning_deepspeed" if lightning else "deepspeed", "tag": tag,
           "model_states_files": [str(f.relative_to(root)) for f in model_files], "state_dict_key": where,
           **_metadata(obj), "skipped_files": skipped}
    if isinstance(obj, dict):
        for k in ("dp_world_size", "mp_world_size", "global_samples", "skipped_steps"):
            if k in obj:
                out[k] = _jsonable(obj[k])
        if isinstance(obj.get("ds_config"), dict):
            out["ds_config"] = _jsonable(obj["ds_config"])
    out["state_dict"] = tensor_summary(_torch_entries(sd))
    return out


def nested_tensors(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Every tensor inside nested dicts / lists / tuples, keyed by its dotted path (`state.0.exp_avg`)."""
    out: dict[str, Any] = {}
    if depth > 16:
        return out
    if _is_tensor(obj):
        out[prefix or "<root>"] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(nested_tensors(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(nested_tensors(v, f"{prefix}.{i}" if prefix else str(i), depth + 1))
    return out


def _is_optimizer_state(obj: Any) -> bool:
    return isinstance(obj, dict) and set(obj) == {"state", "param_groups"}


def _inspect_torch_file(path: Path) -> dict:
    obj = safe_torch_load(path)
    where, sd = find_state_dict(obj)
    lightning = isinstance(obj, dict) and "pytorch-lightning_version" in obj
    fmt = "lightning" if lightning else ("torch_state_dict" if where == "" else "torch_nested")
    if not sd:  # no model weights: an optimizer's state_dict (Trainer's optimizer.pt) or other nested tensors
        fmt = "torch_optimizer" if _is_optimizer_state(obj) else "torch_tensors"
        sd = nested_tensors(obj)
    out = {"format": fmt, "state_dict_key": where, **_metadata(obj)}
    if fmt == "torch_optimizer":
        out["num_param_groups"] = len(obj["param_groups"])
        out["num_parameters_with_state"] = len(obj["state"])
        out["param_group_hyperparameters"] = [_jsonable({k: v for k, v in g.items() if k != "params"})
                                              for g in obj["param_groups"]]
    if isinstance(obj, dict):
        others = [k for k in ("optimizer_state_dict", "optimizer_states", "optimizer", "lr_schedulers") if k in obj]
        out["other_states"] = others
    out["state_dict"] = tensor_summary(_torch_entries(sd))
    return out


def detect_format(path: Path) -> str:
    """"safetensors", "deepspeed" (a directory with a DeepSpeed tag), "safetensors_dir" or "torch"."""
    if path.is_dir():
        if (path / "latest").is_file() or list(path.glob("*/mp_rank_*_model_states.pt")):
            return "deepspeed"
        if sorted(path.glob("*.safetensors")):
            return "safetensors_dir"
        raise UserError(f"{path}: a directory that is neither a DeepSpeed checkpoint (latest + <tag>/mp_rank_*"
                        "_model_states.pt) nor a folder of .safetensors files")
    with path.open("rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        return "safetensors"
    return "torch"


def inspect_checkpoint(path: str | Path) -> dict:
    """Everything about a checkpoint as a JSON-able dict (see the module docstring for the formats): `format`,
    `epoch`, `global_step`, `versions`, `hyper_parameters` and `state_dict` statistics (`num_tensors`,
    `num_elements`, `numel_by_prefix_depth1/2`, `dtypes`, `numel_by_dtype`, `bytes`, `keys`, `memory_estimate`)."""
    path = Path(path)
    if not path.exists():
        raise UserFileNotFoundError(f"checkpoint {path} does not exist")
    fmt = detect_format(path)
    if fmt == "deepspeed":
        out = _inspect_deepspeed(path)
    elif fmt == "safetensors":
        out = _inspect_safetensors([path])
    elif fmt == "safetensors_dir":
        out = _inspect_safetensors(sorted(path.glob("*.safetensors")))
    else:
        out = _inspect_torch_file(path)
    out["path"] = str(path)
    return out


def load_state_dict(path: str | Path) -> tuple[dict, dict]:
    """(state dict of torch tensors, metadata) of any format above, loaded safely (safetensors via safetensors)."""
    path = Path(path)
    if not path.exists():
        raise UserFileNotFoundError(f"checkpoint {path} does not exist")
    fmt = detect_format(path)
    if fmt in ("safetensors", "safetensors_dir"):
        from safetensors.torch import load_file

        sd = {}
        for f in [path] if fmt == "safetensors" else sorted(path.glob("*.safetensors")):
            sd.update(load_file(str(f)))
        return sd, {"format": "safetensors", "hyper_parameters": None}
    if fmt == "deepspeed":
        tag = _deepspeed_tag(path)
        obj = safe_torch_load(sorted((path / tag).glob("mp_rank_*_model_states.pt"))[0])
    else:
        obj = safe_torch_load(path)
    _, sd = find_state_dict(obj)
    if not sd:
        raise UserError(f"{path}: no state dict found (looked under {STATE_DICT_KEYS} and the top level)")
    return dict(sd), {"format": fmt, **_metadata(obj)}


__all__ = [
    "UnsafeCheckpointError",
    "detect_format",
    "find_state_dict",
    "inspect_checkpoint",
    "load_state_dict",
    "read_safetensors_header",
    "safe_torch_load",
    "strip_wrapper_prefix",
    "tensor_summary",
    "unsafe_globals",
]
