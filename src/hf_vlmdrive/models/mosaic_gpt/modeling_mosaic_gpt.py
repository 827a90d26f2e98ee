"""MosaicGPT (MosaicML, github mosaicml/examples tag v0.0.4) as a native transformers model: the architecture of
MPT-1B-RedPajama-200b, OpenFlamingo-3B's language model.

```
input_ids (B, S) -> transformer.wte (B, S, D)   [+ transformer.wpe(positions) when alibi=False]
   -> emb_drop (embedding_fraction: x * f + x.detach() * (1 - f))
   -> MosaicGPTBlock x n_layers:
        x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))
        attn: Wqkv (D -> 3D) -> clamp(+-clip_qkv) -> q, k, v
              -> q_ln(q), k_ln(k) over the full width D, before the head split (attn_qk_ln)
              -> heads (B, H, S, D/H) -> softmax(q k^T * softmax_scale + bias) v -> out_proj
        bias (1 or B, H, 1, S_k) = slope_h * (j - (S_k - 1)), masked keys = dtype min; causal fill = dtype min
        mlp: mlp_up (D -> ratio*D) -> exact GELU -> mlp_down
   -> transformer.ln_f -> logits = hidden @ wte.T (tied; no lm_head) [* logit_scale]
```

Parameter names equal the released weight files (`transformer.wte.weight`, `transformer.blocks.{i}.ln_1.weight`,
`.attn.Wqkv.weight`, `.attn.q_ln.weight`, `.attn.k_ln.weight`, `.attn.out_proj.weight`, `.ln_2.weight`,
`.mlp.mlp_up.weight`, `.mlp.mlp_down.weight`, `transformer.ln_f.weight`), so `from_pretrained` reads a Hub folder
without remote code. Any key of the file this model does not use, and any weight it lacks, is an error naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...errors import UserError
from ..common.init import init_module
from .configuration_mosaic_gpt import MosaicGPTConfig

__all__ = [
    "MosaicGPTBlock",
    "MosaicGPTCausalLMOutput",
    "MosaicGPTForCausalLM",
    "MosaicGPTModel",
    "MosaicGPTModelOutput",
    "MosaicGPTPreTrainedModel",
    "alibi_slopes",
]


def alibi_slopes(n_heads: int, alibi_bias_max: float = 8, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """(n_heads,) slopes `1 / 2^((h + 1) * alibi_bias_max / n_heads)`, h = 0..n_heads-1, computed as the original
    does (attention.py `alibi_bias`: `m = arange(1, n_heads + 1) * (alibi_bias_max / n_heads)`, `1. / 2**m`): no
    rounding of the head count to a power of two, so 3 heads give 2^-8/3, 2^-16/3, 2^-8 (transformers' MPT interleaves
    the slopes of the next power of two instead)."""
    m = torch.arange(1, n_heads + 1, dtype=dtype, device=device).mul(alibi_bias_max / n_heads)
    return 1.0 / (2**m)


def alibi_bias(n_heads: int, seq_len: int, alibi_bias_max: float = 8, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """(1, n_heads, 1, seq_len) additive bias `slope_h * (j - (seq_len - 1))`: query-independent (the causal form
    the original builds; a later key slice `[..., -S_k:]` keeps the same form for S_k keys)."""
    distance = torch.arange(1 - seq_len, 1, dtype=dtype, device=device).view(1, 1, 1, seq_len)
    return distance * alibi_slopes(n_heads, alibi_bias_max, dtype, device).view(1, n_heads, 1, 1)


class MosaicGPTLayerNorm(nn.LayerNorm):
    """LayerNorm, or MosaicML's `LPLayerNorm` (low_precision_layernorm): under autocast, the input, weight and bias
    are cast to the autocast dtype and the norm runs there (autocast would otherwise run it in float32); without
    autocast both are a plain LayerNorm."""

    def __init__(self, dim: int, eps: float, bias: bool, low_precision: bool):
        super().__init__(dim, eps=eps, bias=bias)
        self.low_precision = low_precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device_type = x.device.type
        if not (self.low_precision and torch.is_autocast_enabled(device_type)):
            return super().forward(x)
        dtype = torch.get_autocast_dtype(device_type)
        weight = self.weight.to(dtype) if self.weight is not None else None
        bias = self.bias.to(dtype) if self.bias is not None else None
        with torch.autocast(device_type=device_type, enabled=False):
            return F.layer_norm(x.to(dtype), self.normalized_shape, weight, bias, self.eps)


def _layer_norm(config: MosaicGPTConfig) -> MosaicGPTLayerNorm:
    return MosaicGPTLayerNorm(config.d_model, eps=config.layer_norm_eps, bias=not config.no_bias,
                              low_precision=config.low_precision_layernorm)


class MosaicGPTAttention(nn.Module):
    """Multi-head self-attention with the fused `Wqkv`, optional qkv clipping and QK LayerNorm (attention.py
    `MultiheadAttention`, `scaled_multihead_dot_product_attention`)."""

    def __init__(self, config: MosaicGPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.d_model, self.n_heads = config.d_model, config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.clip_qkv = config.attn_clip_qkv
        self.softmax_scale = (config.softmax_scale if config.softmax_scale is not None
                              else 1 / math.sqrt(config.d_model / config.n_heads))
        self.attn_dropout_p = config.attn_pdrop
        bias = not config.no_bias
        self.Wqkv = nn.Linear(config.d_model, 3 * config.d_model, bias=bias)
        if config.attn_qk_ln:
            self.q_ln = _layer_norm(config)
            self.k_ln = _layer_norm(config)
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=bias)

    def forward(self, hidden_states: torch.Tensor, attn_bias: torch.Tensor | None, cache: Cache | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, s_q, _ = hidden_states.shape
        qkv = self.Wqkv(hidden_states)
        if self.clip_qkv:  # (the original: `if self.clip_qkv:` -- 0 and None leave it unclipped)
            qkv = qkv.clamp(min=-self.clip_qkv, max=self.clip_qkv)
        query, key, value = qkv.chunk(3, dim=2)  # (B, S, D) each
        if self.config.attn_qk_ln:
            # Over the full width D, before the head split; cast back as the original does (LPLayerNorm).
            dtype = query.dtype
            query = self.q_ln(query).to(dtype)
            key = self.k_ln(key).to(dtype)
        query = query.view(b, s_q, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, S, Dh)
        key = key.view(b, s_q, self.n_heads, self.head_dim).transpose(1, 2)
        value = value.view(b, s_q, self.n_heads, self.head_dim).transpose(1, 2)
        if cache is not None:  # the original caches the keys after q/k LayerNorm too
            key, value = cache.update(key, value, self.layer_idx)
        s_k = key.shape[2]
        if attn_bias is not None:
            attn_bias = attn_bias[:, :, -s_q:, -s_k:]
        causal = torch.ones(s_k, s_k, dtype=torch.bool, device=query.device).tril()[-s_q:, -s_k:]  # (S_q, S_k)
        dropout_p = self.attn_dropout_p if self.training else 0.0
        if self.config._attn_implementation == "sdpa" and not output_attentions:
            # The same scores with the causal fill folded into the additive mask (equal after the softmax).
            mask = torch.zeros(1, 1, s_q, s_k, dtype=query.dtype, device=query.device)
            if attn_bias is not None:
                mask = mask + attn_bias
            mask = mask.masked_fill(~causal, torch.finfo(query.dtype).min)
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p,
                                                     scale=self.softmax_scale)
            weights = None
        else:
            # The original's "torch" kernel, operation for operation.
            scores = query.matmul(key.transpose(-1, -2)) * self.softmax_scale  # (B, H, S_q, S_k)
            if attn_bias is not None:
                scores = scores + attn_bias
            scores = scores.masked_fill(~causal.view(1, 1, s_q, s_k), torch.finfo(query.dtype).min)
            weights = torch.softmax(scores, dim=-1)
            if dropout_p:
                weights = F.dropout(weights, p=dropout_p, training=True)
            context = weights.matmul(value)
        context = context.transpose(1, 2).reshape(b, s_q, self.d_model)  # (B, S, D)
        return self.out_proj(context), (weights if output_attentions else None)


class MosaicGPTMLP(nn.Module):
    """`mlp_up` -> exact GELU -> `mlp_down` (gpt_blocks.py `GPTMLP`)."""

    def __init__(self, config: MosaicGPTConfig):
        super().__init__()
        bias = not config.no_bias
        self.mlp_up = nn.Linear(config.d_model, config.mlp_ratio * config.d_model, bias=bias)
        self.mlp_act = nn.GELU(approximate="none")
        self.mlp_down = nn.Linear(config.mlp_ratio * config.d_model, config.d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp_down(self.mlp_act(self.mlp_up(x)))


class MosaicGPTBlock(GradientCheckpointingLayer):
    """Pre-norm block (gpt_blocks.py `GPTBlock`): `x + drop(attn(ln_1(x)))`, then `x + drop(mlp(ln_2(x)))`."""

    def __init__(self, config: MosaicGPTConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.ln_1 = _layer_norm(config)
        self.attn = MosaicGPTAttention(config, layer_idx)
        self.ln_2 = _layer_norm(config)
        self.mlp = MosaicGPTMLP(config)
        self.resid_attn_dropout = nn.Dropout(config.resid_pdrop)
        self.resid_mlp_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: torch.Tensor, attn_bias: torch.Tensor | None = None, cache: Cache | None = None,
                output_attentions: bool = False, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(hidden_states (B, S, D), attention weights (B, H, S, S_k) or None)."""
        attn_out, weights = self.attn(self.ln_1(hidden_states), attn_bias, cache=cache,
                                      output_attentions=output_attentions)
        hidden_states = hidden_states + self.resid_attn_dropout(attn_out)
        hidden_states = hidden_states + self.resid_mlp_dropout(self.mlp(self.ln_2(hidden_states)))
        return hidden_states, weights


@dataclass
class MosaicGPTModelOutput(ModelOutput):
    """Output of [`MosaicGPTModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(B, S, d_model)`): after `ln_f`.
        cache (`Cache`, *optional*): the KV cache (keys after QK LayerNorm), when `use_cache`.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): the input of each block, then the output of `ln_f`.
        attentions (`tuple(torch.FloatTensor)`, *optional*): each block's attention weights `(B, H, S, S_k)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MosaicGPTCausalLMOutput(ModelOutput):
    """Output of [`MosaicGPTForCausalLM`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): next-token cross-entropy (labels given, -100 ignored).
        logits (`torch.FloatTensor` of shape `(B, S, vocab_size)`): `ln_f(hidden) @ wte.T` (times `logit_scale`).
        cache (`Cache`, *optional*): the KV cache, when `use_cache`.
        hidden_states, attentions: as [`MosaicGPTModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class MosaicGPTPreTrainedModel(PreTrainedModel):
    """Initialisation, Auto-class plumbing and strict loading of MosaicGPT."""

    config_class = MosaicGPTConfig
    config: MosaicGPTConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MosaicGPTBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False  # the ALiBi bias is an additive mask, which flash kernels do not take
    _can_compile_fullgraph = False

    def _init_weights(self, module: nn.Module) -> None:
        # New weights only (loading overwrites them): normal(0, init_std) for Linear and Embedding, LayerNorm 1 / 0.
        # The original's kaiming_normal_ scheme is a training choice; it does not change what a checkpoint computes.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init_module(module, std=self.config.init_std, truncated=False)
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, strict: a weight of the file this model does not use (e.g. q_ln /
        k_ln weights under a config without `attn_qk_ln`), a weight the model needs that the file lacks, or a shape
        mismatch raises a `UserError` naming the keys, instead of transformers' warning."""
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True,
                                              **kwargs)
        problems = []
        for kind, what in (("unexpected_keys", "not used by"), ("missing_keys", "missing for"),
                           ("mismatched_keys", "of the wrong shape for")):
            keys = sorted(str(k) for k in (info.get(kind) or ()))
            if keys:
                problems.append(f"{len(keys)} weight(s) {what} {cls.__name__}: {keys[:10]}")
        if problems:
            raise UserError(
                f"{pretrained_model_name_or_path}: " + "; ".join(problems) + ". The file does not match its "
                "config.json (check attn_qk_ln, no_bias, alibi, n_layers, vocab_size)"
            )
        return (model, info) if wants_info else model


class MosaicGPTModel(MosaicGPTPreTrainedModel):
    """The MosaicGPT trunk: `wte` (+ `wpe` without ALiBi), the blocks and `ln_f` (the original's `transformer`)."""

    def __init__(self, config: MosaicGPTConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        if not config.alibi:
            self.wpe = nn.Embedding(config.max_seq_len, config.d_model)
        self.emb_drop = nn.Dropout(config.emb_pdrop)
        self.blocks = nn.ModuleList([MosaicGPTBlock(config, i) for i in range(config.n_layers)])
        self.ln_f = _layer_norm(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def _attn_bias(self, s_k: int, attention_mask: torch.Tensor | None, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor | None:
        """The additive bias of every block (mosaic_gpt.py `_attn_bias`): ALiBi (1, H, 1, max_seq_len) in the
        activations' dtype, then, with a mask, its last S_k keys with masked keys set to the dtype's minimum."""
        config = self.config
        bias = None
        if config.alibi:
            bias = torch.zeros(1, config.n_heads, 1, config.max_seq_len, dtype=dtype, device=device)
            bias = bias.add(alibi_bias(config.n_heads, config.max_seq_len, config.alibi_bias_max, dtype, device))
        if attention_mask is not None:
            if bias is None:
                bias = torch.zeros(1, 1, 1, s_k, dtype=dtype, device=device)
            else:
                bias = bias[:, :, :, -s_k:]
            bias = bias.masked_fill(~attention_mask.view(-1, 1, 1, s_k), torch.finfo(dtype).min)
        return bias

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> MosaicGPTModelOutput:
        """`input_ids` (B, S) (or `inputs_embeds` (B, S, D)); `attention_mask` (B, S_past + S), 1 / True = attend
        (any dtype: it is read as bool, the original's semantics); `cache` holds the earlier keys and values."""
        config = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise UserError("MosaicGPTModel needs exactly one of input_ids and inputs_embeds")
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else config.output_hidden_states)
        use_cache = use_cache if use_cache is not None else config.use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if use_cache and cache is None:
            cache = DynamicCache(config=config)
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, S, D)
        b, s = x.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        if past + s > config.max_seq_len:
            raise UserError(
                f"MosaicGPT sequence of {past + s} tokens ({past} cached + {s} new) exceeds max_seq_len="
                f"{config.max_seq_len}"
            )
        if attention_mask is not None:
            if attention_mask.ndim != 2 or attention_mask.shape[0] != b or attention_mask.shape[1] != past + s:
                raise UserError(
                    f"attention_mask must have shape (batch, cached + new tokens) = ({b}, {past + s}), got "
                    f"{tuple(attention_mask.shape)}"
                )
            attention_mask = attention_mask.bool()
        if not config.alibi:
            pos = torch.arange(past, past + s, dtype=torch.long, device=x.device).unsqueeze(0)
            if attention_mask is not None:  # positions skip the padding (mosaic_gpt.py forward)
                pos = torch.clamp(pos - torch.cumsum((~attention_mask).to(torch.int32), dim=1)[:, past:], min=0)
            x = x + self.wpe(pos)
        if config.embedding_fraction != 1:
            # GLM-130B's gradient shrink, written as the original writes it (the value differs from x by rounding).
            x = x * config.embedding_fraction + x.detach() * (1 - config.embedding_fraction)
        x = self.emb_drop(x)
        bias = self._attn_bias(past + s, attention_mask, x.dtype, x.device)
        all_hidden = () if output_hidden_states else None
        all_attn = () if output_attentions else None
        for block in self.blocks:
            if output_hidden_states:
                all_hidden += (x,)
            x, weights = block(x, attn_bias=bias, cache=cache, output_attentions=output_attentions)
            if output_attentions:
                all_attn += (weights,)
        x = self.ln_f(x)
        if output_hidden_states:
            all_hidden += (x,)
        return MosaicGPTModelOutput(last_hidden_state=x, cache=cache if use_cache else None, hidden_states=all_hidden,
                                    attentions=all_attn)


class MosaicGPTForCausalLM(MosaicGPTPreTrainedModel, GenerationMixin):
    """MosaicGPT with its tied output (`logits = ln_f(h) @ wte.T`, no `lm_head` weight), KV-cached `generate`."""

    def __init__(self, config: MosaicGPTConfig):
        super().__init__(config)
        self.transformer = MosaicGPTModel(config)
        logit_scale = config.logit_scale
        if logit_scale == "inv_sqrt_d_model":
            logit_scale = 1 / math.sqrt(config.d_model)
        self.logit_scale = logit_scale
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> None:
        """None: the output projection is the input embedding itself (resizing the embedding resizes both)."""
        return None

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> MosaicGPTCausalLMOutput:
        """Logits (B, S, vocab); with `labels` (B, S) (-100 ignored) the shifted next-token cross-entropy."""
        kwargs.pop("position_ids", None)  # ALiBi / the mask-derived positions; generate passes them anyway
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, cache=cache,
                               inputs_embeds=inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = F.linear(hidden, self.transformer.wte.weight)
        if self.logit_scale is not None:
            logits = logits * self.logit_scale
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return MosaicGPTCausalLMOutput(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states,
                                       attentions=out.attentions)
