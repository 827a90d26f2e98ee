"""Convert an OpenFlamingo 2.0.1 checkpoint into a `save_pretrained` Flamingo directory.

OpenFlamingo assembles its model in `open_flamingo/src/factory.py::create_model_and_transforms`: an open_clip
vision tower (`vision_encoder` = `clip.visual`, `output_tokens=True`), a Hugging Face causal LM whose
decoder-layer list is replaced by `FlamingoLayer(gated_cross_attn_layer, decoder_layer)` modules, a
`PerceiverResampler(dim=vis_dim)` with its defaults (depth 6, 64 latents, 8 heads x 64) and gated blocks
with theirs (8 heads x 64, FF x4). The tokenizer gets `<|endofchunk|>`, `<image>` (and `<PAD>` without a pad
token) and the LM's embeddings are resized to it. Its training script saves (train_utils.py,
`filter_state_dict_to_trainable`) the model's state dict without frozen parameters (embeddings always
kept), without the `old_decoder_blocks` / `gated_cross_attn_layers` aliases and without the vision tower:
so a released `checkpoint.pt` holds `perceiver.*`, `lang_encoder.<layers>.<i>.gated_cross_attn_layer.*`,
the LM embeddings (`embed_tokens`, `wte`, GPT-NeoX's `embed_in` and `embed_out`, which current
transformers calls `lm_head`), a tied `lm_head`, and
buffers (older transformers' `rotary_emb.inv_freq`). The LM's other weights come from `--lang-encoder`, the
tower's from open_clip (`--vision-encoder`, `--vision-pretrained`).

This module rebuilds the same model from the same parts and maps every name:

- open_clip `VisionTransformer` -> transformers `CLIPVisionModel` (`conv1` -> `patch_embedding`,
  `positional_embedding` -> `position_embedding`, `ln_pre` -> `pre_layrnorm`, `attn.in_proj_*` split into
  `q/k/v_proj`, `ln_1/ln_2` -> `layer_norm1/2`, `mlp.c_fc/c_proj` -> `mlp.fc1/fc2`, `ln_post` ->
  `post_layernorm` (unused by Flamingo: OpenFlamingo's open_clip <= 2.22 returned the tokens before it));
- `perceiver.*` -> `perceiver.*` (same module layout);
- `lang_encoder.<layers>.<i>.decoder_layer.*` / `.gated_cross_attn_layer.*` -> `language_model.` + the same;
  the aliases `lang_encoder.old_decoder_blocks.<i>` / `lang_encoder.gated_cross_attn_layers.<i>` likewise;
  any other `lang_encoder.X` -> `language_model.X`.

The LM is loaded from `--lang-encoder` strictly (`load_lang_encoder`): MPT-1B's Hub folder (model_type
"mosaic_gpt") with hf_vlmdrive's native MosaicGPT; an MPT source with QK LayerNorm is refused for transformers'
`MptForCausalLM`, which has no place for the q_ln / k_ln weights. Nothing is dropped silently: every checkpoint
tensor is used, is a listed alias (`old_decoder_blocks`, `gated_cross_attn_layers`: the same tensors again), a
recomputed buffer (`ignored_buffers`, listed by name in the report) or the contrastive `proj` of open_clip;
anything else is an error naming the key. Every LM weight the checkpoint does not carry comes from the
`--lang-encoder` file, which must hold exactly the weights its config builds.

Checkpoints load with `torch.load(..., weights_only=True)` (a training checkpoint's `model_state_dict` and
DDP `module.` prefixes are unwrapped); nothing is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError, UserFileNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["ConversionReport", "convert_open_flamingo", "load_lang_encoder", "load_open_flamingo_state_dict",
           "open_clip_visual_to_clip_vision", "open_clip_vision_config"]

# Buffers that older transformers versions saved and the current classes recompute (never loaded).
_RECOMPUTED_BUFFERS = re.compile(r"(rotary_emb\.inv_freq|attention\.masked_bias|attention\.bias|attn\.bias)$")


@dataclass
class ConversionReport:
    """What the conversion used, ignored and could not find (written to `conversion_report.json`)."""

    loaded_from_checkpoint: int = 0
    missing: list[str] = field(default_factory=list)  # Flamingo weights the checkpoint lacks (left as built)
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys that map onto nothing (an error)
    ignored_buffers: list[str] = field(default_factory=list)  # recomputed buffers (rotary inv_freq, masks)
    # LM weights that come from --lang-encoder (the checkpoint does not carry them): every one was in its file
    loaded_from_lang_encoder: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"loaded_from_checkpoint": self.loaded_from_checkpoint, "missing": self.missing,
                "unexpected": self.unexpected, "ignored_buffers": self.ignored_buffers,
                "loaded_from_lang_encoder": len(self.loaded_from_lang_encoder), "settings": self.settings}


def load_open_flamingo_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat OpenFlamingo state dict from a released `checkpoint.pt` or a training checkpoint
    (`{"model_state_dict": ..., "optimizer_state_dict": ...}`, keys possibly prefixed by DDP's `module.`)."""
    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"--checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - anything torch.load refuses is a bad file for the user
        raise UserError(
            f"--checkpoint {path} cannot be read as a tensor checkpoint with weights_only=True ({err}); "
            "pass OpenFlamingo's checkpoint.pt or a training checkpoint (model_state_dict)"
        ) from err
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"--checkpoint {path} is not a state dict (a mapping of names to tensors)")
    out = {}
    for key, value in obj.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    if not any(k.startswith("perceiver.") for k in out):
        raise UserError(
            f"--checkpoint {path} has no perceiver.* weights ({len(out)} keys, e.g. {sorted(out)[:3]}): "
            "not an OpenFlamingo checkpoint"
        )
    return out


def open_clip_vision_config(visual) -> dict[str, Any]:
    """A `clip_vision_model` config dict equal in architecture to an open_clip `VisionTransformer`."""
    from open_clip.transformer import QuickGELU, VisionTransformer

    if not isinstance(visual, VisionTransformer):
        raise UserError(f"--vision-encoder is a {type(visual).__name__}, not an open_clip ViT; Flamingo needs a ViT")
    if getattr(visual, "attn_pool", None) is not None:
        raise UserError("--vision-encoder has an attention pool (CoCa); OpenFlamingo uses plain CLIP ViTs")
    block = visual.transformer.resblocks[0]
    if not isinstance(block.ls_1, torch.nn.Identity):
        raise UserError("--vision-encoder uses layer scale, which transformers' CLIPVisionModel does not have")
    width = visual.conv1.out_channels
    patch = visual.conv1.kernel_size[0]
    image_size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    act = block.mlp.gelu
    hidden_act = "quick_gelu" if isinstance(act, QuickGELU) else "gelu" if isinstance(act, torch.nn.GELU) else None
    if hidden_act is None:
        raise UserError(f"--vision-encoder uses the activation {type(act).__name__}; supported: QuickGELU, GELU")
    return {
        "model_type": "clip_vision_model",
        "hidden_size": width,
        "intermediate_size": block.mlp.c_fc.out_features,
        "num_hidden_layers": len(visual.transformer.resblocks),
        "num_attention_heads": block.attn.num_heads,
        "image_size": int(image_size),
        "patch_size": int(patch),
        "hidden_act": hidden_act,
        "layer_norm_eps": float(block.ln_1.eps),
        "projection_dim": int(visual.proj.shape[1]) if visual.proj is not None else width,
    }


def open_clip_visual_to_clip_vision(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Map an open_clip ViT state dict (keys `prefix + conv1.weight`, ...) to the names of transformers' CLIP
    vision transformer (`embeddings.*`, `pre_layrnorm.*`, `encoder.layers.*`, `post_layernorm.*`)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix):]
        m = re.match(r"transformer\.resblocks\.(\d+)\.(.+)$", k)
        if m:
            i, rest = m.groups()
            base = f"encoder.layers.{i}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]
                q, kk, v = value.chunk(3, dim=0)
                out[base + f"self_attn.q_proj.{kind}"] = q
                out[base + f"self_attn.k_proj.{kind}"] = kk
                out[base + f"self_attn.v_proj.{kind}"] = v
                continue
            rest = (rest.replace("attn.out_proj.", "self_attn.out_proj.").replace("ln_1.", "layer_norm1.")
                    .replace("ln_2.", "layer_norm2.").replace("mlp.c_fc.", "mlp.fc1.").replace("mlp.c_proj.", "mlp.fc2."))
            out[base + rest] = value
        elif k == "conv1.weight":
            out["embeddings.patch_embedding.weight"] = value
        elif k == "class_embedding":
            out["embeddings.class_embedding"] = value
        elif k == "positional_embedding":
            out["embeddings.position_embedding.weight"] = value
        elif k.startswith("ln_pre."):
            out["pre_layrnorm." + k[len("ln_pre."):]] = value
        elif k.startswith("ln_post."):
            out["post_layernorm." + k[len("ln_post."):]] = value
        elif k == "proj":
            continue  # the contrastive projection: not part of CLIPVisionModel, unused by Flamingo
        else:
            raise UserError(f"open_clip vision weight {key!r} has no CLIPVisionModel counterpart")
    return out


# LM names of the transformers version OpenFlamingo ran (4.33) that current transformers renamed, per family.
_LEGACY_LM_NAMES = {"gpt_neox": (("embed_out.", "lm_head."),)}


def _map_lm_key(key: str, layers_attr: str) -> str:
    """An OpenFlamingo `lang_encoder.*` key (without the prefix) -> our `language_model.*` key."""
    m = re.match(r"old_decoder_blocks\.(\d+)\.(.+)$", key)
    if m:
        return f"language_model.{layers_attr}.{m.group(1)}.decoder_layer.{m.group(2)}"
    m = re.match(r"gated_cross_attn_layers\.(\d+)\.(.+)$", key)
    if m:
        return f"language_model.{layers_attr}.{m.group(1)}.gated_cross_attn_layer.{m.group(2)}"
    return f"language_model.{key}"


def _infer_block_settings(state: dict[str, torch.Tensor], vis_dim: int) -> dict[str, Any]:
    """Perceiver depth / latents / FF width and the gated blocks' FF width, read from the checkpoint."""
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"perceiver\.layers\.(\d+)\.", k)))
    latents = state["perceiver.latents"]
    if latents.shape[1] != vis_dim:
        raise UserError(
            f"the checkpoint's perceiver width is {latents.shape[1]} but the --vision-encoder width is {vis_dim}; "
            "pass the vision encoder the checkpoint was trained with"
        )
    ff_inner = state["perceiver.layers.0.1.1.weight"].shape[0]
    settings: dict[str, Any] = {"perceiver_depth": depth, "perceiver_num_latents": int(latents.shape[0]),
                                "perceiver_ff_mult": ff_inner / vis_dim}
    xattn_ff = [v for k, v in state.items() if re.search(r"gated_cross_attn_layers?\.?(\d+\.)?ff\.1\.weight$", k)]
    if xattn_ff:
        settings["cross_attn_ff_mult"] = xattn_ff[0].shape[0] / xattn_ff[0].shape[1]
    return settings


def _image_processor_for(visual):
    from transformers import CLIPImageProcessor

    cfg = getattr(visual, "preprocess_cfg", None) or {}
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    mean = list(cfg.get("mean", getattr(visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)))
    std = list(cfg.get("std", getattr(visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)))
    # open_clip's eval transform: Resize(size, bicubic) of the short side, CenterCrop(size), Normalize.
    return CLIPImageProcessor(size={"shortest_edge": int(size)}, crop_size={"height": int(size), "width": int(size)},
                              image_mean=mean, image_std=std, resample=3, do_convert_rgb=True)


def _mpt_qk_ln_error(lang_encoder: str, why: str) -> UserError:
    return UserError(
        f"--lang-encoder {lang_encoder} is an MPT with QK LayerNorm ({why}), which transformers' MptForCausalLM "
        "does not implement (it would drop the q_ln / k_ln weights and run without them). Convert MPT-1B through "
        "the MosaicGPT route instead: pass the original Hub folder (config.json with model_type \"mosaic_gpt\" and "
        "its weight file, e.g. mosaicml/mpt-1b-redpajama-200b) as --lang-encoder; hf_vlmdrive loads it natively"
    )


def load_lang_encoder(lang_encoder: str):
    """The causal LM of `--lang-encoder` in float32, every weight of its file accounted for.

    MosaicGPT folders (MPT-1B, model_type "mosaic_gpt") load with hf_vlmdrive's native class (strict: any unused
    or missing weight is an error). Any other LM: a weight of the file the model does not use, or one it lacks, is
    an error naming it. An MPT (`MptForCausalLM`) source with QK LayerNorm (`attn_config.qk_ln`, or q_ln / k_ln
    weights in the file) is refused with a pointer to the MosaicGPT route.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        lm_config = AutoConfig.from_pretrained(lang_encoder)
    except (OSError, ValueError) as err:
        raise UserError(
            f"--lang-encoder {lang_encoder!r} has no config.json transformers reads ({err}); pass a causal LM folder "
            "or Hub id (for MPT-1B: the mosaicml/mpt-1b-redpajama-200b folder, model_type \"mosaic_gpt\")"
        ) from err
    attn_config = getattr(lm_config, "attn_config", None)
    if lm_config.model_type == "mpt" and getattr(attn_config, "qk_ln", False):
        raise _mpt_qk_ln_error(lang_encoder, "attn_config.qk_ln is true")
    try:
        lm, info = AutoModelForCausalLM.from_pretrained(lang_encoder, dtype=torch.float32, output_loading_info=True)
    except ValueError as err:
        if isinstance(err, UserError):
            raise
        raise UserError(
            f"--lang-encoder {lang_encoder!r} is not a causal LM transformers builds natively ({err})"
        ) from err
    unexpected = sorted(str(k) for k in info.get("unexpected_keys") or ())
    if lm_config.model_type == "mpt" and any(re.search(r"\.(q_ln|k_ln)\.", k) for k in unexpected):
        raise _mpt_qk_ln_error(lang_encoder, "its weight file has q_ln / k_ln weights")
    missing = sorted(str(k) for k in info.get("missing_keys") or ())
    mismatched = sorted(str(k) for k in info.get("mismatched_keys") or ())
    if unexpected or missing or mismatched:
        raise UserError(
            f"--lang-encoder {lang_encoder}: its weight file does not match its config (unused: {unexpected[:10]}, "
            f"missing: {missing[:10]}, wrong shape: {mismatched[:10]}); nothing is dropped or invented silently"
        )
    return lm


def convert_open_flamingo(
    checkpoint: str | Path,
    vision_encoder: str,
    vision_pretrained: str | None,
    lang_encoder: str,
    tokenizer: str,
    cross_attn_every_n_layers: int,
    output: str | Path,
    open_clip_config: str | Path | None = None,
) -> ConversionReport:
    """Build the Flamingo model OpenFlamingo builds from these parts, load `checkpoint`, save to `output`.

    Returns the report (missing / unexpected keys, ignored buffers); also written to
    `output/conversion_report.json`.
    """
    import open_clip
    from transformers import AutoTokenizer

    from .configuration_flamingo import FlamingoConfig
    from .modeling_flamingo import FlamingoForConditionalGeneration
    from .processing_flamingo import FlamingoProcessor, add_flamingo_special_tokens

    if not isinstance(cross_attn_every_n_layers, int) or cross_attn_every_n_layers < 1:
        raise UserError(f"--cross-attn-every-n-layers must be a positive integer, got {cross_attn_every_n_layers!r}")
    state = load_open_flamingo_state_dict(checkpoint)

    # -- vision tower (open_clip, as create_model_and_transforms builds it)
    if open_clip_config is not None:
        cfg_path = Path(open_clip_config)
        if not cfg_path.is_file():
            raise UserFileNotFoundError(f"--open-clip-config {cfg_path} does not exist")
        open_clip.add_model_config(cfg_path)
    if vision_encoder not in open_clip.list_models():
        raise UserError(
            f"--vision-encoder {vision_encoder!r} is not an open_clip model name (e.g. ViT-L-14); register a custom "
            "config with --open-clip-config <name>.json"
        )
    try:
        clip = open_clip.create_model(vision_encoder, pretrained=vision_pretrained or None)
    except Exception as err:  # noqa: BLE001 - download / file errors from open_clip
        raise UserError(
            f"open_clip could not build {vision_encoder!r} with pretrained={vision_pretrained!r}: {err}. Offline, pass "
            "a local open_clip weights file as --vision-pretrained"
        ) from err
    visual = clip.visual.eval()
    vision_config = open_clip_vision_config(visual)
    vision_state = open_clip_visual_to_clip_vision(visual.state_dict())
    ckpt_vision = {k[len("vision_encoder."):]: v for k, v in state.items() if k.startswith("vision_encoder.")}
    if ckpt_vision:  # a checkpoint that carries its tower (unfiltered): it wins over open_clip's weights
        vision_state.update(open_clip_visual_to_clip_vision(ckpt_vision))

    # -- tokenizer and LM, as the factory prepares them
    tok = AutoTokenizer.from_pretrained(tokenizer)
    ids = add_flamingo_special_tokens(tok)
    lm = load_lang_encoder(lang_encoder)
    lm.resize_token_embeddings(len(tok))

    settings = _infer_block_settings(state, vision_config["hidden_size"])
    config = FlamingoConfig(
        vision_config=vision_config, text_config=lm.config, cross_attn_every_n_layers=cross_attn_every_n_layers,
        media_token_id=ids["media_token_id"], end_of_chunk_token_id=ids["end_of_chunk_token_id"], **settings,
    )
    layers_attr = config.decoder_layers_attr
    gated_in_ckpt = sorted({int(m.group(1)) for k in state
                            if (m := re.match(rf"lang_encoder\.{re.escape(layers_attr)}\.(\d+)\.gated_cross_attn_layer\.", k))})
    if gated_in_ckpt and gated_in_ckpt != config.cross_attn_layer_indices():
        raise UserError(
            f"--cross-attn-every-n-layers {cross_attn_every_n_layers} puts gated blocks before layers "
            f"{config.cross_attn_layer_indices()} but the checkpoint has them before layers {gated_in_ckpt}"
        )
    model = FlamingoForConditionalGeneration(config, language_model=lm)  # the loaded LM itself, wrapped
    ours = model.state_dict()
    # CLIPVisionModel's own prefix (`vision_model.` in some transformers versions, none in others)
    inner = "vision_model." if any(k.startswith("vision_model.") for k in model.vision_model.state_dict()) else ""
    vision_state = {f"vision_model.{inner}{k}": v for k, v in vision_state.items()}

    report = ConversionReport(settings={
        "vision_encoder": vision_encoder, "vision_pretrained": vision_pretrained, "lang_encoder": lang_encoder,
        "tokenizer": tokenizer, "cross_attn_every_n_layers": cross_attn_every_n_layers, **settings,
        "media_token_id": ids["media_token_id"], "end_of_chunk_token_id": ids["end_of_chunk_token_id"],
        "decoder_layers_attr": layers_attr, "text_model_type": config.text_config.model_type,
    })
    merged: dict[str, torch.Tensor] = {}
    merged.update(vision_state)
    from_ckpt: set[str] = set()
    for key, value in state.items():
        if key.startswith("vision_encoder."):
            continue
        if key.startswith("perceiver."):
            target = key
        elif key.startswith("lang_encoder."):
            target = _map_lm_key(key[len("lang_encoder."):], layers_attr)
        else:
            report.unexpected.append(key)
            continue
        for legacy, current in _LEGACY_LM_NAMES.get(config.text_config.model_type, ()) if target not in ours else ():
            renamed = target.replace(f"language_model.{legacy}", f"language_model.{current}", 1)
            if renamed in ours:
                target = renamed
        if target not in ours:
            (report.ignored_buffers if _RECOMPUTED_BUFFERS.search(key) else report.unexpected).append(key)
            continue
        if tuple(ours[target].shape) != tuple(value.shape):
            raise UserError(
                f"checkpoint tensor {key} has shape {tuple(value.shape)} but the model built from the given parts "
                f"expects {tuple(ours[target].shape)} for {target}; check --lang-encoder / --tokenizer / --vision-encoder"
            )
        merged[target] = value
        from_ckpt.add(target)
    if report.unexpected:
        raise UserError(
            f"--checkpoint {checkpoint}: {len(report.unexpected)} tensor(s) map onto nothing of the Flamingo built from "
            f"--lang-encoder {lang_encoder} / --vision-encoder {vision_encoder}: {sorted(report.unexpected)[:10]}; "
            "nothing is dropped silently: check that these are the parts the checkpoint was trained with"
        )
    report.loaded_from_checkpoint = len(from_ckpt)
    report.loaded_from_lang_encoder = sorted(
        k for k in ours if k.startswith("language_model.") and ".gated_cross_attn_layer." not in k and k not in from_ckpt
    )
    report.ignored_buffers = sorted(set(report.ignored_buffers))
    report.missing = sorted(k for k in ours if (k.startswith("perceiver.") or ".gated_cross_attn_layer." in k)
                            and k not in from_ckpt)
    emb_key = next((k for k, v in model.named_parameters() if v is model.get_input_embeddings().weight), None)
    if emb_key is not None and emb_key not in from_ckpt:
        logger.warning("the checkpoint has no LM input embeddings: the rows of the new tokens (<image>, "
                       "<|endofchunk|>, <PAD>) keep transformers' resize initialisation")
        report.missing.append(emb_key)
    unknown = sorted(set(merged) - set(ours))
    if unknown:
        raise UserError(f"internal mapping produced names the model lacks: {unknown[:5]}")
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name in merged:
                tensor.copy_(merged[name].to(tensor.dtype))
    model.apply_freezing()
    if report.missing:
        logger.warning("%d Flamingo weight(s) not in the checkpoint (left as initialised): %s", len(report.missing),
                       report.missing[:5])

    processor = FlamingoProcessor(image_processor=_image_processor_for(visual), tokenizer=tok)
    model.generation_config.eos_token_id = ids["end_of_chunk_token_id"]
    model.generation_config.pad_token_id = tok.pad_token_id
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    (output / "conversion_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
