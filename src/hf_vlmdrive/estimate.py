"""Memory plan of a training run before a GPU is rented: parameters, trainable parameters, and the bytes of the
weights, gradients and AdamW states per GPU under the ZeRO stage the shipped launch configs run, plus the frozen
feature caches' RAM. Activations are not estimated (they need a GPU to measure).

The accounting (per parameter; N all parameters, T trainable, G GPUs, w the bytes of `dtype`):

| ZeRO stage | how it is launched | weights | gradients | AdamW states |
|---|---|---|---|---|
| 0 | `accelerate launch --config_file examples/configs/accelerate_single.yaml / accelerate_multigpu.yaml` (DDP) | N w | T w | T 2w (exp_avg, exp_avg_sq in the parameters' dtype) |
| 1 | DeepSpeed `zero_optimization.stage: 1` | N w | T w | T s / G |
| 2 | `examples/configs/accelerate_zero2.yaml` + `deepspeed_zero2.json` | N w | T w / G | T s / G |
| 3 | `examples/configs/accelerate_zero3.yaml` + `deepspeed_zero3.json` | N w / G | T w / G | T s / G |

with s = 12 bytes for 16-bit weights (DeepSpeed's fp32 master copy + exp_avg + exp_avg_sq) and 8 for fp32 weights.
`dtype="auto"` is what the recipes run: fp32 weights without DeepSpeed (they load fp32; Trainer's `bf16: true` only
autocasts the compute), bf16 weights under DeepSpeed (`"bf16": {"enabled": "auto"}` follows `bf16: true`).
4-bit QLoRA base weights count 0.5 B + the double-quantised absmax (1/64 B + 4/(64*256) B) per weight of every
`nn.Linear` but the LM head, as bitsandbytes nf4 stores them; their other parameters in `dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UserError

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # bitsandbytes nf4 + double quant (blocks of 64, absmax blocks of 256)
LEFT_OUT = ("activations and their gradients (they grow with the batch, sequence and image size: measure them on a "
            "GPU), the CUDA context and allocator fragmentation, DeepSpeed's communication buckets, the transient "
            "fp32 copy of a gradient partition at the optimizer step, and data-loader memory")


@dataclass
class ModuleRow:
    """One top-level module of the model."""

    name: str
    parameters: int = 0
    trainable: int = 0
    weight_bytes: float = 0.0
    gradient_bytes: float = 0.0
    optimizer_bytes: float = 0.0

    @property
    def total_bytes(self) -> float:
        return self.weight_bytes + self.gradient_bytes + self.optimizer_bytes


@dataclass
class MemoryPlan:
    """Per-GPU bytes of a training run (see the module docstring); `rows` per top-level module."""

    rows: list[ModuleRow]
    zero: int
    num_gpus: int
    dtype: str
    weight_dtype_bytes: int
    quantized_4bit: bool = False
    cache_lines: list[str] = field(default_factory=list)
    launch: str = ""

    @property
    def total(self) -> ModuleRow:
        out = ModuleRow("total")
        for r in self.rows:
            out.parameters += r.parameters
            out.trainable += r.trainable
            out.weight_bytes += r.weight_bytes
            out.gradient_bytes += r.gradient_bytes
            out.optimizer_bytes += r.optimizer_bytes
        return out


def resolve_dtype(dtype: str, zero: int) -> str:
    """`auto` -> what the recipes run: bf16 under DeepSpeed (ZeRO >= 1), fp32 otherwise."""
    if dtype == "auto":
        return "bf16" if zero >= 1 else "fp32"
    if dtype not in DTYPE_BYTES:
        raise UserError(f"--dtype must be one of {['auto', *DTYPE_BYTES]}, got {dtype!r}")
    return dtype


def _top_level(model):
    """(name, module) of the model's top-level parts; a PEFT wrapper is looked through."""
    inner = model
    base = getattr(model, "base_model", None)
    if base is not None and hasattr(base, "model") and base is not model:
        inner = base.model
    children = [(n, m) for n, m in inner.named_children() if any(True for _ in m.parameters())]
    own = list(inner.parameters(recurse=False))
    if own:  # parameters held by the model itself (e.g. RoboVLM's action token)
        from torch import nn

        holder = nn.Module()
        for i, p in enumerate(own):
            holder.register_parameter(f"p{i}", p)
        children.append(("(model's own)", holder))
    return children or [("model", inner)]


def _quantized_weights(module) -> set[int]:
    """ids of the weights bitsandbytes would store in 4 bits: every nn.Linear's weight but the LM head's and LoRA's."""
    from torch import nn

    out = set()
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear) and "lm_head" not in name and "lora_" not in name:
            out.add(id(sub.weight))
    return out


def memory_plan(model, zero: int = 0, num_gpus: int = 1, dtype: str = "auto", quantized_4bit: bool = False) -> MemoryPlan:
    """The per-GPU memory plan of training `model` (built on any device, meta included) as its `requires_grad`
    flags say. Shared (tied) parameters are counted once, in the first module that holds them."""
    if zero not in (0, 1, 2, 3):
        raise UserError(f"--zero must be 0, 1, 2 or 3, got {zero!r}")
    if num_gpus < 1:
        raise UserError(f"--num-gpus must be at least 1, got {num_gpus!r}")
    dtype = resolve_dtype(dtype, zero)
    w = DTYPE_BYTES[dtype]
    g = num_gpus
    if zero == 0:
        opt = 2 * w
    else:
        opt = 8 + (4 if w < 4 else 0)
    shard_w = g if zero >= 3 else 1
    shard_g = g if zero >= 2 else 1
    shard_o = g if zero >= 1 else 1
    quantized = _quantized_weights(model) if quantized_4bit else set()
    seen: set[int] = set()
    rows = []
    for name, module in _top_level(model):
        row = ModuleRow(name)
        for p in module.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            n = p.numel()
            row.parameters += n
            row.weight_bytes += n * (NF4_BYTES if id(p) in quantized else w) / shard_w
            if p.requires_grad:
                row.trainable += n
                row.gradient_bytes += n * w / shard_g
                row.optimizer_bytes += n * opt / shard_o
        rows.append(row)
    return MemoryPlan(rows, zero, g, dtype, w, quantized_4bit)


def _gb(x: float) -> str:
    return f"{x / 1e9:,.2f} GB"


def format_plan(plan: MemoryPlan, title: str = "") -> str:
    """The seed-style table: one row per top-level module, then the total and what is left out."""
    head = f"{'module':<22} {'parameters':>15} {'trainable':>15} {'weights':>12} {'gradients':>12} {'AdamW states':>13} {'total':>12}"
    lines = [title] if title else []
    opt = ("AdamW states in the weights' dtype" if plan.zero == 0 else
           f"fp32 master + AdamW states{'' if plan.weight_dtype_bytes < 4 else ' (no master copy: fp32 weights)'}")
    zero = "no ZeRO (DDP / one process)" if plan.zero == 0 else f"DeepSpeed ZeRO-{plan.zero}"
    lines.append(f"per GPU: {zero}, {plan.num_gpus} GPU(s), {plan.dtype} weights"
                 f"{' (4-bit nf4 base weights)' if plan.quantized_4bit else ''}, {opt}; GB = 1e9 bytes")
    lines.append(head)
    lines.append("-" * len(head))
    for r in [*plan.rows, plan.total]:
        if r.name == "total":
            lines.append("-" * len(head))
        lines.append(f"{r.name:<22} {r.parameters:>15,} {r.trainable:>15,} {_gb(r.weight_bytes):>12} "
                     f"{_gb(r.gradient_bytes):>12} {_gb(r.optimizer_bytes):>13} {_gb(r.total_bytes):>12}")
    lines.extend(plan.cache_lines)
    if plan.launch:
        lines.append(f"launch: {plan.launch}")
    lines.append(f"left out: {LEFT_OUT}.")
    return "\n".join(lines)


LAUNCH_CONFIGS = {  # (ZeRO stage, several GPUs) -> the shipped accelerate config that runs it
    (0, False): "examples/configs/accelerate_single.yaml",
    (0, True): "examples/configs/accelerate_multigpu.yaml",
    (2, False): "examples/configs/accelerate_zero2.yaml",
    (2, True): "examples/configs/accelerate_zero2.yaml",
    (3, False): "examples/configs/accelerate_zero3.yaml",
    (3, True): "examples/configs/accelerate_zero3.yaml",
}


def launch_command(zero: int, num_gpus: int, command: str | None, config: str | None) -> str:
    """The `accelerate launch` line that runs the plan's ZeRO stage on `num_gpus` GPUs with the shipped configs
    (docs/scaling.md), for the recipe `command` (e.g. "train geovla") and its YAML `config`."""
    cmd = command or "<train or sft command>"
    yaml = config or "<its YAML>"
    shipped = LAUNCH_CONFIGS.get((zero, num_gpus > 1))
    if shipped is None:
        return (f"no shipped ZeRO-{zero} config: copy examples/configs/deepspeed_zero2.json with "
                f"zero_optimization.stage {zero} and point a copy of accelerate_zero2.yaml at it")
    procs = f" --num_processes {num_gpus}" if (zero, num_gpus > 1) != (0, False) else ""
    return f"accelerate launch --config_file {shipped}{procs} -m hf_vlmdrive.cli {cmd} --config {yaml}"


# ------------------------------------------------------------------------------------------------ caches
def waypoint_cache_bytes_per_frame(config, storage_bytes: int = 4) -> tuple[int, str]:
    """Bytes of one frame's waypoint feature-cache entry: pooled (D) or, for attention pooling, tokens (L x D) per
    camera, in the storage dtype (the recipe's `feature_cache_dtype: auto` keeps the tower's fp32: 4 bytes)."""
    vision = config.vision_config
    d = vision.hidden_size
    if config.pooling == "attention":
        side = (vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]) // vision.patch_size
        values, what = side * side * d, f"{side * side} tokens x {d}"
    else:
        values, what = d, f"pooled {d}"
    return config.num_cameras * values * storage_bytes, f"{config.num_cameras} camera(s) x {what} x {storage_bytes} B"


def geometry_cache_bytes_per_frame(config, num_views: int) -> tuple[int, str]:
    """Bytes of one frame's geometry-cache entry: V x (S / 14)^2 x 1536 in bf16 (CPU), as `GeometryFeatureCache`."""
    if config.geometry_is_mapanything:
        side = config.geometry_image_size // config.geometry_config.patch_size
        tokens = num_views * side * side
    else:
        tokens = config.geometry_config.num_tokens
    d = config.geometry_config.output_size
    return tokens * d * 2, f"{num_views} view(s) x {tokens // num_views} tokens x {d} x 2 B (bf16)"


def cache_lines(kind: str | None, config, num_views: int, num_frames: int | None) -> list[str]:
    """Text lines for the frozen-feature cache of `kind` ("waypoint" | "geometry" | None)."""
    if kind is None:
        return ["feature cache: none in this recipe (every trained part sees the images)"]
    if kind == "waypoint":
        per, how = waypoint_cache_bytes_per_frame(config)
        where = "disk (memory-mapped; `feature_cache_dtype bfloat16` halves it)"
    else:
        per, how = geometry_cache_bytes_per_frame(config, num_views)
        where = "CPU RAM per process up to `geometry_cache_mb`, the rest spills to disk"
    lines = [f"{kind} feature cache: {per:,} B per frame ({how}), in {where}"]
    if num_frames:
        lines.append(f"  for {num_frames:,} frames: {_gb(per * num_frames)}")
    return lines


__all__ = ["DTYPE_BYTES", "LEFT_OUT", "MemoryPlan", "ModuleRow", "NF4_BYTES", "cache_lines", "format_plan",
           "geometry_cache_bytes_per_frame", "memory_plan", "resolve_dtype", "waypoint_cache_bytes_per_frame"]
