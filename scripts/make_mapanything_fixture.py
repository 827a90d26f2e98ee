"""Build the MapAnything parity fixture from the ORIGINAL code (map-anything + UniCeption + DINOv2 hub code).

This script does not import hf_vlmdrive. It builds Meta's MapAnything V1.1 architecture (images-only task,
``use_register_tokens_from_encoder: True``, ``info_sharing_mlp_layer_str: "swiglufused"``, DPT + pose + scale head)
at a tiny size with random weights, saves it in the released Hub layout and records the original's features in two
feature modes, so that a port can be checked against it without the original installed.

Output (default ``tests/fixtures/mapanything_tiny/``): ``released/config.json`` + ``released/model.safetensors.gz``,
``reference_outputs.safetensors``, ``versions.json``, ``README.md``. The README lists every tensor.

Reference venv (measured 2026-12-07, Python 3.11.7, offline except PyPI)::

    # sources (pinned commits; `fetch` gives bare mirrors, `git archive` makes a tree)
    mkdir -p /tmp/ma_src /tmp/dinov2_up /tmp/sv_wrapper
    git -C <mirror of facebookresearch/map-anything> archive f7ebafb4d8349776705aaa686cf928988d1bd7f4 \
        | tar -x -C /tmp/ma_src
    git -C <mirror of facebookresearch/dinov2> archive b8931f7bf91576930313be2c6d6af376033b35f0 dinov2 hubconf.py \
        | tar -x -C /tmp/dinov2_up
    git -C <mirror of lululuyuanyuanyuanGe/3dvla-starvla_framework> show \
        e658b8359f77e01f6a6075cb5a72d8a2b6ae078a:starVLA/model/modules/geometric/mapanything_encoder.py \
        > /tmp/sv_wrapper/mapanything_encoder.py
    python3.11 -m venv /tmp/ma_venv
    /tmp/ma_venv/bin/pip install torch==2.14.1 numpy jaxtyping einops timm huggingface_hub safetensors \
        hydra-core opencv-python-headless==4.10.0.84          # torchvision comes with the cap in /etc/xdg/pip
    /tmp/ma_venv/bin/pip install --no-deps uniception==0.1.7
    /tmp/ma_venv/bin/pip install --no-deps /tmp/ma_src     # mapanything (not on PyPI)

Run (about 20 s on one CPU thread; deterministic tensors, the safetensors header order varies)::

    /tmp/ma_venv/bin/python scripts/make_mapanything_fixture.py            # writes the fixture
    /tmp/ma_venv/bin/python scripts/make_mapanything_fixture.py --count-full  # V1.1 parameter counts, meta device

Shims (the only departures from running the released code; all are recorded in versions.json):

1. ``torch.hub.load("facebookresearch/dinov2", name, ...)`` (UniCeption ``encoders/dinov2.py:90-102``) is redirected
   to ``torch.hub.load(<dinov2 checkout>, name, source="local", pretrained=False)``: the same ``hubconf.py`` that
   torch.hub would fetch from GitHub, without the network and without the ImageNet weight download (which the
   checkpoint overwrites anyway, map-anything issue #149).
2. For the tiny model, ``dinov2.models.vision_transformer.DinoVisionTransformer.__init__`` gets ``embed_dim``,
   ``num_heads`` and ``depth`` replaced (the hub recipe ``vit_giant2`` otherwise unchanged: SwiGLU-fused FFN,
   LayerScale 1.0, qkv bias, img_size 518, patch 14, interpolate_offset 0.1, antialias False), and UniCeption's
   ``DINOv2Encoder.enc_embed_dim`` (a table keyed by the size string, ``dinov2.py:68``) is set from the built ViT.
   UniCeption keeps the first ``keep_first_n_layers`` blocks as in the release. With ``--count-full`` the width
   override is off and the shim only reads 1536 back.
3. ``save_pretrained`` gets ``config=`` (the pre-construction config; ``__init__`` puts a class into the mixin's
   record, which is not JSON serialisable).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

MA_COMMIT = "f7ebafb4d8349776705aaa686cf928988d1bd7f4"
DINOV2_COMMIT = "b8931f7bf91576930313be2c6d6af376033b35f0"
STARVLA_COMMIT = "e658b8359f77e01f6a6075cb5a72d8a2b6ae078a"
STARVLA_WRAPPER_PATH = "starVLA/model/modules/geometric/mapanything_encoder.py"

# Tiny size of the same architecture.
TINY = {
    "encoder_width": 32,
    "encoder_num_heads": 4,
    "encoder_hub_depth": 5,  # depth the hub recipe builds; UniCeption keeps the first keep_first_n_layers
    "keep_first_n_layers": 3,
    "info_sharing_depth": 4,
    "info_sharing_indices": [1, 2],
}
SEED_BUILD = 0
SEED_PERTURB = 1
SEED_IMAGES = 2
SEED_FORWARD = 3
BATCH = 2
MAX_VIEWS = 3
IMAGE_SIZES = [(42, 42), (28, 42), (42, 28)]  # (H, W): 3x3, 2x3 and 3x2 patch grids
MODES = ("mapanything", "qwenmapanythingpi")

_HUB_OVERRIDE: dict = {}


def tiny_overrides() -> list[str]:
    """Hydra overrides of configs/model/mapanything.yaml that give the tiny model (sizes only)."""
    t = TINY
    small3 = "[8,8,8]"
    return [
        "model=mapanything",
        "machine=default",
        f"model.encoder.keep_first_n_layers={t['keep_first_n_layers']}",
        f"model.info_sharing.module_args.depth={t['info_sharing_depth']}",
        f"model.info_sharing.module_args.dim={t['encoder_width']}",
        f"model.info_sharing.module_args.num_heads={t['encoder_num_heads']}",
        "model.info_sharing.module_args.indices=[" + ",".join(map(str, t["info_sharing_indices"])) + "]",
        "model.pred_head.feature_head.feature_dim=16",
        "+model.pred_head.feature_head.layer_dims=[8,8,16,16]",
        "+model.pred_head.regressor_head.hidden_dims=[8,8]",
        "+model.pred_head.scale_head.hidden_dim=8",
        f"+model.task.ray_dirs_encoder_config.intermediate_dims={small3}",
        f"+model.task.depth_encoder_config.intermediate_dims={small3}",
        f"+model.task.cam_rot_encoder_config.intermediate_dims={small3}",
        f"+model.task.cam_trans_encoder_config.intermediate_dims={small3}",
        f"+model.task.scale_encoder_config.intermediate_dims={small3}",
    ]


def install_shims(dinov2_dir: str) -> None:
    import torch

    sys.path.insert(0, dinov2_dir)
    import dinov2.models.vision_transformer as vits  # the module hubconf.py builds from

    original_vit_init = vits.DinoVisionTransformer.__init__

    def vit_init(self, *args, **kwargs):
        kwargs.update(_HUB_OVERRIDE)
        original_vit_init(self, *args, **kwargs)

    vits.DinoVisionTransformer.__init__ = vit_init

    real_hub_load = torch.hub.load

    def hub_load(repo_or_dir, model, *args, **kwargs):
        if repo_or_dir != "facebookresearch/dinov2":
            return real_hub_load(repo_or_dir, model, *args, **kwargs)
        kwargs.pop("force_reload", None)
        kwargs["pretrained"] = False
        return real_hub_load(dinov2_dir, model, *args, source="local", **kwargs)

    torch.hub.load = hub_load

    from uniception.models.encoders.dinov2 import DINOv2Encoder

    original_enc_init = DINOv2Encoder.__init__

    def enc_init(self, *args, **kwargs):
        original_enc_init(self, *args, **kwargs)
        self.enc_embed_dim = self.model.embed_dim

    DINOv2Encoder.__init__ = enc_init


def compose_model_config(ma_src: str, overrides: list[str]) -> dict:
    import mapanything.models as mm
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(version_base=None, config_dir=os.path.join(ma_src, "configs")):
        cfg = compose(config_name="train", overrides=overrides)
    if not OmegaConf.has_resolver("special_float"):
        OmegaConf.register_new_resolver("special_float", mm.resolve_special_float)
    assert cfg.model.model_str == "mapanything"
    return OmegaConf.to_container(cfg.model.model_config, resolve=True)


def released_config(model_config: dict) -> dict:
    """What PyTorchModelHubMixin records at construction: jsonable __init__ defaults + the passed kwargs."""
    from mapanything.models.mapanything.model import MapAnything

    return {**copy.deepcopy(MapAnything._hub_mixin_jsonable_default_values), **copy.deepcopy(model_config)}


def count_full() -> None:
    import torch
    from mapanything.models.mapanything.model import MapAnything

    _HUB_OVERRIDE.clear()
    cfg = compose_model_config(ARGS.map_anything_src, ["model=mapanything", "machine=default"])
    with torch.device("meta"):
        model = MapAnything(**copy.deepcopy(cfg))
    sd = model.state_dict()
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    trunk_prefixes = ("encoder.", "fusion_norm_layer.", "scale_token", "info_sharing.")
    trunk = sum(p.numel() for n, p in params.items() if n.startswith(trunk_prefixes))
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for n, p in params.items():
        g = n.split(".")[0]
        groups.setdefault(g, [0, 0])
        groups[g][0] += 1
        groups[g][1] += p.numel()
    print(json.dumps({
        "encoder_enc_embed_dim": model.encoder.enc_embed_dim,
        "encoder_blocks": len(model.encoder.model.blocks),
        "info_sharing_blocks": len(model.info_sharing.self_attention_blocks),
        "total_parameters": total,
        "trunk_parameters (encoder., fusion_norm_layer., scale_token, info_sharing.)": trunk,
        "buffers_in_state_dict": {n: list(b.shape) for n, b in model.named_buffers() if n in sd},
        "per_prefix_parameters": {g: {"tensors": c, "parameters": n} for g, (c, n) in groups.items()},
        "state_dict_entries (module names, aliases included)": len(sd),
    }, indent=1))


def perturb(model) -> dict:
    """Random weights that make every trunk piece matter (LayerNorms, LayerScales, position embedding, tokens)."""
    import torch

    g = torch.Generator().manual_seed(SEED_PERTURB)
    notes = {}

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=g) * std + mean

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.copy_(normal(mod.weight.shape, 0.25, 1.0))
                mod.bias.copy_(normal(mod.bias.shape, 0.1))
        trunk = ("encoder.", "info_sharing.")
        for name, p in model.named_parameters():
            if not name.startswith(trunk):
                continue
            if name.endswith((".ls1.gamma", ".ls2.gamma")):
                p.copy_(uniform(p.shape, 0.3, 1.2))
            elif name.endswith(".weight") and p.ndim == 2:  # Linear: qkv, proj, w12, w3
                p.copy_(normal(p.shape, p.shape[1] ** -0.5))
            elif name.endswith(".bias") and ("attn." in name or "mlp." in name):
                p.copy_(normal(p.shape, 0.05))
        pe = model.encoder.model.patch_embed.proj
        pe.weight.copy_(normal(pe.weight.shape, (pe.weight[0].numel()) ** -0.5))
        pe.bias.copy_(normal(pe.bias.shape, 0.05))
        model.encoder.model.pos_embed.copy_(normal(model.encoder.model.pos_embed.shape, 0.5))
        model.encoder.model.cls_token.copy_(normal(model.encoder.model.cls_token.shape, 0.5))
        model.scale_token.copy_(normal(model.scale_token.shape, 0.5))
        zeroed = []
        for name, p in model.named_parameters():
            if name.startswith(("pose_head.proj.", "pose_head.res_conv.", "pose_head.more_mlps.")):
                p.zero_()
                zeroed.append(name)
        notes["zeroed"] = zeroed
    notes["recipe"] = (
        "normal draws given as N(mean, std): every LayerNorm: weight N(1, 0.25), bias N(0, 0.1); encoder and "
        "info_sharing: LayerScale gamma U(0.3, 1.2), Linear weight N(0, fan_in**-0.5), attn/mlp bias N(0, 0.05); "
        "patch_embed weight N(0, 588**-0.5), bias N(0, 0.05); pos_embed, cls_token, scale_token N(0, 0.5); pose_head proj/res_conv/more_mlps zero (784 = 4*14^2 wide, "
        "tied to the patch size, kept compressible); everything else as the original initialises it (seed "
        f"{SEED_BUILD})."
    )
    return notes


def load_starvla_wrapper(path: str):
    spec = importlib.util.spec_from_file_location("starvla_mapanything_encoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MapAnythingWrapper


def to_sequence(per_view):
    """[B, C, h, w] per view -> [B, V*h*w, C], view-major, row-major (as the starVLA wrapper, lines 166-178)."""
    import torch

    return torch.cat([f.permute(0, 2, 3, 1).reshape(f.shape[0], -1, f.shape[1]) for f in per_view], dim=1)


def forward_mapanything_mode(model, pixel_values):
    """Mode `mapanything`: the original's full forward (images only), features taken by hooks."""
    import torch

    captured = {}

    def enc_hook(_m, _inp, out):
        captured["encoder"] = out

    def info_hook(_m, inp, out):
        captured["info_in"] = inp[0]
        captured["info_out"] = out

    h1 = model.encoder.register_forward_hook(enc_hook)
    h2 = model.info_sharing.register_forward_hook(info_hook)
    try:
        views = [
            {"img": pixel_values[:, v].contiguous(), "data_norm_type": ["dinov2"]}
            for v in range(pixel_values.shape[1])
        ]
        torch.manual_seed(SEED_FORWARD)  # images-only mode draws (masked) geometric-input masks from torch RNG
        model(views)
    finally:
        h1.remove()
        h2.remove()
    final, intermediates = captured["info_out"]
    V = pixel_values.shape[1]
    enc = captured["encoder"]
    enc_feats = enc.features.chunk(V, dim=0)
    enc_regs = enc.registers.chunk(V, dim=0)
    info_in = captured["info_in"]
    return {
        "last_hidden_state": to_sequence(final.features),
        "cls": torch.stack([t[:, :, 0] for t in final.additional_token_features_per_view], dim=1),
        "scale_token": final.additional_token_features[:, :, 0],
        "intermediate": [to_sequence(i.features) for i in intermediates],
        "encoder_last_hidden_state": to_sequence(enc_feats),
        "encoder_cls": torch.stack([r[:, :, 0] for r in enc_regs], dim=1),
        "fused": to_sequence(info_in.features),
    }


def forward_mapanything_inline(model, pixel_values):
    """The same path spelled out with the original's methods (model.py:1558-1594), as a cross-check of the hooks."""
    import torch
    from uniception.models.info_sharing.base import MultiViewTransformerInput

    views = [
        {"img": pixel_values[:, v].contiguous(), "data_norm_type": ["dinov2"]} for v in range(pixel_values.shape[1])
    ]
    torch.manual_seed(SEED_FORWARD)
    feats, regs = model._encode_n_views(views)
    with torch.autocast("cpu", enabled=False):
        feats = model._encode_and_fuse_optional_geometric_inputs(views, feats)
    scale = model.scale_token.unsqueeze(0).unsqueeze(-1).repeat(pixel_values.shape[0], 1, 1)
    final, _ = model.info_sharing(
        MultiViewTransformerInput(features=feats, additional_input_tokens_per_view=regs, additional_input_tokens=scale)
    )
    return to_sequence(final.features)


def forward_qwenmapanythingpi_inline(model, pixel_values):
    """What QwenMapAnythingPI's wrapper does (mapanything_encoder.py:116-178), spelled out as a cross-check."""
    from uniception.models.info_sharing.base import MultiViewTransformerInput

    views = [
        {"img": pixel_values[:, v].float().contiguous(), "data_norm_type": ["dinov2"]}
        for v in range(pixel_values.shape[1])
    ]
    feats, _registers = model._encode_n_views(views)
    final, intermediates = model.info_sharing(MultiViewTransformerInput(features=list(feats)))
    enc = to_sequence(feats)
    return to_sequence(final.features), [to_sequence(i.features) for i in intermediates], enc


def measure_sensitivity(model, ref) -> dict:
    """How far known porting mistakes move last_hidden_state (mode mapanything, 3 views): what 1e-5 catches."""
    import torch

    vit = model.encoder.model
    lns = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    fusion = model.fusion_norm_layer
    marker = model.info_sharing.view_pos_table.clone()
    cases = [
        ("position-embedding resize to (h, w) instead of scale_factor (h + 0.1) / 37",
         lambda: setattr(vit, "interpolate_offset", 0.0), lambda: setattr(vit, "interpolate_offset", 0.1)),
        ("antialias=True in the interpolation",
         lambda: setattr(vit, "interpolate_antialias", True), lambda: setattr(vit, "interpolate_antialias", False)),
        ("LayerNorm eps 1e-5 instead of 1e-6",
         lambda: [setattr(m, "eps", 1e-5) for m in lns], lambda: [setattr(m, "eps", 1e-6) for m in lns]),
        ("no fusion LayerNorm", lambda: setattr(model, "fusion_norm_layer", torch.nn.Identity()),
         lambda: setattr(model, "fusion_norm_layer", fusion)),
        ("no reference-view marker", lambda: model.info_sharing.view_pos_table.zero_(),
         lambda: model.info_sharing.view_pos_table.copy_(marker)),
        ("2 CPU threads instead of 1", lambda: torch.set_num_threads(2), lambda: torch.set_num_threads(1)),
    ]
    out = {}
    with torch.no_grad():
        for name, do, undo in cases:
            do()
            try:
                for H, W in IMAGE_SIZES[:2]:
                    tag = f"{H}x{W}"
                    got = forward_mapanything_mode(model, ref[f"pixel_values.mapanything.{tag}"])["last_hidden_state"]
                    out[f"{name} @ {tag}"] = float((got - ref[f"last_hidden_state.mapanything.{tag}.v3"]).abs().max())
            finally:
                undo()
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content_sha256(tensors) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        h.update(f"{k}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()


def gzip_deterministic(src: Path, dst: Path) -> None:
    with open(dst, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(src.read_bytes())


def alias_rules(meta: dict) -> str:
    """Summarise the {alias: stored name} header metadata as prefix rules (exact list is in the file header)."""
    import re

    rules = OrderedDict()
    for alias, stored in sorted(meta.items()):
        m = re.match(r"^(dpt_feature_head|dpt_regressor_head)\.(.*)$", alias)
        if m and stored == {"dpt_feature_head": "dense_head.0.", "dpt_regressor_head": "dense_head.1."}[m.group(1)] + m.group(2):
            key = f"`{m.group(1)}.*` -> `{'dense_head.0' if m.group(1) == 'dpt_feature_head' else 'dense_head.1'}.*`"
        else:
            key = f"`{alias}` -> `{stored}`"
        rules[key] = rules.get(key, 0) + 1
    return "\n".join(f"  - {k}" + (f" ({n} tensors)" if n > 1 else "") for k, n in rules.items())


def key_groups(keys):
    """Group state-dict keys by the prefix the converter must know about."""
    order = [
        ("encoder.model.", "trunk"),
        ("fusion_norm_layer.", "trunk"),
        ("scale_token", "trunk"),
        ("info_sharing.", "trunk"),
        ("ray_dirs_encoder.", "geometric-input encoder"),
        ("depth_encoder.", "geometric-input encoder"),
        ("depth_scale_encoder.", "geometric-input encoder"),
        ("cam_rot_encoder.", "geometric-input encoder"),
        ("cam_trans_encoder.", "geometric-input encoder"),
        ("cam_trans_scale_encoder.", "geometric-input encoder"),
        ("dense_head.0.", "head (DPT feature head, stored under its alias)"),
        ("dense_head.1.", "head (DPT regressor, stored under its alias)"),
        ("dpt_feature_head.", "head"),
        ("dpt_regressor_head.", "head"),
        ("pose_head.", "head"),
        ("scale_head.", "head"),
    ]
    out = OrderedDict((p, {"role": r, "keys": []}) for p, r in order)
    other = []
    for k in keys:
        for p, _ in order:
            if k == p or k.startswith(p):
                out[p]["keys"].append(k)
                break
        else:
            other.append(k)
    return out, other


def main() -> None:
    import numpy as np
    import safetensors
    import safetensors.torch as st
    import torch
    import torchvision
    import torchvision.transforms as tvf
    import torchvision.transforms.functional as TF
    from PIL import Image

    torch.set_num_threads(1)
    install_shims(ARGS.dinov2_src)
    if ARGS.count_full:
        count_full()
        return

    from mapanything.models.mapanything.model import MapAnything
    from uniception.models.encoders.image_normalizations import IMAGE_NORMALIZATION_DICT

    out = Path(ARGS.out)
    overrides = tiny_overrides()
    cfg = compose_model_config(ARGS.map_anything_src, overrides)
    config_json = released_config(cfg)

    _HUB_OVERRIDE.update(
        embed_dim=TINY["encoder_width"], num_heads=TINY["encoder_num_heads"], depth=TINY["encoder_hub_depth"]
    )
    torch.manual_seed(SEED_BUILD)
    model = MapAnything(**copy.deepcopy(cfg)).eval()
    assert model.encoder.enc_embed_dim == TINY["encoder_width"]
    assert len(model.encoder.model.blocks) == TINY["keep_first_n_layers"]
    assert isinstance(model.encoder.model.norm, torch.nn.Identity)
    assert len(model.info_sharing.self_attention_blocks) == TINY["info_sharing_depth"]
    assert model.use_register_tokens_from_encoder and model.info_sharing_mlp_layer_str == "swiglufused"
    perturb_notes = perturb(model)

    # ---- released layout, through the original's own writer
    if out.exists():
        shutil.rmtree(out)
    (out / "released").mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="ma_fixture_"))
    released_dir = work / "released"
    model.save_pretrained(released_dir, config=copy.deepcopy(config_json))
    (released_dir / "README.md").unlink(missing_ok=True)  # the mixin's generated model card, not part of the layout
    shutil.copy(released_dir / "config.json", out / "released" / "config.json")
    gzip_deterministic(released_dir / "model.safetensors", out / "released" / "model.safetensors.gz")

    with safetensors.safe_open(released_dir / "model.safetensors", "pt") as f:
        file_keys = list(f.keys())
        file_meta = f.metadata()
        file_tensors = {k: f.get_tensor(k) for k in file_keys}
    file_dtypes = sorted({str(t.dtype) for t in file_tensors.values()})

    # ---- the starVLA wrapper loads the saved folder with the original's from_pretrained
    Wrapper = load_starvla_wrapper(ARGS.starvla_wrapper)

    class _Cfg:
        mapanything_model_name_or_path = str(released_dir)

    torch.manual_seed(SEED_BUILD + 100)
    wrapper = Wrapper(_Cfg()).eval()
    loaded = wrapper.map_anything_model
    ref_sd = model.state_dict()
    got_sd = loaded.state_dict()
    assert set(ref_sd) == set(got_sd)
    for k in ref_sd:
        assert torch.equal(ref_sd[k], got_sd[k]), f"from_pretrained did not restore {k}"
    assert wrapper.config.hidden_size == TINY["encoder_width"]

    # ---- inputs
    g = torch.Generator().manual_seed(SEED_IMAGES)
    norm = IMAGE_NORMALIZATION_DICT["dinov2"]
    normalize = tvf.Normalize(mean=norm.mean, std=norm.std)  # as mapanything/utils/image.py:310-313
    ref: OrderedDict[str, torch.Tensor] = OrderedDict()
    checks = {}
    with torch.no_grad():
        for H, W in IMAGE_SIZES:
            tag = f"{H}x{W}"
            u8 = torch.randint(0, 256, (BATCH, MAX_VIEWS, 3, H, W), generator=g, dtype=torch.uint8)
            raw = u8.float().div(255)  # torchvision to_tensor of a PIL image
            pil = Image.fromarray(u8[1, 2].permute(1, 2, 0).numpy())
            assert torch.equal(TF.to_tensor(pil), raw[1, 2])  # what QwenMapAnythingPI does (framework:66)
            pix_a = torch.stack([normalize(raw[:, v]) for v in range(MAX_VIEWS)], dim=1).contiguous()
            pix_b = raw.clone()
            ref[f"images_uint8.{tag}"] = u8
            ref[f"pixel_values.mapanything.{tag}"] = pix_a
            ref[f"pixel_values.qwenmapanythingpi.{tag}"] = pix_b
            for V in range(1, MAX_VIEWS + 1):
                # mode a: the original forward
                a = forward_mapanything_mode(model, pix_a[:, :V])
                a_loaded = forward_mapanything_mode(loaded, pix_a[:, :V])
                a_inline = forward_mapanything_inline(model, pix_a[:, :V])
                assert torch.equal(a["last_hidden_state"], a_loaded["last_hidden_state"])
                checks[f"mapanything.{tag}.v{V}.inline_vs_hook_maxabs"] = float(
                    (a["last_hidden_state"] - a_inline).abs().max()
                )
                ref[f"last_hidden_state.mapanything.{tag}.v{V}"] = a["last_hidden_state"]
                ref[f"cls.mapanything.{tag}.v{V}"] = a["cls"]
                ref[f"scale_token.mapanything.{tag}.v{V}"] = a["scale_token"]
                # mode b: the starVLA wrapper itself
                b = wrapper(pixel_values=pix_b[:, :V], intrinsics=None).last_hidden_state
                b_inline, b_inter, b_enc = forward_qwenmapanythingpi_inline(model, pix_b[:, :V])
                checks[f"qwenmapanythingpi.{tag}.v{V}.inline_vs_wrapper_maxabs"] = float((b - b_inline).abs().max())
                checks[f"{tag}.v{V}.modes_differ_maxabs"] = float((a["last_hidden_state"] - b).abs().max())
                ref[f"last_hidden_state.qwenmapanythingpi.{tag}.v{V}"] = b
                if V == MAX_VIEWS:
                    for i, t in zip(TINY["info_sharing_indices"], a["intermediate"]):
                        ref[f"intermediate_block{i}.mapanything.{tag}.v{V}"] = t
                    for i, t in zip(TINY["info_sharing_indices"], b_inter):
                        ref[f"intermediate_block{i}.qwenmapanythingpi.{tag}.v{V}"] = t
                    ref[f"encoder_last_hidden_state.mapanything.{tag}"] = a["encoder_last_hidden_state"]
                    ref[f"encoder_cls.mapanything.{tag}"] = a["encoder_cls"]
                    ref[f"fused.mapanything.{tag}"] = a["fused"]
                    ref[f"encoder_last_hidden_state.qwenmapanythingpi.{tag}"] = b_enc
        # the 1-view / 2-view / 3-view runs see the same encoder output per view
        for H, W in IMAGE_SIZES:
            tag = f"{H}x{W}"
            n = (H // 14) * (W // 14)
            assert ref[f"last_hidden_state.mapanything.{tag}.v3"].shape == (BATCH, 3 * n, TINY["encoder_width"])

    sensitivity = measure_sensitivity(model, ref)

    for k, v in checks.items():
        assert v <= 1e-6 or "modes_differ" in k, (k, v)
        if "modes_differ" in k:
            assert v > 1e-2, (k, v)
    meta = {
        "layout": "see README.md",
        "batch": str(BATCH),
        "image_sizes_hw": json.dumps(IMAGE_SIZES),
        "views": "v1, v2, v3 use the first 1, 2, 3 views of the stored [B, 3, 3, H, W] inputs",
    }
    st.save_file({k: v.contiguous() for k, v in ref.items()}, out / "reference_outputs.safetensors", metadata=meta)
    ref_sha = content_sha256(ref)

    # ---- versions.json
    def v(pkg):
        from importlib.metadata import version

        try:
            return version(pkg)
        except Exception:
            return None

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "uniception": v("uniception"),
        "huggingface_hub": v("huggingface_hub"),
        "safetensors": v("safetensors"),
        "hydra-core": v("hydra-core"),
        "omegaconf": v("omegaconf"),
        "timm": v("timm"),
        "einops": v("einops"),
        "jaxtyping": v("jaxtyping"),
        "xformers": v("xformers"),
        "torch_num_threads": torch.get_num_threads(),
        "map-anything": {"repo": "facebookresearch/map-anything", "commit": MA_COMMIT,
                          "installed": "pip install --no-deps <source tree at that commit>"},
        "dinov2": {"repo": "facebookresearch/dinov2", "commit": DINOV2_COMMIT,
                   "how": "torch.hub.load(<checkout>, name, source='local', pretrained=False) in place of "
                          "torch.hub.load('facebookresearch/dinov2', name, ...)"},
        "starvla_wrapper": {"repo": "lululuyuanyuanyuanGe/3dvla-starvla_framework", "commit": STARVLA_COMMIT,
                            "path": STARVLA_WRAPPER_PATH, "sha256": sha256(Path(ARGS.starvla_wrapper))},
        "seeds": {"build": SEED_BUILD, "perturb": SEED_PERTURB, "images": SEED_IMAGES,
                  "forward (torch.manual_seed before each images-only forward)": SEED_FORWARD,
                  "from_pretrained rebuild": SEED_BUILD + 100},
        "tiny": TINY,
        "hydra_overrides (config_name=train, configs/ of map-anything)": overrides,
        "weights": perturb_notes["recipe"],
        "zeroed_tensors": perturb_notes["zeroed"],
        "shims": [
            "torch.hub.load('facebookresearch/dinov2', name, **kw) -> torch.hub.load(<dinov2 checkout>, name, "
            "source='local', pretrained=False, **kw without force_reload)",
            f"dinov2.models.vision_transformer.DinoVisionTransformer.__init__: embed_dim={TINY['encoder_width']}, "
            f"num_heads={TINY['encoder_num_heads']}, depth={TINY['encoder_hub_depth']} replace vit_giant2's "
            "1536 / 24 / 40 (recipe otherwise unchanged)",
            "uniception DINOv2Encoder.enc_embed_dim := built ViT embed_dim (its table says giant = 1536)",
            "MapAnything.save_pretrained(dir, config=<pre-construction config>) (the mixin's own record holds a class)",
            "model.safetensors is stored gzip-compressed (mtime 0); gunzip gives the file save_pretrained wrote",
        ],
        "released_model_safetensors": {
            "content_sha256 (sorted keys; name, dtype, shape, bytes; the file's header order varies run to run)":
                content_sha256(file_tensors),
            "bytes": (released_dir / "model.safetensors").stat().st_size,
            "tensors": len(file_keys),
            "dtypes": file_dtypes,
            "header_metadata": dict(sorted((file_meta or {}).items())),
        },
        "released_config_json_sha256": sha256(out / "released" / "config.json"),
        "reference_outputs_content_sha256": ref_sha,
        "self_checks_max_abs": checks,
        "sensitivity_max_abs (mode mapanything, v3)": sensitivity,
    }
    (out / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")

    # ---- README.md
    groups, other = key_groups(file_keys)
    assert not other, other
    n_params_file = sum(t.numel() for t in file_tensors.values())
    rows = []
    for p, info in groups.items():
        if not info["keys"]:
            continue
        n = sum(file_tensors[k].numel() for k in info["keys"])
        rows.append(f"| `{p}` | {info['role']} | {len(info['keys'])} | {n:,} |")
    trunk_keys = [k for p, info in groups.items() if info["role"] == "trunk" for k in info["keys"]]
    trunk_params = sum(file_tensors[k].numel() for k in trunk_keys if k != "info_sharing.view_pos_table")
    block0 = sorted(k[len("encoder.model.blocks.0."):] for k in file_keys if k.startswith("encoder.model.blocks.0."))
    shapes = {k: list(file_tensors[k].shape) for k in file_keys if not k.startswith(("encoder.model.blocks.",
              "info_sharing.self_attention_blocks.")) and (k in trunk_keys)}
    block_shapes = {s: list(file_tensors["encoder.model.blocks.0." + s].shape) for s in block0}
    hidden = file_tensors["encoder.model.blocks.0.mlp.w3.weight"].shape[1]
    readme = README_TEMPLATE.format(
        W=TINY["encoder_width"], H=TINY["encoder_num_heads"], D=TINY["keep_first_n_layers"],
        HD=TINY["encoder_hub_depth"], AD=TINY["info_sharing_depth"], IDX=TINY["info_sharing_indices"],
        hidden=hidden, n_keys=len(file_keys), n_params=n_params_file, trunk_params=trunk_params,
        rows="\n".join(rows), block_suffixes=", ".join(f"`{s}` {block_shapes[s]}" for s in block0),
        trunk_shapes="\n".join(f"- `{k}` {s}" for k, s in shapes.items()),
        n_alias=len(file_meta or {}), alias_rules=alias_rules(file_meta or {}), overrides="\n".join(f"    {o}" for o in overrides),
        sizes=", ".join(f"{h}x{w}" for h, w in IMAGE_SIZES), dtypes=", ".join(file_dtypes),
        ref_keys="\n".join(f"- `{k}` {list(t.shape)} {str(t.dtype).replace('torch.', '')}" for k, t in ref.items()),
        recipe=perturb_notes["recipe"],
        sens="\n".join(f"- {k}: {v:.2e}" for k, v in sensitivity.items()),
    )
    (out / "README.md").write_text(readme)
    shutil.rmtree(work)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({"written": str(out), "bytes": total, "checks": checks}, indent=1))


README_TEMPLATE = """\
# MapAnything V1.1, tiny, built from the original code (parity fixture)

Written by `scripts/make_mapanything_fixture.py` (run it in the reference venv its docstring describes; it rewrites
this folder). The original is facebookresearch/map-anything @ f7ebafb (architecture files unchanged since the V1.1
release f065d13) with uniception 0.1.7 and the DINOv2 hub code of facebookresearch/dinov2 @ b8931f7; versions,
seeds and shims are in `versions.json`.

## Files
- `released/config.json`: the config.json `MapAnything.save_pretrained` writes for the V1.1 model config (the
  hydra-composed `model_config` of `configs/model/mapanything.yaml` plus the mixin's jsonable `__init__` defaults:
  what the mixin records and uploads), with tiny sizes. It contains `Infinity` / `-Infinity` (Python's json reads
  them). The Hub's own file could not be read here (no Hub access); map-anything issue #149 / PR #162 say the Hub
  configs were later edited to add `encoder_config.torch_hub_pretrained: false`, so a converter should accept that
  key too.
- `released/model.safetensors.gz`: gzip of the `model.safetensors` that `save_pretrained` wrote (all {dtypes}, {n_keys}
  tensors, {n_params:,} values). **gunzip it next to config.json to get the released layout**
  (`gzip.decompress(path.read_bytes())`); it is stored compressed because the pose head is 784 (= 4 * 14^2) wide
  whatever the width, so its (zero) tensors would make the folder ~20 MB. The safetensors header metadata maps
  each dropped alias to the stored name ({n_alias} entries):
{alias_rules}
- `reference_outputs.safetensors`: inputs and the original's outputs (below).
- `versions.json`: versions, commits, seeds, shims, content hashes of the weights and outputs, the script's self-checks.

## Using it (no MapAnything needed)
```python
import gzip, shutil, torch
from safetensors.torch import load_file
fx = Path("tests/fixtures/mapanything_tiny")
src = tmp_path / "released"; src.mkdir()
shutil.copy(fx / "released" / "config.json", src)
(src / "model.safetensors").write_bytes(gzip.decompress((fx / "released" / "model.safetensors.gz").read_bytes()))
# hf-vlmdrive convert mapanything <src> --output <dir> --encoder-width {W} --encoder-num-heads {H} [--feature-mode ...]
ref = load_file(fx / "reference_outputs.safetensors")
x = ref["pixel_values.mapanything.28x42"][:, :2]          # [B, V, 3, H, W], V = 2
want = ref["last_hidden_state.mapanything.28x42.v2"]      # [B, V*(28/14)*(42/14), C]
```
Run the port in fp32 with TF32 off and compare at 1e-5 (max abs).

## The tiny configuration
Same architecture as V1.1; only sizes differ. The released config.json names the encoder only by its size
(`"size": "giant"`), so it cannot say the width: convert with

    --encoder-width {W} --encoder-num-heads {H}

(depth comes from `encoder_config.keep_first_n_layers` = {D}; the hub recipe built {HD} blocks and UniCeption kept
the first {D}, as it keeps 24 of ViT-g's 40). Encoder: DINOv2 `vit_giant2` recipe (patch 14, img_size 518 so
`pos_embed` is [1, 1370, {W}], SwiGLU-fused FFN with hidden (int(4*{W}*2/3)+7)//8*8 = {hidden}, LayerScale, qkv bias,
LayerNorm eps 1e-6, interpolate_offset 0.1, antialias False), final norm replaced by Identity, no mask_token.
Info sharing: UniCeption `MultiViewAlternatingAttentionTransformerIFR`, depth {AD} (even blocks global, odd blocks per
view), dim {W}, {H} heads, mlp_ratio 4 with `SwiGLUFFNFused` (hidden {hidden}), LayerScale, intermediates after blocks
{IDX} (2 indices as V1.1's [7, 11], so DPT hook 0 is the fused encoder features), reference-view marker on view 0,
per-view CLS registers, scale token, final LayerNorm. Heads and geometric-input encoders are in the file at reduced
sizes (their nested config dicts gain `layer_dims` / `hidden_dims` / `hidden_dim` / `intermediate_dims` keys, which
the released file does not have; a converter should ignore unknown keys there).

Hydra overrides of `configs/train.yaml` that give it:

{overrides}

Weights: {recipe}

## State-dict keys of the released file, by prefix
| prefix | role | tensors | values |
|---|---|---|---|
{rows}

The trunk (what `last_hidden_state` needs) uses only `encoder.model.*`, `fusion_norm_layer.*`, `scale_token` and
`info_sharing.*` ({trunk_params:,} parameters here, plus the buffer `info_sharing.view_pos_table`). Everything else
belongs to the geometric-input encoders (`ray_dirs_encoder`, `depth_encoder`, `depth_scale_encoder`,
`cam_rot_encoder`, `cam_trans_encoder`, `cam_trans_scale_encoder`: in images-only mode they run on zeros and are
multiplied by a 0 mask) or to the heads (`dense_head.0` = `dpt_feature_head`, `dense_head.1` = `dpt_regressor_head`,
`pose_head`, `scale_head`). safetensors keeps one name per shared tensor, so the DPT heads appear ONLY as
`dense_head.0.*` / `dense_head.1.*` (the alias map is in the header metadata) and `dpt_feature_head.*` /
`dpt_regressor_head.*` do not occur. Inside the DPT feature head, `scratch.layerN_rn` and `scratch.layer_rn.N` are
stored once, as `dense_head.0.input_process.N.1.weight` (N = 0..3, 1-based in `layerN_rn`).

Per-block suffixes (encoder blocks and info_sharing blocks have the same names; shapes of encoder block 0):
{block_suffixes}

Trunk tensors outside the blocks:
{trunk_shapes}

Absent: `encoder.model.norm.*`, `encoder.model.mask_token`, `encoder.model.register_tokens`,
`info_sharing.proj_embed.*` (Identity because the encoder width equals the info-sharing dim).

## reference_outputs.safetensors
Batch 2; image sizes (H x W) {sizes}; `v1` / `v2` / `v3` runs use the first 1, 2, 3 views of the stored 3-view inputs.
torch.set_num_threads(1), fp32, CPU.

{ref_keys}

- `images_uint8.*`: the random images, [B, 3 views, 3, H, W]. The raw [0, 1] images are
  `images_uint8.float().div(255)` (what torchvision's `to_tensor` gives for a PIL image), which is bit for bit
  `pixel_values.qwenmapanythingpi.*` (stored once, under that name).
- `pixel_values.mapanything.*`: exactly what the original's encoder receives in mode `mapanything`:
  `torchvision.transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))` of the raw images, view by view
  (as map-anything `mapanything/utils/image.py:310-313`; UniCeption's `IMAGE_NORMALIZATION_DICT["dinov2"]`).
- `pixel_values.qwenmapanythingpi.*`: exactly what the encoder receives in mode `qwenmapanythingpi`: the raw images
  (QwenMapAnythingPI builds [0, 1] tensors with `TF.to_tensor` and never normalises, framework lines 42-70).
- `last_hidden_state.<mode>.<H>x<W>.v<V>`: [B, V*(H/14)*(W/14), C], the feature tensors (next section).
- `cls.mapanything.*` [B, V, C] and `scale_token.mapanything.*` [B, C]: the final (normed) per-view CLS register and
  scale token of the same forward (`final.additional_token_features_per_view`, `final.additional_token_features`).
- For V = 3 only: `intermediate_block<i>.<mode>.*` (info-sharing output after block i, normed by the final norm:
  the DPT hooks), `encoder_last_hidden_state.<mode>.*` (DINOv2 patch tokens after the kept blocks, no norm,
  [B, V*h*w, C]), `encoder_cls.mapanything.*` (the CLS token the encoder returns as a register, [B, V, C]) and
  `fused.mapanything.*` (patch tokens after the fusion LayerNorm, i.e. the info-sharing input and DPT hook 0).

## Which tensor is `last_hidden_state`
Both modes: the info-sharing transformer's final output after its final LayerNorm, per-view patch tokens only
(no CLS, no scale token), each view's [B, C, h, w] flattened row-major and the views concatenated in order:
`torch.cat([f.permute(0, 2, 3, 1).reshape(B, h*w, C) for f in final.features], dim=1)`, which is exactly how the
starVLA wrapper flattens (`mapanything_encoder.py:158-178`).
`final.features` is built in UniCeption `uniception/models/info_sharing/alternating_attention_transformer.py`:
final norm at line 935 (`output_multi_view_features = self.norm(multi_view_features)`), patch tokens split from the
per-view CLS at 938-959 (with per-view tokens) or 967-974 (without), scale token split at 977-980.

**Mode `mapanything`** (the original forward, `MapAnything.forward`, map-anything
`mapanything/models/mapanything/model.py`): `_encode_n_views` (645-678: one encoder pass over all views
concatenated on the batch axis, patch features [B*V, C, h, w] and the CLS as register [B*V, C, 1];
UniCeption `encoders/dinov2.py:188-216`), then `_encode_and_fuse_optional_geometric_inputs` under
`torch.autocast(..., enabled=False)` (1563-1570; geometric inputs all masked to 0 in images-only mode, fusion
LayerNorm on the patch features only at 1278-1287), the scale token expanded to [B, C, 1] (1573-1577), and
`self.info_sharing(MultiViewTransformerInput(features=fused, additional_input_tokens_per_view=CLS registers,
additional_input_tokens=scale token))` (1581-1594). The fixture takes `final.features` from a forward hook on
`model.info_sharing` during the full `model(views)` call (heads included), and cross-checks it against these calls
spelled out (`versions.json`, `self_checks_max_abs`). The CLS registers and the scale token do NOT pass the fusion
LayerNorm; the view-0 marker is added to view 0's CLS too.

**Mode `qwenmapanythingpi`** (starVLA lululuyuanyuanyuanGe/3dvla-starvla_framework @ e658b83,
`starVLA/model/modules/geometric/mapanything_encoder.py`): the fixture runs that wrapper class itself on the saved
folder (`MapAnything.from_pretrained(<released dir>)`, line 61) with `pixel_values` = the raw images ([B, V, 3, H, W] in [0, 1])
and `intrinsics=None`: `self.map_anything_model._encode_n_views(views)` (141-143, registers discarded), then
`self.map_anything_model.info_sharing(MultiViewTransformerInput(features=...))` (154-155): no ImageNet
normalisation, no fusion LayerNorm, no CLS registers, no scale token; the info-sharing transformer, its reference-view
marker and its final LayerNorm run as usual. (The framework wraps the call in `torch.autocast("cuda",
dtype=torch.float32)`, a no-op for fp32 on CPU.)

How far known mistakes move `last_hidden_state` here (max abs, mode `mapanything`, 3 views; compare at 1e-5):
{sens}

Known facts a port must match: position-embedding interpolation is bicubic with
`scale_factor=((h + 0.1) / 37, (w + 0.1) / 37)` (h, w = patch rows, columns), in float32, antialias False, and only
the 1369 patch entries are interpolated (the CLS entry is kept); at a 37x37 grid the table is used as is. LayerNorm
eps is 1e-6 everywhere in the trunk. SwiGLU: `w12` output chunked in two halves, `silu(x1) * x2`, then `w3`.
Attention is `F.scaled_dot_product_attention` with the default scale (head_dim ** -0.5).
"""


def parse_args():
    here = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--map-anything-src", default="/tmp/ma_src", help="map-anything source tree (for configs/)")
    p.add_argument("--dinov2-src", default="/tmp/dinov2_up", help="facebookresearch/dinov2 checkout (hubconf.py)")
    p.add_argument("--starvla-wrapper", default="/tmp/sv_wrapper/mapanything_encoder.py")
    p.add_argument("--out", default=str(here / "tests" / "fixtures" / "mapanything_tiny"))
    p.add_argument("--count-full", action="store_true", help="print V1.1 parameter counts (meta device) and exit")
    return p.parse_args()


if __name__ == "__main__":
    ARGS = parse_args()
    main()
