"""GeoVLA's action head against starVLA (github:starVLA/starVLA), one test per reference rule.

The reference rules, from starVLA's `LayerwiseFM_ActionHeader.py` (LayerwiseFlowmatchingActionHead),
`flow_matching_head/cross_attention_dit.py` (DiT, BasicTransformerBlock, AdaLayerNorm, TimestepEncoder),
`flow_matching_head/action_encoder.py` and `framework/VLM4A/QwenPI.py` (its defaults):

1. time: t = (noise_s - u) / noise_s, u ~ Beta(1.5, 1), noise_s = 0.999; x_t = (1 - t) noise + t action;
   target velocity = action - noise.
2. the network sees the time as the bucket (t * 1000).long() (training) / int(k / steps * 1000) (inference).
3. block structure: one attention per block (AdaLN(x, temb) -> attention), then LN -> GELU-tanh FF; even
   blocks cross-attend to their VLM layer, odd blocks self-attend (interleave_self_attention=True).
4. 4 Euler steps from noise at t = 0: x += (1 / 4) v.
5. loss = mean over every action step (no padding mask); two noise / time draws per example.
6. sequence = [state MLP token, 32 future tokens, action tokens + position embedding]; decoder on the last T.
7. DiT depth = the LM's layer count, width = the LM's hidden size, block i reads hidden_states[-L:][i].

The independent reference below is starVLA's head rebuilt from diffusers' own `Attention`, `FeedForward`,
`Timesteps` and `TimestepEmbedding` (what starVLA's DiT is made of), wired as starVLA's code wires them.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import hf_vlmdrive  # noqa: F401
from hf_vlmdrive.models.common.flow_matching import sample_flow_time
from hf_vlmdrive.models.common.layerwise_dit import (
    LayerwiseFlowMatchingHead,
    bucket_sinusoid,
    starvla_inference_buckets,
)
from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAForActionPrediction
from hf_vlmdrive.testing.tiny_geovla import tiny_geovla_norm_stats
from hf_vlmdrive.testing.tiny_qwen import (
    build_tiny_qwen_processor,
    build_tiny_qwen_tokenizer,
    tiny_dinov2_config,
    tiny_qwen2_5_vl_config,
)

diffusers = pytest.importorskip("diffusers", reason="the starVLA reference is built from diffusers' modules")
from diffusers.models.attention import FeedForward as DFeedForward  # noqa: E402
from diffusers.models.attention_processor import Attention as DAttention  # noqa: E402
from diffusers.models.embeddings import TimestepEmbedding, Timesteps  # noqa: E402


# ------------------------------------------------------------------------------------------- reference
class RefAdaLayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, dim * 2)
        self.norm = nn.LayerNorm(dim, 1e-5, False)

    def forward(self, x, temb):
        temb = self.linear(self.silu(temb))
        scale, shift = temb.chunk(2, dim=1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class RefBlock(nn.Module):
    def __init__(self, dim, heads, head_dim, dropout, cross_attention_dim):
        super().__init__()
        self.norm1 = RefAdaLayerNorm(dim)
        self.attn1 = DAttention(query_dim=dim, heads=heads, dim_head=head_dim, dropout=dropout, bias=True,
                                cross_attention_dim=cross_attention_dim, upcast_attention=False, out_bias=True)
        self.norm3 = nn.LayerNorm(dim, 1e-5, False)
        self.ff = DFeedForward(dim, dropout=dropout, activation_fn="gelu-approximate", final_dropout=True,
                               inner_dim=None, bias=True)
        self.final_dropout = nn.Dropout(dropout)

    def forward(self, x, encoder_hidden_states=None, encoder_attention_mask=None, temb=None):
        attn = self.attn1(self.norm1(x, temb), encoder_hidden_states=encoder_hidden_states,
                          attention_mask=encoder_attention_mask)
        x = self.final_dropout(attn) + x
        return self.ff(self.norm3(x)) + x


class RefTimestepEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.time_proj = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=1)
        self.timestep_embedder = TimestepEmbedding(in_channels=256, time_embed_dim=dim)

    def forward(self, timesteps):
        return self.timestep_embedder(self.time_proj(timesteps).to(next(self.parameters()).dtype))


class RefDiT(nn.Module):
    def __init__(self, dim, layers, heads, head_dim, dropout, cross_dim, interleave=True):
        super().__init__()
        self.interleave = interleave
        self.timestep_encoder = RefTimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList(
            RefBlock(dim, heads, head_dim, dropout, None if (i % 2 == 1 and interleave) else cross_dim)
            for i in range(layers))

    def forward(self, hidden_states, encoder_hidden_states, timestep, encoder_attention_mask=None):
        temb = self.timestep_encoder(timestep)
        for idx, block in enumerate(self.transformer_blocks):
            if idx % 2 == 1 and self.interleave:
                hidden_states = block(hidden_states, None, None, temb)
            else:
                hidden_states = block(hidden_states, encoder_hidden_states[idx], encoder_attention_mask, temb)
        return hidden_states


class RefMLP(nn.Module):
    def __init__(self, i, h, o):
        super().__init__()
        self.layer1, self.layer2 = nn.Linear(i, h), nn.Linear(h, o)

    def forward(self, x):
        return self.layer2(F.relu(self.layer1(x)))


class RefSinusoid(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.embedding_dim = dim

    def forward(self, timesteps):
        timesteps = timesteps.float()
        half_dim = self.embedding_dim // 2
        exponent = -torch.arange(half_dim, dtype=torch.float) * (torch.log(torch.tensor(10000.0)) / half_dim)
        freqs = timesteps.unsqueeze(-1) * exponent.exp()
        return torch.cat([torch.sin(freqs), torch.cos(freqs)], dim=-1)


class RefActionEncoder(nn.Module):
    def __init__(self, action_dim, dim):
        super().__init__()
        self.layer1, self.layer2, self.layer3 = nn.Linear(action_dim, dim), nn.Linear(2 * dim, dim), nn.Linear(dim, dim)
        self.pos_encoding = RefSinusoid(dim)

    def forward(self, actions, timesteps):
        b, t, _ = actions.shape
        timesteps = timesteps.unsqueeze(1).expand(-1, t)
        x = torch.cat([self.layer1(actions), self.pos_encoding(timesteps)], dim=-1)
        x = self.layer2(x)
        return self.layer3(x * torch.sigmoid(x))


class RefHead(nn.Module):
    """starVLA's LayerwiseFlowmatchingActionHead: `velocity` is the DiT + decoder part of forward /
    predict_action, `loss` its forward, `predict` its predict_action."""

    def __init__(self, dim, layers, heads, cross_dim, action_dim, horizon, state_dim, future=32, mlp=1024,
                 max_seq_len=1024, dropout=0.0, interleave=True):
        super().__init__()
        self.model = RefDiT(dim, layers, heads, dim // heads, dropout, cross_dim, interleave)
        self.state_encoder = RefMLP(state_dim, mlp, dim)
        self.action_encoder = RefActionEncoder(action_dim, dim)
        self.action_decoder = RefMLP(dim, mlp, action_dim)
        self.future_tokens = nn.Embedding(future, dim)
        self.position_embedding = nn.Embedding(max_seq_len, dim)
        self.horizon, self.action_dim = horizon, action_dim

    def velocity(self, actions, t_discretized, state, vl_embs_list, mask):
        b = actions.shape[0]
        action_features = self.action_encoder(actions, t_discretized)
        pos_ids = torch.arange(action_features.shape[1], dtype=torch.long)
        action_features = action_features + self.position_embedding(pos_ids).unsqueeze(0)
        future_tokens = self.future_tokens.weight.unsqueeze(0).expand(b, -1, -1)
        sa_embs = torch.cat((self.state_encoder(state), future_tokens, action_features), dim=1)
        out = self.model(sa_embs, vl_embs_list, t_discretized, mask)
        return self.action_decoder(out)[:, -self.horizon:]

    def loss(self, vl_embs_list, actions, state, mask, noise, t):
        t = t[:, None, None]
        noisy = (1 - t) * noise + t * actions
        pred = self.velocity(noisy, (t[:, 0, 0] * 1000).long(), state, vl_embs_list, mask)
        return ((pred - (actions - noise)) ** 2).mean()

    def predict(self, vl_embs_list, state, mask, noise, num_steps=4):
        actions, dt = noise, 1.0 / num_steps
        for k in range(num_steps):
            bucket = int(k / float(num_steps) * 1000)
            ts = torch.full((noise.shape[0],), bucket, dtype=torch.long)
            actions = actions + dt * self.velocity(actions, ts, state, vl_embs_list, mask)
        return actions


# ------------------------------------------------------------------------------------------- fixtures
def _head_and_reference(dim=32, layers=4, heads=2, cross_dim=24, action_dim=7, horizon=8, state_dim=8, **kw):
    torch.manual_seed(0)
    ours = LayerwiseFlowMatchingHead(dim, layers, heads, dim // heads, cross_dim, action_dim, horizon, state_dim,
                                     mlp_hidden_size=40, **kw).eval()
    ref = RefHead(dim, layers, heads, cross_dim, action_dim, horizon, state_dim, mlp=40,
                  interleave=kw.get("interleave_self_attention", True)).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # the same parameter names as starVLA's modules
    return ours, ref


def _contexts(layers, b=3, length=6, width=24, interleave=True):
    torch.manual_seed(1)
    vl = [torch.randn(b, length, width) for _ in range(layers)]
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, -2:] = False  # padding in the first row
    ours = [None if (interleave and i % 2) else vl[i] for i in range(layers)]
    masks = [None if c is None else mask for c in ours]
    return vl, mask, ours, masks


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_qwen_tokenizer()


def _tiny_model(tokenizer, **kw):
    base = dict(
        vlm_config=tiny_qwen2_5_vl_config(tokenizer, hidden_size=32, num_layers=4).to_dict(),
        geometry_config={"model_type": "geovla_geometry", "backbone_config": tiny_dinov2_config().to_dict(),
                         "num_views": 2, "num_layers": 1,
                         "num_heads": 2, "output_size": 48},
        compressor_type="per_layer", num_geometry_tokens=4, dit_num_layers=4, dit_num_heads=2, action_mlp_hidden_size=40,
    )
    base.update(kw)
    torch.manual_seed(0)
    model = GeoVLAForActionPrediction(GeoVLAConfig(**base)).eval()
    model.set_norm_stats(tiny_geovla_norm_stats())
    return model


def _batch(tokenizer, b=2):
    processor = build_tiny_qwen_processor(tokenizer)
    rng = np.random.default_rng(0)
    images = [[Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8))] for _ in range(b)]
    texts = ["<|vision_start|><|image_pad|><|vision_end|>pick up the bowl"] * (b - 1) + [
        "<|vision_start|><|image_pad|><|vision_end|>put it in the basket now please"]
    enc = processor(text=texts, images=images, return_tensors="pt", padding=True)
    g = torch.Generator().manual_seed(3)
    return {**{k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")},
            "geometry_pixel_values": torch.randn(b, 2, 3, 28, 28, generator=g),
            "state": torch.randn(b, 8, generator=g), "actions": torch.randn(b, 8, 7, generator=g)}


def _reference_contexts(model, batch):
    hidden, mask = model.encode_vl(batch["input_ids"], batch["attention_mask"], batch["pixel_values"],
                                   batch["image_grid_thw"])
    ctx, masks = model._contexts(hidden, mask, model.encode_geometry(batch["geometry_pixel_values"]))
    full = [c if c is not None else torch.zeros(1) for c in ctx]  # the reference ignores odd-block contexts
    return full, next(m for m in masks if m is not None)


# ------------------------------------------------------------------------------------------- rule 1
def test_rule1_time_is_starvla_sample_time():
    """starVLA `sample_time`: (noise_s - Beta(1.5, 1)) / noise_s; dense near the noise end (t = 0)."""
    n, s = 50000, 0.999
    u = sample_flow_time(n, generator=torch.Generator().manual_seed(0), rule="beta_scaled") / s  # the Beta draws
    t = sample_flow_time(n, generator=torch.Generator().manual_seed(0))  # default rule
    torch.testing.assert_close(t, (s - u) / s)
    assert t.mean().item() == pytest.approx((s - 0.6) / s, abs=0.01)  # E[Beta(1.5, 1)] = 0.6
    assert (t < 0.5).float().mean() > 0.6  # more mass near noise than near data
    assert t.max() <= 1.0 and t.min() >= -(1 - s) / s - 1e-7  # u > 0.999 gives t in (-0.001, 0)
    assert GeoVLAConfig(vlm_config=tiny_qwen2_5_vl_config(build_tiny_qwen_tokenizer()).to_dict()).flow_time_sampling == "starvla"


# ------------------------------------------------------------------------------------------- rules 2, 3, 6
@pytest.mark.parametrize("interleave", [True, False])
def test_rules_2_3_6_head_equals_starvla_head_built_from_diffusers(interleave):
    """Velocity of our head == starVLA's (diffusers Attention / FeedForward / Timesteps), same weights."""
    ours, ref = _head_and_reference(interleave_self_attention=interleave)
    vl, mask, ctx, masks = _contexts(4, interleave=interleave)
    g = torch.Generator().manual_seed(2)
    x, state = torch.randn(3, 8, 7, generator=g), torch.randn(3, 8, generator=g)
    buckets = torch.tensor([0, 417, 999])
    with torch.no_grad():
        got = ours(x, buckets, state, ctx, masks)
        want = ref.velocity(x, buckets, state.unsqueeze(1), vl, mask)
    diff = (got - want).abs().max().item()
    assert got.shape == (3, 8, 7) and diff < 1e-5, diff
    # the blocks: one attention each; even blocks cross-attend, odd blocks self-attend when interleaving
    kinds = [b.is_cross_attention for b in ours.blocks]
    assert kinds == ([True, False, True, False] if interleave else [True] * 4)
    # rule 6: [state, 32 future tokens, T action tokens] enter the DiT
    seen = {}
    ours.blocks[0].register_forward_pre_hook(lambda m, a: seen.update(x=a[0].shape))
    with torch.no_grad():
        ours(x, buckets, state, ctx, masks)
    assert seen["x"] == (3, 1 + 32 + 8, 32)


def test_rule2_time_buckets_training_and_inference():
    """Training: (t * 1000).long() of the float time; inference: int(k / steps * 1000)."""
    assert starvla_inference_buckets(4) == [0, 250, 500, 750]
    assert starvla_inference_buckets(10)[7] == 700  # Python float arithmetic, as starVLA: not 699
    sin = bucket_sinusoid(torch.tensor([[250.0]]), 8)
    half = torch.arange(4) * -(np.log(10000.0) / 4)
    torch.testing.assert_close(sin[0, 0], torch.cat([torch.sin(250 * half.exp()), torch.cos(250 * half.exp())]).float())


# ------------------------------------------------------------------------------------------- rules 1, 4, 5, 7 on the model
def test_rules_1_5_model_loss_equals_starvla_loss(tokenizer):
    model = _tiny_model(tokenizer)
    batch = _batch(tokenizer)
    cfg = model.config
    r, b = cfg.num_flow_samples, 2
    assert r == 2 and not cfg.flow_loss_mask_padding
    g = torch.Generator().manual_seed(5)
    noise, time = torch.randn(r * b, 8, 7, generator=g), torch.tensor([0.05, 0.4004, 0.73, -0.0004])
    calls = []
    model.vlm.register_forward_hook(lambda *a: calls.append(1))
    is_pad = torch.zeros(b, 8, dtype=torch.bool)
    is_pad[1, 5:] = True
    with torch.no_grad():
        out = model(**batch, noise=noise, time=time)
        padded = model(**batch, noise=noise, time=time, action_is_pad=is_pad)
        ctx, mask = _reference_contexts(model, batch)
    assert len(calls) == 3  # two flow draws, one VLM pass per step (+1 for the reference contexts)
    ref = RefHead(32, 4, 2, 32, 7, 8, 8, mlp=40).eval()
    ref.load_state_dict(model.action_head.state_dict())
    actions = model.normalize("action", batch["actions"]).repeat(r, 1, 1)
    state = model.normalize("observation.state", batch["state"]).repeat(r, 1).unsqueeze(1)
    with torch.no_grad():
        want = ref.loss([c.repeat(r, 1, 1) if c.ndim == 3 else c for c in ctx], actions, state,
                        mask.repeat(r, 1), noise, time)
    assert abs(out.loss.item() - want.item()) < 1e-5, (out.loss.item(), want.item())
    # rule 5: no padding mask in the loss by default; the option masks the padded steps
    assert padded.loss.item() == out.loss.item()
    masked = _tiny_model(tokenizer, flow_loss_mask_padding=True)
    with torch.no_grad():
        assert masked(**batch, noise=noise, time=time, action_is_pad=is_pad).loss.item() != out.loss.item()


def test_rules_4_7_predict_action_is_starvla_predict_action(tokenizer):
    model = _tiny_model(tokenizer)
    cfg = model.config
    # rule 7: DiT width from the LM (depth 4 given: the default is the seed's 16), block i reads hidden_states[-L:][i]
    assert (cfg.dit_num_layers, cfg.dit_hidden_size, cfg.dit_num_heads) == (4, 32, 2)
    assert cfg.dit_vlm_layer_map == [1, 2, 3, 4]
    assert cfg.num_inference_steps == 4 and cfg.num_timestep_buckets == 1000 and cfg.num_future_tokens == 32
    assert cfg.dit_dropout == 0.2 and cfg.dit_interleave_self_attention
    batch = _batch(tokenizer)
    noise = torch.randn(2, 8, 7, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        got = model.predict_action(**batch, noise=noise)
        ctx, mask = _reference_contexts(model, batch)
    ref = RefHead(32, 4, 2, 32, 7, 8, 8, mlp=40).eval()
    ref.load_state_dict(model.action_head.state_dict())
    state = model.normalize("observation.state", batch["state"]).unsqueeze(1)
    with torch.no_grad():
        want = model.unnormalize("action", ref.predict(ctx, state, mask, noise, num_steps=4))
    diff = (got - want).abs().max().item()
    assert diff < 1e-5, diff


# ------------------------------------------------------------------------------------------- options and warnings
def test_adaln_zero_and_beta_scaled_stay_available(tokenizer):
    model = _tiny_model(tokenizer, action_head_type="adaln_zero", flow_time_sampling="beta_scaled",
                        dit_num_layers=2, num_flow_samples=1, num_inference_steps=10)
    assert type(model.action_head).__name__ == "GeoVLAActionHead" and model.config.cross_attention_layers == [0, 1]
    with torch.no_grad():
        out = model(**_batch(tokenizer))
    assert out.velocity.shape == (2, 8, 7) and 0 <= out.time.min() and out.time.max() <= 0.999
    with pytest.raises(ValueError, match="action_head_type"):
        _tiny_model(tokenizer, action_head_type="unet")
    with pytest.raises(ValueError, match="flow_time_sampling"):
        _tiny_model(tokenizer, flow_time_sampling="uniform")


def test_constant_state_dimension_warns_once_naming_key_and_dimension(tokenizer, caplog):
    model = _tiny_model(tokenizer)
    stats = tiny_geovla_norm_stats()
    stats["observation.state"]["std"][6] = 0.0
    with caplog.at_level(logging.WARNING, logger="hf_vlmdrive.models.geovla.modeling_geovla"):
        model.set_norm_stats(stats, source="meta/stats.json")
        with torch.no_grad():
            for _ in range(3):
                model.normalize("observation.state", torch.zeros(1, 8))
    msgs = [r.getMessage() for r in caplog.records if "std = 0" in r.getMessage()]
    assert len(msgs) == 1, msgs
    assert "'observation.state'" in msgs[0] and "[6]" in msgs[0] and "meta/stats.json" in msgs[0]
