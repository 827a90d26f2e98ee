"""MapAnything's feature trunk: position-embedding interpolation, token layout and alternating attention, the two
feature modes, the converter's key accounting, the reference scale on the meta device, and parity with the original
code (the fixture `tests/fixtures/mapanything_tiny/`, written by scripts/make_mapanything_fixture.py)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, AutoModel

from hf_vlmdrive.cli import main as cli_main
from hf_vlmdrive.errors import UserError
from hf_vlmdrive.models.mapanything import MapAnythingConfig, MapAnythingImageProcessor, MapAnythingModel
from hf_vlmdrive.models.mapanything.modeling_mapanything import (
    MapAnythingInfoSharing,
    interpolate_pos_encoding,
    model_from_state,
    reference_view_encoding,
)
from hf_vlmdrive.models.mapanything.released_layout import UNUSED_PREFIXES, read_released
from hf_vlmdrive.testing.tiny_models import tiny_mapanything_config

FIXTURE = Path(__file__).parent / "fixtures" / "mapanything_tiny"


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter away from its init (LayerScale, LayerNorms, tokens), so that nothing hides a wrong path."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.ndim == 1 else 0.0) * 0.5)
    return model.eval()


# ------------------------------------------------------------------------------------------- position embedding
def _bicubic_at(values: np.ndarray, src: float) -> float:
    """Cubic convolution (a = -0.75, PyTorch's bicubic) of a 1-D signal at source coordinate `src`."""
    a = -0.75

    def weight(d: float) -> float:
        d = abs(d)
        return (a + 2) * d**3 - (a + 3) * d**2 + 1 if d <= 1 else a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a

    base = math.floor(src)
    taps = range(base - 1, base + 3)
    return sum(weight(src - k) * values[min(max(k, 0), len(values) - 1)] for k in taps)


def test_pos_embed_interpolation_uses_the_offset_scale_factor():
    """Output row i of DINOv2's rule samples the table at (i + 0.5) * M / (h + 0.1) - 0.5 (scale factor
    (h + 0.1) / M), not at (i + 0.5) * M / h - 0.5 (a resize to h): checked on a table that varies along rows
    only (and one along columns only), against cubic convolution written out here."""
    m, dim, h, w = 37, 2, 16, 20
    rng = np.random.default_rng(0)
    profile_r, profile_c = rng.normal(size=m), rng.normal(size=m)
    rows = torch.tensor(profile_r, dtype=torch.float32).reshape(m, 1).expand(m, m)
    cols = torch.tensor(profile_c, dtype=torch.float32).reshape(1, m).expand(m, m)
    table = torch.cat([torch.full((1, 1, dim), 7.0), torch.stack([rows, cols], -1).reshape(1, m * m, dim)], 1)
    out = interpolate_pos_encoding(table, h * 14, w * 14, 14)  # (1, 1 + h*w, 2)
    assert out.shape == (1, 1 + h * w, dim)
    assert torch.equal(out[0, 0], table[0, 0]), "the CLS position is not interpolated"
    grid = out[0, 1:].reshape(h, w, dim)
    no_offset = interpolate_pos_encoding(table, h * 14, w * 14, 14, offset=0.0)[0, 1:].reshape(h, w, dim)
    for i, j in ((0, 0), (8, 10), (15, 19)):
        want_row = _bicubic_at(profile_r, (i + 0.5) * m / (h + 0.1) - 0.5)
        want_col = _bicubic_at(profile_c, (j + 0.5) * m / (w + 0.1) - 0.5)
        assert grid[i, j, 0].item() == pytest.approx(want_row, abs=1e-5)
        assert grid[i, j, 1].item() == pytest.approx(want_col, abs=1e-5)
        resized_row = _bicubic_at(profile_r, (i + 0.5) * m / h - 0.5)
        assert no_offset[i, j, 0].item() == pytest.approx(resized_row, abs=1e-5)
    assert (grid - no_offset).abs().max() > 1e-2, "the offset made no difference"


def test_pos_embed_interpolation_keeps_the_table_at_its_size_and_computes_in_float32():
    table = torch.randn(1, 1 + 37 * 37, 8)
    assert interpolate_pos_encoding(table, 518, 518, 14) is table  # the original returns the table itself
    assert not torch.equal(interpolate_pos_encoding(table, 518, 532, 14)[:, :5], table[:, :5])
    half = table.to(torch.bfloat16)
    out = interpolate_pos_encoding(half, 224, 224, 14, dtype=torch.bfloat16)
    ref = interpolate_pos_encoding(half.float(), 224, 224, 14).to(torch.bfloat16)
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref)
    # transformers' Dinov2Embeddings resizes to (16, 16): not the same at 224 px
    resized = F.interpolate(table[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2), size=(16, 16), mode="bicubic",
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, 256, 8)
    assert (interpolate_pos_encoding(table, 224, 224, 14)[:, 1:] - resized).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------- token layout
def _reference_aat(aat: MapAnythingInfoSharing, feats, regs, scale):
    """Alternating attention written as masked attention over one sequence: [view 0: patches | CLS] ... [scale],
    the view-0 marker on view 0's patches and CLS, even blocks unmasked, odd blocks block-diagonal per view with the
    scale token left untouched."""
    b, v, p, c = feats.shape
    x = torch.cat([feats, regs], 2)  # (B, V, P+1, C)
    per_view = p + 1
    marker = torch.zeros(v, per_view, c)
    marker[0] = reference_view_encoding(c)[0]
    x = (x + marker).reshape(b, v * per_view, c)
    x = torch.cat([x, scale], 1)
    n = x.shape[1]
    view_of = torch.arange(n) // per_view  # the scale token gets index v (its own block)
    frame_mask = view_of[:, None] == view_of[None, :]
    for index, block in enumerate(aat.self_attention_blocks):
        mask = None if index % 2 == 0 else frame_mask

        def attn(t, block=block, mask=mask):
            q, k, val = block.attn.qkv(t).reshape(b, n, 3, block.attn.num_heads, -1).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, val, attn_mask=mask)
            return block.attn.proj(o.transpose(1, 2).reshape(b, n, c))

        y = x + block.ls1(attn(block.norm1(x)))
        y = y + block.ls2(block.mlp(block.norm2(y)))
        if index % 2 == 1:
            y = torch.cat([y[:, :-1], x[:, -1:]], 1)  # frame blocks do not touch the scale token
        x = y
    return aat.norm(x)


@pytest.mark.parametrize("views", [1, 2, 3])
def test_alternating_attention_matches_masked_attention_and_token_layout(views):
    torch.manual_seed(0)
    config = tiny_mapanything_config()
    aat = _randomise(MapAnythingInfoSharing(config), seed=1)
    feats, regs, scale = torch.randn(2, views, 6, 32), torch.randn(2, views, 1, 32), torch.randn(2, 1, 32)
    with torch.no_grad():
        got, _ = aat(feats, regs, scale)
        want = _reference_aat(aat, feats, regs, scale)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_reference_view_marker_and_frame_blocks():
    config = tiny_mapanything_config()
    marker = reference_view_encoding(32)[0]
    assert torch.equal(marker[0::2], torch.zeros(16)) and torch.equal(marker[1::2], torch.ones(16))
    aat = _randomise(MapAnythingInfoSharing(config), seed=2)
    aat.view_pos_table.copy_(marker[None])
    feats = torch.randn(1, 2, 4, 32)
    same = torch.cat([feats[:, :1], feats[:, :1]], 1)  # two identical views: only the marker tells them apart
    with torch.no_grad():
        out, _ = aat(same)
        assert (out[:, :4] - out[:, 4:]).abs().max() > 1e-3, "view 0 got no reference marker"
        aat.view_pos_table.zero_()
        out, _ = aat(same)
        torch.testing.assert_close(out[:, :4], out[:, 4:], atol=1e-6, rtol=0)
        # Only frame blocks: each view is encoded alone, so changing view 1 leaves view 0 unchanged.
        frame_only = MapAnythingInfoSharing(tiny_mapanything_config(info_sharing_num_layers=2,
                                                                    intermediate_layer_indices=[1]))
        frame_only = _randomise(frame_only, seed=3)
        frame_only.self_attention_blocks[0] = torch.nn.Identity()  # block 0 is the global one
        other = feats.clone()
        other[:, 1] = torch.randn(1, 4, 32)
        a, _ = frame_only(feats)
        b, _ = frame_only(other)
        torch.testing.assert_close(a[:, :4], b[:, :4], atol=0, rtol=0)
        assert (a[:, 4:] - b[:, 4:]).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------- feature modes
def test_feature_modes():
    torch.manual_seed(0)
    model = _randomise(MapAnythingModel(tiny_mapanything_config()))
    pixels = torch.randn(2, 3, 3, 28, 42)
    with torch.no_grad():
        out = model(pixels, output_intermediates=True)
        assert out.last_hidden_state.shape == (2, 3 * 2 * 3, 32)
        assert out.cls_tokens.shape == (2, 3, 32) and out.scale_token.shape == (2, 32)
        assert len(out.intermediate_hidden_states) == 2
        model.config.feature_mode = "qwenmapanythingpi"
        qwen = model(pixels)
        assert qwen.cls_tokens is None and qwen.scale_token is None
        assert (qwen.last_hidden_state - out.last_hidden_state).abs().max() > 1e-2
        # qwenmapanythingpi skips the fusion LayerNorm and the scale token; mapanything mode uses both
        model.fusion_norm_layer.weight.mul_(2.0)
        model.scale_token.add_(1.0)
        torch.testing.assert_close(model(pixels).last_hidden_state, qwen.last_hidden_state, atol=0, rtol=0)
        model.config.feature_mode = "mapanything"
        assert (model(pixels).last_hidden_state - out.last_hidden_state).abs().max() > 1e-3
    # one view alone equals that view inside a batch (the encoder batches views view-major)
    with torch.no_grad():
        single = model(pixels[:1]).last_hidden_state
        torch.testing.assert_close(single, model(pixels).last_hidden_state[:1], atol=1e-5, rtol=1e-4)


def test_fusion_norm_runs_in_float32_under_autocast():
    model = _randomise(MapAnythingModel(tiny_mapanything_config()))
    x = torch.randn(2, 5, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model._fusion_norm(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, model.fusion_norm_layer(x), atol=0, rtol=0)


def test_image_processor_per_mode(tmp_path):
    rng = np.random.default_rng(0)
    views = [rng.integers(0, 256, (28, 42, 3), dtype=np.uint8) for _ in range(2)]
    raw = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float().div(255)  # to_tensor
    qwen = MapAnythingImageProcessor(feature_mode="qwenmapanythingpi", size={"height": 28, "width": 42})
    assert torch.equal(qwen([views])["pixel_values"][0], raw)
    ma = MapAnythingImageProcessor(size={"height": 28, "width": 42})
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    torch.testing.assert_close(ma([views])["pixel_values"][0], (raw - mean) / std, atol=1e-6, rtol=0)
    resized = MapAnythingImageProcessor(feature_mode="qwenmapanythingpi")([views])["pixel_values"]
    assert resized.shape == (1, 2, 3, 224, 224)
    with pytest.raises(UserError, match="multiples of patch_size=14"):
        MapAnythingImageProcessor(size={"height": 30, "width": 28})
    ma.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is MapAnythingImageProcessor and loaded.size == {"height": 28, "width": 42}


# ------------------------------------------------------------------------------------------- converter
RELEASED_CONFIG = {
    "name": "mapanything",
    "encoder_config": {"data_norm_type": "dinov2", "encoder_str": "dinov2", "keep_first_n_layers": 2,
                       "name": "dinov2_giant_24_layers", "norm_returned_features": False, "size": "giant",
                       "uses_torch_hub": True, "with_registers": False, "torch_hub_pretrained": False},
    "info_sharing_config": {"custom_positional_encoding": None, "model_return_type": "intermediate_features",
                            "model_type": "alternating_attention",
                            "module_args": {"depth": 4, "dim": 32, "distinguish_ref_and_non_ref_views": True,
                                            "indices": [1, 2], "init_values": 1e-5, "mlp_ratio": 4, "num_heads": 2,
                                            "qk_norm": False, "qkv_bias": True}},
    "pred_head_config": {"type": "dpt+pose"},
    "geometric_input_config": {"overall_prob": 0, "ray_dirs_prob": 0},
    "use_register_tokens_from_encoder": True,
    "info_sharing_mlp_layer_str": "swiglufused",
    "max_dist": float("inf"),
}


def write_released(folder: Path, model: MapAnythingModel, extra: dict[str, torch.Tensor] | None = None,
                   drop: tuple[str, ...] = ()) -> Path:
    """`model` in the released layout: `encoder.model.*` keys, the heads and geometric-input encoders (a tensor
    under every unused prefix but the aliases safetensors drops), config.json as MapAnything writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {("encoder.model." + k[len("encoder."):] if k.startswith("encoder.") else k): v.contiguous()
             for k, v in model.state_dict().items()}
    for prefix in UNUSED_PREFIXES:
        if prefix not in ("dpt_feature_head.", "dpt_regressor_head.", "dense_adaptor.", "pose_adaptor.",
                          "scale_adaptor."):
            state[prefix + "layer.weight"] = torch.randn(3, 4)
    state.update(extra or {})
    for key in drop:
        state.pop(key)
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(RELEASED_CONFIG), encoding="utf-8")  # writes Infinity
    return folder


def test_converter_accounts_for_every_key_and_round_trips(tmp_path, capsys):
    torch.manual_seed(0)
    model = _randomise(MapAnythingModel(tiny_mapanything_config()))
    src = write_released(tmp_path / "released", model)
    out = tmp_path / "converted"
    assert cli_main(["convert", "mapanything", str(src), "--output", str(out), "--encoder-width", "32",
                     "--encoder-num-heads", "2", "--feature-mode", "qwenmapanythingpi", "--image-size", "28",
                     "42"]) == 0
    report = json.loads(capsys.readouterr().out)
    trunk = sum(p.numel() for p in model.parameters())
    assert report["trunk_parameters"] == trunk and report["trunk_keys"] == len(model.state_dict())
    assert report["file_parameters"] == trunk + 12 * len(report["unused"])
    assert set(report["unused"]) == set(UNUSED_PREFIXES) - {"dpt_feature_head.", "dpt_regressor_head.",
                                                          "dense_adaptor.", "pose_adaptor.", "scale_adaptor."}
    loaded = AutoModel.from_pretrained(out)
    processor = AutoImageProcessor.from_pretrained(out)
    assert type(loaded) is MapAnythingModel and type(processor) is MapAnythingImageProcessor
    assert loaded.config.feature_mode == "qwenmapanythingpi" and processor.feature_mode == "qwenmapanythingpi"
    assert loaded.config.intermediate_layer_indices == [1, 2] and loaded.config.intermediate_size == 64
    images = [[np.full((28, 42, 3), 40 * i, dtype=np.uint8) for i in range(2)]]
    pixels = processor(images)["pixel_values"]
    model.config.feature_mode = "qwenmapanythingpi"
    with torch.no_grad():
        assert torch.equal(loaded.eval()(pixels).last_hidden_state, model(pixels).last_hidden_state)
    # from_backbone reads the released layout directly
    direct = MapAnythingModel.from_backbone(str(src), encoder_num_heads=2)
    assert direct.config.feature_mode == "mapanything"
    model.config.feature_mode = "mapanything"
    with torch.no_grad():
        assert torch.equal(direct(pixels).last_hidden_state, model(pixels).last_hidden_state)


def test_converter_errors_name_the_key(tmp_path):
    model = MapAnythingModel(tiny_mapanything_config())
    bad = write_released(tmp_path / "unknown", model, extra={"mystery_head.weight": torch.zeros(2)})
    with pytest.raises(UserError, match="mystery_head.weight"):
        read_released(str(bad), encoder_num_heads=2)
    missing = write_released(tmp_path / "missing", model, drop=("info_sharing.self_attention_blocks.3.ls2.gamma",))
    with pytest.raises(UserError, match=r"info_sharing\.self_attention_blocks\.3\.ls2\.gamma"):
        config, state, _ = read_released(str(missing), encoder_num_heads=2)
        model_from_state(config, state, "missing")
    with pytest.raises(UserError, match="--encoder-num-heads"):
        read_released(str(bad.parent / "missing"))
    with pytest.raises(UserError, match="--encoder-width 48 disagrees"):
        read_released(str(bad.parent / "missing"), encoder_width=48, encoder_num_heads=2)


# ------------------------------------------------------------------------------------------- reference scale
def _global_encoder_parameters(in_chans: int, dims: tuple[int, ...], width: int) -> int:
    """UniCeption's GlobalRepresentationEncoder: MLP in_chans -> dims... -> width (Linear layers), then LayerNorm."""
    sizes = (in_chans, *dims, width)
    return sum(a * b + b for a, b in zip(sizes, sizes[1:])) + 2 * width


# The released V1.1 file beyond the trunk, per unused prefix (docs/reference mapanything.md section 3; the DPT
# feature and regression heads are stored under `dense_head.` = 19,659,712 + 443,398).
V11_UNUSED_PARAMETERS = {
    "ray_dirs_encoder.": 31_820_892,
    "depth_encoder.": 29_746_428,
    "cam_rot_encoder.": _global_encoder_parameters(4, (128, 256, 512), 1536),
    "cam_trans_encoder.": _global_encoder_parameters(3, (128, 256, 512), 1536),
    "depth_scale_encoder.": _global_encoder_parameters(1, (128, 256, 512), 1536),
    "cam_trans_scale_encoder.": _global_encoder_parameters(1, (128, 256, 512), 1536),
    "dense_head.": 19_659_712 + 443_398,
    "pose_head.": 6_134_023,
    "scale_head.": 378_673,
}


def test_reference_scale_on_meta():
    with torch.device("meta"):
        model = MapAnythingModel(MapAnythingConfig())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.encoder) == 683_089_920
    assert count(model.info_sharing) == 453_389_312
    assert count(model.fusion_norm_layer) + model.scale_token.numel() == 4_608
    assert count(model) == 1_136_483_840
    # ViT-g/14 split into 24 per-view blocks + 16 AAT blocks: 28,336,640 each
    assert count(model.encoder.blocks[0]) == count(model.info_sharing.self_attention_blocks[0]) == 28_336_640
    assert model.encoder.blocks[0].mlp.w12.weight.shape == (8192, 1536)
    # The full released file: the trunk plus every known unused prefix the converter accepts.
    assert set(V11_UNUSED_PARAMETERS) <= set(UNUSED_PREFIXES)
    assert sum(V11_UNUSED_PARAMETERS[p] for p in V11_UNUSED_PARAMETERS if "_encoder" in p and "ray" not in p
               and "depth_encoder" not in p) == 3_824_256
    assert count(model) + sum(V11_UNUSED_PARAMETERS.values()) == 1_228_491_222


# ------------------------------------------------------------------------------------------- parity with the original
def _fixture_folder(tmp_path: Path) -> tuple[Path, dict]:
    if not (FIXTURE / "reference_outputs.safetensors").is_file():
        pytest.skip(f"the parity fixture {FIXTURE} is not present (scripts/make_mapanything_fixture.py writes it)")
    readme = (FIXTURE / "README.md").read_text(encoding="utf-8")
    width = int(readme.split("--encoder-width ")[1].split()[0])
    heads = int(readme.split("--encoder-num-heads ")[1].split()[0])
    released = tmp_path / "released"
    released.mkdir()
    (released / "config.json").write_bytes((FIXTURE / "released" / "config.json").read_bytes())
    (released / "model.safetensors").write_bytes(
        gzip.decompress((FIXTURE / "released" / "model.safetensors.gz").read_bytes()))
    return released, {"width": width, "heads": heads}


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mapanything_parity")
    released, sizes = _fixture_folder(tmp_path)
    out = {}
    for mode in ("mapanything", "qwenmapanythingpi"):
        target = tmp_path / mode
        code = cli_main(["convert", "mapanything", str(released), "--output", str(target), "--feature-mode", mode,
                         "--encoder-width", str(sizes["width"]), "--encoder-num-heads", str(sizes["heads"])])
        assert code == 0
        out[mode] = AutoModel.from_pretrained(target).eval()
    return released, out, load_file(str(FIXTURE / "reference_outputs.safetensors"))


SIZES = ("42x42", "28x42", "42x28")


@pytest.mark.parametrize("mode", ["mapanything", "qwenmapanythingpi"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("views", [1, 2, 3])
def test_parity_with_the_original(parity, mode, size, views):
    _, models, ref = parity
    model = models[mode]
    torch.set_num_threads(1)
    with torch.no_grad():
        out = model(ref[f"pixel_values.{mode}.{size}"][:, :views], output_intermediates=views == 3)
    torch.testing.assert_close(out.last_hidden_state, ref[f"last_hidden_state.{mode}.{size}.v{views}"],
                               atol=1e-5, rtol=0)
    if mode == "mapanything":
        torch.testing.assert_close(out.cls_tokens, ref[f"cls.{mode}.{size}.v{views}"], atol=1e-5, rtol=0)
        torch.testing.assert_close(out.scale_token, ref[f"scale_token.{mode}.{size}.v{views}"], atol=1e-5, rtol=0)
    if views == 3:
        for got, block in zip(out.intermediate_hidden_states, model.config.intermediate_layer_indices):
            torch.testing.assert_close(got, ref[f"intermediate_block{block}.{mode}.{size}.v3"], atol=1e-5, rtol=0)
        if mode == "mapanything":
            torch.testing.assert_close(out.encoder_hidden_state, ref[f"fused.{mode}.{size}"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["mapanything", "qwenmapanythingpi"])
def test_parity_processor_gives_the_original_pixels(parity, mode):
    _, models, ref = parity
    for size in SIZES:
        h, w = map(int, size.split("x"))
        images = ref[f"images_uint8.{size}"].permute(0, 1, 3, 4, 2).numpy()  # (B, V, H, W, 3)
        processor = MapAnythingImageProcessor(feature_mode=mode, size={"height": h, "width": w})
        got = processor([list(sample) for sample in images])["pixel_values"]
        torch.testing.assert_close(got, ref[f"pixel_values.{mode}.{size}"], atol=1e-6, rtol=0)


def test_parity_key_accounting(parity):
    released, _, _ = parity
    _, state, report = read_released(str(released), encoder_num_heads=4, encoder_width=32)
    readme = (FIXTURE / "README.md").read_text(encoding="utf-8")
    assert report.trunk_parameters == 154_384 and "154,384 parameters" in readme
    assert set(report.unused) == set(V11_UNUSED_PARAMETERS)  # the V1.1 file's prefixes, dense_head as stored
    for prefix in report.unused:
        assert f"| `{prefix}" in readme, prefix
    # the global-encoder arithmetic of the reference scale, at the fixture's sizes (dims 8, 8, 8; width 32)
    assert report.unused["cam_rot_encoder."]["parameters"] == _global_encoder_parameters(4, (8, 8, 8), 32)
    assert report.unused["cam_trans_encoder."]["parameters"] == _global_encoder_parameters(3, (8, 8, 8), 32)
    assert report.unused["depth_scale_encoder."]["parameters"] == _global_encoder_parameters(1, (8, 8, 8), 32)
    assert math.isclose(report.file_parameters, 5_221_126 - 32)  # the README's values, less the buffer
