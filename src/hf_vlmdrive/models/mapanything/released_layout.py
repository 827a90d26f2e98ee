"""Read MapAnything's released weights (`facebook/map-anything`, `facebook/map-anything-apache`: `config.json` +
`model.safetensors` written by `PyTorchModelHubMixin`) into [`MapAnythingModel`], accounting for every key.

Key map (the modules of `modeling_mapanything.py` are named after the original's):

| released key                          | ours                        |
| ------------------------------------- | --------------------------- |
| `encoder.model.<rest>`                | `encoder.<rest>`            |
| `fusion_norm_layer.*`, `scale_token`  | unchanged                   |
| `info_sharing.*` (incl. the buffer `view_pos_table`) | unchanged    |

Every other key must start with one of `UNUSED_PREFIXES` (the prediction heads and the geometric-input encoders,
which the feature trunk does not run); anything else, a trunk key the file lacks, or a shape that disagrees is an
error naming it. The released `config.json` names the encoder only by its size (`giant`: width 1536, 24 heads);
the width is read from the weights, and a reduced width needs `encoder_num_heads` (CLI `--encoder-num-heads`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError, UserFileNotFoundError
from .configuration_mapanything import MapAnythingConfig

logger = logging.getLogger(__name__)

# The released modules the feature trunk does not use (mapanything.md section 4; MA model.py `__init__`,
# `_initialize_prediction_heads`, `_initialize_adaptors`). The DPT head is stored under `dense_head.0/1.*`
# (`dense_head = Sequential(dpt_feature_head, dpt_regressor_head)`, one name per shared tensor).
UNUSED_PREFIXES: tuple[str, ...] = (
    "ray_dirs_encoder.",
    "depth_encoder.",
    "depth_scale_encoder.",
    "cam_rot_encoder.",
    "cam_trans_encoder.",
    "cam_trans_scale_encoder.",
    "dense_head.",
    "dpt_feature_head.",
    "dpt_regressor_head.",
    "pose_head.",
    "scale_head.",
    "dense_adaptor.",
    "pose_adaptor.",
    "scale_adaptor.",
)
# Buffers of the released file (not parameters).
RELEASED_BUFFERS = ("info_sharing.view_pos_table",)
# DINOv2 sizes UniCeption builds: size -> (width, heads).
ENCODER_SIZES = {"small": (384, 6), "base": (768, 12), "large": (1024, 16), "giant": (1536, 24)}
# The two V1.1 weight releases and their licences (same architecture, different training data).
LICENSES = {
    "facebook/map-anything": "CC-BY-NC-4.0 (non-commercial)",
    "facebook/map-anything-apache": "Apache-2.0",
    "facebook/map-anything-v1": "CC-BY-NC-4.0 (non-commercial)",
    "facebook/map-anything-apache-v1": "Apache-2.0",
}
WEIGHTS_FILE = "model.safetensors"


def released_to_ours(key: str) -> str | None:
    """Our parameter name of a released trunk key, or None when the key is not part of the trunk."""
    if key.startswith("encoder.model."):
        return "encoder." + key[len("encoder.model."):]
    if key.startswith(("fusion_norm_layer.", "info_sharing.")) or key == "scale_token":
        return key
    return None


def unused_prefix(key: str) -> str | None:
    """The entry of `UNUSED_PREFIXES` that `key` lies under, or None."""
    return next((p for p in UNUSED_PREFIXES if key.startswith(p)), None)


@dataclass
class MapAnythingConversionReport:
    """What loading a released file did: trunk keys and parameters, the unused keys per prefix, the file total."""

    source: str
    trunk_keys: int = 0
    trunk_parameters: int = 0
    file_parameters: int = 0
    unused: dict[str, dict[str, int]] = field(default_factory=dict)
    license: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def resolve_hub_file(name_or_path: str, filename: str, revision: str | None, token: str | bool | None) -> Path:
    """`filename` of the Hub repo `name_or_path`; a UserError when it is neither a folder nor a fetchable repo."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(str(name_or_path), filename, revision=revision, token=token))
    except (HFValidationError, LocalEntryNotFoundError) as err:
        raise UserFileNotFoundError(
            f"{name_or_path}: no such folder, and its {filename} could not be fetched from the Hub ({err}); give a "
            "local folder in the released layout (config.json + model.safetensors) or a converted directory"
        ) from err


def _resolve_files(name_or_path: str, revision: str | None = None, token: str | bool | None = None) -> tuple[Path, Path]:
    """(config.json, model.safetensors) of a local folder or a Hub repo."""
    local = Path(str(name_or_path)).expanduser()
    if local.is_dir():
        config, weights = local / "config.json", local / WEIGHTS_FILE
        missing = [p.name for p in (config, weights) if not p.is_file()]
        if missing:
            raise UserFileNotFoundError(
                f"{name_or_path}: no {' or '.join(missing)}; a MapAnything folder in the released layout holds "
                f"config.json and {WEIGHTS_FILE} (as facebook/map-anything ships them)"
            )
        return config, weights
    return resolve_hub_file(name_or_path, "config.json", revision, token), resolve_hub_file(name_or_path, WEIGHTS_FILE, revision, token)


def read_json(path: Path) -> dict[str, Any]:
    # The released config.json may contain Infinity / -Infinity (Python's json reads them).
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from err


def _block_indices(shapes: dict[str, tuple[int, ...]], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in shapes if (m := pattern.match(k))})


def _mlp(shapes: dict[str, tuple[int, ...]], block: str, where: str) -> tuple[str, int]:
    """(mlp type, hidden width) of one block from its weight shapes."""
    if f"{block}mlp.w12.weight" in shapes:
        return "swiglufused", shapes[f"{block}mlp.w3.weight"][1]
    if f"{block}mlp.fc1.weight" in shapes:
        return "mlp", shapes[f"{block}mlp.fc1.weight"][0]
    raise UserError(f"{where}: {block}mlp has neither w12/w3 (fused SwiGLU) nor fc1/fc2 (MLP) weights")


def config_from_released(
    released: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    *,
    encoder_width: int | None = None,
    encoder_num_heads: int | None = None,
    where: str = "the released config",
    **config_kwargs,
) -> MapAnythingConfig:
    """A [`MapAnythingConfig`] from the released `config.json` (`MapAnything.__init__` kwargs) and the weights'
    shapes. `encoder_width` / `encoder_num_heads` describe a reduced-width encoder (config.json names only its
    size); `config_kwargs` are further config fields (`feature_mode`)."""
    enc = released.get("encoder_config")
    info = released.get("info_sharing_config")
    if not isinstance(enc, dict) or not isinstance(info, dict):
        raise UserError(f"{where}: no encoder_config / info_sharing_config; is this MapAnything's config.json?")
    if enc.get("encoder_str", "dinov2") != "dinov2":
        raise UserError(f"{where}: encoder_config.encoder_str={enc.get('encoder_str')!r}; only the DINOv2 encoder is ported")
    if enc.get("with_registers"):
        raise UserError(f"{where}: encoder_config.with_registers=True (DINOv2 with registers) is not ported")
    if info.get("model_type", "alternating_attention") != "alternating_attention":
        raise UserError(f"{where}: info_sharing_config.model_type={info.get('model_type')!r}; only "
                        "'alternating_attention' (MapAnything V1 / V1.1) is ported")
    if info.get("custom_positional_encoding") is not None:
        raise UserError(f"{where}: info_sharing_config.custom_positional_encoding="
                        f"{info.get('custom_positional_encoding')!r} is not ported")
    args = info.get("module_args", {})
    if args.get("qk_norm"):
        raise UserError(f"{where}: info_sharing_config.module_args.qk_norm=True is not ported")
    if not args.get("distinguish_ref_and_non_ref_views", True) or args.get("use_pe_for_non_reference_views"):
        raise UserError(f"{where}: only the reference-view encoding of V1 / V1.1 is ported "
                        "(distinguish_ref_and_non_ref_views=True, use_pe_for_non_reference_views=False)")

    size = enc.get("size", "giant")
    if size not in ENCODER_SIZES:
        raise UserError(f"{where}: encoder_config.size={size!r}, expected one of {sorted(ENCODER_SIZES)}")
    for key in ("encoder.model.pos_embed", "encoder.model.patch_embed.proj.weight", "encoder.model.cls_token"):
        if key not in shapes:
            raise UserError(f"{where}: the weights lack {key}, which the encoder needs")
    pos = shapes["encoder.model.pos_embed"]
    width = pos[-1]
    if encoder_width is not None and encoder_width != width:
        raise UserError(f"--encoder-width {encoder_width} disagrees with the weights: encoder.model.pos_embed is {pos}")
    size_width, size_heads = ENCODER_SIZES[size]
    heads = encoder_num_heads if encoder_num_heads is not None else size_heads
    if encoder_num_heads is None and width != size_width:
        raise UserError(
            f"{where}: the encoder is {width} wide but encoder_config.size={size!r} means {size_width}; pass "
            f"--encoder-num-heads (and --encoder-width {width}) for a reduced-width encoder"
        )
    patch = shapes["encoder.model.patch_embed.proj.weight"][-1]
    grid = int(round((pos[1] - 1) ** 0.5))
    blocks = _block_indices(shapes, "encoder.model.blocks.")
    depth = enc.get("keep_first_n_layers")
    if depth is not None and len(blocks) != depth:
        raise UserError(f"{where}: encoder_config.keep_first_n_layers={depth} but the weights hold {len(blocks)} "
                        "encoder blocks")
    if not blocks:
        raise UserError(f"{where}: the weights hold no encoder.model.blocks.*")
    enc_mlp, enc_hidden = _mlp(shapes, "encoder.model.blocks.0.", where)
    final_norm = "encoder.model.norm.weight" in shapes
    if final_norm != bool(enc.get("norm_returned_features", True)):
        raise UserError(f"{where}: encoder_config.norm_returned_features={enc.get('norm_returned_features')!r} but "
                        f"the weights {'hold' if final_norm else 'lack'} encoder.model.norm.*")

    aat_blocks = _block_indices(shapes, "info_sharing.self_attention_blocks.")
    if not aat_blocks:
        raise UserError(f"{where}: the weights hold no info_sharing.self_attention_blocks.*")
    aat_width = shapes["info_sharing.norm.weight"][0] if "info_sharing.norm.weight" in shapes else None
    if aat_width is None or ("dim" in args and args["dim"] != aat_width):
        raise UserError(f"{where}: info_sharing_config.module_args.dim={args.get('dim')!r} disagrees with "
                        f"info_sharing.norm.weight {shapes.get('info_sharing.norm.weight')}")
    aat_mlp, aat_hidden = _mlp(shapes, "info_sharing.self_attention_blocks.0.", where)
    mlp_str = released.get("info_sharing_mlp_layer_str", "mlp")  # MapAnything's default when absent
    if mlp_str != aat_mlp:
        raise UserError(f"{where}: info_sharing_mlp_layer_str={mlp_str!r} but the AAT weights are {aat_mlp!r}")
    aat_ls = "info_sharing.self_attention_blocks.0.ls1.gamma" in shapes
    init_values = args.get("init_values")
    if aat_ls != bool(init_values):
        raise UserError(f"{where}: info_sharing init_values={init_values!r} but the weights "
                        f"{'hold' if aat_ls else 'lack'} LayerScale (ls1.gamma)")
    indices = args.get("indices", [7, 11])
    if isinstance(indices, int):  # "the last n layers" (UniCeption's feature_take_indices)
        indices = list(range(len(aat_blocks) - indices, len(aat_blocks)))
    kwargs: dict[str, Any] = dict(
        image_size=grid * patch,
        patch_size=patch,
        num_channels=shapes["encoder.model.patch_embed.proj.weight"][1],
        hidden_size=width,
        num_hidden_layers=len(blocks),
        num_attention_heads=heads,
        intermediate_size=enc_hidden,
        encoder_mlp_type=enc_mlp,
        encoder_layerscale_value=1.0 if "encoder.model.blocks.0.ls1.gamma" in shapes else None,
        encoder_final_norm=final_norm,
        use_encoder_cls_token=bool(released.get("use_register_tokens_from_encoder", False)),
        qkv_bias="encoder.model.blocks.0.attn.qkv.bias" in shapes,
        info_sharing_hidden_size=aat_width,
        info_sharing_num_layers=len(aat_blocks),
        info_sharing_num_heads=int(args.get("num_heads", 12)),
        info_sharing_intermediate_size=aat_hidden,
        info_sharing_mlp_type=aat_mlp,
        info_sharing_layerscale_value=float(init_values) if aat_ls else None,
        intermediate_layer_indices=list(indices),
    )
    kwargs.update(config_kwargs)
    return MapAnythingConfig(**kwargs)


def read_released(
    name_or_path: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    encoder_width: int | None = None,
    encoder_num_heads: int | None = None,
    **config_kwargs,
) -> tuple[MapAnythingConfig, dict[str, torch.Tensor], MapAnythingConversionReport]:
    """Config, our state dict (trunk tensors only, renamed) and the key accounting of a released MapAnything.

    Raises a UserError naming every key that is neither a trunk key nor under `UNUSED_PREFIXES`."""
    from safetensors import safe_open

    config_path, weights_path = _resolve_files(name_or_path, revision, token)
    released = read_json(config_path)
    with safe_open(str(weights_path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        config = config_from_released(released, shapes, encoder_width=encoder_width,
                                      encoder_num_heads=encoder_num_heads, where=str(config_path), **config_kwargs)
        report = MapAnythingConversionReport(source=str(name_or_path), license=LICENSES.get(str(name_or_path)))
        unknown = []
        state: dict[str, torch.Tensor] = {}
        for key, shape in shapes.items():
            n = 0 if key in RELEASED_BUFFERS else _numel(shape)
            report.file_parameters += n
            ours = released_to_ours(key)
            if ours is not None:
                state[ours] = f.get_tensor(key)
                report.trunk_keys += 1
                report.trunk_parameters += n
                continue
            prefix = unused_prefix(key)
            if prefix is None:
                unknown.append(key)
                continue
            entry = report.unused.setdefault(prefix, {"keys": 0, "parameters": 0})
            entry["keys"] += 1
            entry["parameters"] += n
    if unknown:
        raise UserError(
            f"{weights_path}: {len(unknown)} key(s) are neither part of the MapAnything feature trunk nor under a known "
            f"unused prefix ({', '.join(p.rstrip('.') for p in UNUSED_PREFIXES)}): {unknown[:10]}"
        )
    return config, state, report


__all__ = [
    "ENCODER_SIZES",
    "LICENSES",
    "MapAnythingConversionReport",
    "RELEASED_BUFFERS",
    "UNUSED_PREFIXES",
    "config_from_released",
    "read_json",
    "read_released",
    "released_to_ours",
    "resolve_hub_file",
    "unused_prefix",
]
