"""Configuration of MosaicGPT, the architecture of MPT-1B-RedPajama-200b (OpenFlamingo-3B's language model).

The fields are those of the released `config.json` (model_type "mosaic_gpt"), written by MosaicML's remote code
(github mosaicml/examples, tag v0.0.4, `examples/llm/src/models/mosaic_gpt/configuration_mosaic_gpt.py`), so a Hub
folder loads with this class and no `trust_remote_code`. The defaults are MPT-1B-RedPajama-200b's own values.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from ...errors import UserError

__all__ = ["MPT_1B_REDPAJAMA", "MosaicGPTConfig"]

_ATTN_IMPLS = ("torch", "triton", "flash")
_INIT_FNS = ("default_", "baseline_", "kaiming_uniform_", "kaiming_normal_", "neox_init_", "small_init_",
             "xavier_uniform_", "xavier_normal_")


class MosaicGPTConfig(PretrainedConfig):
    r"""Configuration of [`MosaicGPTModel`] / [`MosaicGPTForCausalLM`] (MosaicML's MosaicGPT as MPT-1B uses it).

    ```
    input_ids -> wte (tied output) -> [block: x + attn(norm_1(x)); x + mlp(norm_2(x))] x n_layers -> ln_f
              -> logits = hidden @ wte.T (* logit_scale)
    attn: Wqkv -> (clip) -> q, k, v -> q_ln(q), k_ln(k) over the full width -> heads -> softmax(qk * scale + ALiBi)
    ```

    Args:
        d_model (`int`, *optional*, defaults to 2048):
            Width of the residual stream (`hidden_size`).
        n_heads (`int`, *optional*, defaults to 16):
            Attention heads; `d_model` must be divisible by it.
        n_layers (`int`, *optional*, defaults to 24):
            Transformer blocks.
        mlp_ratio (`int`, *optional*, defaults to 4):
            Width of the MLP relative to `d_model`.
        max_seq_len (`int`, *optional*, defaults to 2048):
            Longest sequence (prompt plus cache); the ALiBi bias is built for this many keys.
        vocab_size (`int`, *optional*, defaults to 50432):
            Rows of the (tied) token embedding.
        attn_pdrop (`float`, *optional*, defaults to 0.0):
            Dropout on the attention weights.
        resid_pdrop (`float`, *optional*, defaults to 0.0):
            Dropout on the attention and MLP outputs before each residual sum.
        emb_pdrop (`float`, *optional*, defaults to 0.0):
            Dropout on the token embeddings.
        attn_impl (`str`, *optional*, defaults to `"torch"`):
            The original's attention kernel ("torch", "triton", "flash"); recorded only: this implementation
            computes the "torch" kernel's math (`attn_implementation="eager"`, the default here) or the same with
            SDPA (`attn_implementation="sdpa"`, opt-in).
        attn_qk_ln (`bool`, *optional*, defaults to `True`):
            LayerNorm (`q_ln`, `k_ln`) on the queries and keys over the full `d_model` width, before the head split.
        attn_clip_qkv (`float`, *optional*):
            Clamp the fused q, k, v projection to [-attn_clip_qkv, attn_clip_qkv] (None or 0: no clamp).
        softmax_scale (`float`, *optional*):
            Scale of the attention scores; None means 1 / sqrt(d_model / n_heads).
        prefix_lm (`bool`, *optional*, defaults to `False`):
            The original's prefix-LM mode (bidirectional prefix); not implemented here, must be False.
        attn_uses_sequence_id (`bool`, *optional*, defaults to `False`):
            The original's packed-sequence masking; not implemented here, must be False.
        alibi (`bool`, *optional*, defaults to `True`):
            ALiBi bias instead of learned positions (False adds a `wpe` position embedding of `max_seq_len` rows).
        alibi_bias_max (`int`, *optional*, defaults to 8):
            Head h (0-based) gets the slope 2^-((h + 1) * alibi_bias_max / n_heads).
        init_device (`str`, *optional*, defaults to `"cpu"`):
            The original's construction device; recorded only.
        logit_scale (`float` or `str`, *optional*):
            Multiply the logits by this value, or by 1 / sqrt(d_model) for "inv_sqrt_d_model"; None: no scaling.
        no_bias (`bool`, *optional*, defaults to `True`):
            No bias in any Linear or LayerNorm.
        verbose (`int`, *optional*, defaults to 0):
            The original's print verbosity; recorded only.
        param_init_fn (`str`, *optional*, defaults to `"kaiming_normal_"`):
            The original's initialisation scheme; recorded (new weights here are normal(0, `init_std`)).
        init_div_is_residual (`bool`, `int`, `float` or `str`, *optional*, defaults to `True`):
            The original's residual init divisor; recorded only.
        init_std (`float`, *optional*, defaults to 0.02):
            Standard deviation of newly initialised Linear and Embedding weights.
        emb_init_std (`float`, *optional*):
            The original's embedding init std; recorded only.
        emb_init_uniform_lim (`float` or `list`, *optional*):
            The original's uniform embedding init limits; recorded only.
        init_gain (`float`, *optional*, defaults to 0.0):
            The original's kaiming / xavier gain; recorded only.
        fan_mode (`str`, *optional*, defaults to `"fan_in"`):
            The original's kaiming fan mode; recorded only.
        init_nonlinearity (`str`, *optional*, defaults to `"relu"`):
            The original's kaiming nonlinearity; recorded only.
        embedding_fraction (`float`, *optional*, defaults to 1.0):
            GLM-130B's embedding gradient shrink: the embedding output is `x * f + x.detach() * (1 - f)`.
        low_precision_layernorm (`bool`, *optional*, defaults to `True`):
            The original's `LPLayerNorm`: under autocast, the LayerNorm runs in the autocast dtype (its input and
            weights cast down); outside autocast a plain LayerNorm.
        use_cache (`bool`, *optional*, defaults to `False`):
            Return the KV cache from `forward` by default (`generate` uses it regardless).
        tokenizer_name (`str`, *optional*):
            The tokenizer the released model was trained with (MPT-1B: "EleutherAI/gpt-neox-20b"); informative.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of every LayerNorm (the original's fixed default).
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Always True: the output projection is the token embedding.
    """

    model_type = "mosaic_gpt"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "max_position_embeddings": "max_seq_len",
    }

    def __init__(
        self,
        d_model: int = 2048,
        n_heads: int = 16,
        n_layers: int = 24,
        mlp_ratio: int = 4,
        max_seq_len: int = 2048,
        vocab_size: int = 50432,
        attn_pdrop: float = 0.0,
        resid_pdrop: float = 0.0,
        emb_pdrop: float = 0.0,
        attn_impl: str = "torch",
        attn_qk_ln: bool = True,
        attn_clip_qkv: float | None = None,
        softmax_scale: float | None = None,
        prefix_lm: bool = False,
        attn_uses_sequence_id: bool = False,
        alibi: bool = True,
        alibi_bias_max: int = 8,
        init_device: str = "cpu",
        logit_scale: float | str | None = None,
        no_bias: bool = True,
        verbose: int = 0,
        param_init_fn: str = "kaiming_normal_",
        init_div_is_residual: bool | int | float | str = True,
        init_std: float = 0.02,
        emb_init_std: float | None = None,
        emb_init_uniform_lim: float | list[float] | None = None,
        init_gain: float = 0.0,
        fan_mode: str = "fan_in",
        init_nonlinearity: str = "relu",
        embedding_fraction: float = 1.0,
        low_precision_layernorm: bool = True,
        use_cache: bool = False,
        tokenizer_name: str | None = None,
        layer_norm_eps: float = 1e-5,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        # The Hub config.json points at the remote code (`auto_map`); this class replaces it, so the pointer is
        # dropped (a saved config must not send transformers looking for files that are not there). `name` and
        # `loss_fn` are training-yaml keys the original also discards.
        for key in ("auto_map", "name", "loss_fn"):
            kwargs.pop(key, None)
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.mlp_ratio = mlp_ratio
        self.max_seq_len = max_seq_len
        self.vocab_size = vocab_size
        self.attn_pdrop = attn_pdrop
        self.resid_pdrop = resid_pdrop
        self.emb_pdrop = emb_pdrop
        self.attn_impl = attn_impl
        self.attn_qk_ln = attn_qk_ln
        self.attn_clip_qkv = attn_clip_qkv
        self.softmax_scale = softmax_scale
        self.prefix_lm = prefix_lm
        self.attn_uses_sequence_id = attn_uses_sequence_id
        self.alibi = alibi
        self.alibi_bias_max = alibi_bias_max
        self.init_device = init_device
        self.logit_scale = logit_scale
        self.no_bias = no_bias
        self.verbose = verbose
        self.param_init_fn = param_init_fn
        self.init_div_is_residual = init_div_is_residual
        self.init_std = init_std
        self.emb_init_std = emb_init_std
        self.emb_init_uniform_lim = emb_init_uniform_lim
        self.init_gain = init_gain
        self.fan_mode = fan_mode
        self.init_nonlinearity = init_nonlinearity
        self.embedding_fraction = embedding_fraction
        self.low_precision_layernorm = low_precision_layernorm
        self.use_cache = use_cache
        self.tokenizer_name = tokenizer_name
        self.layer_norm_eps = layer_norm_eps
        if tie_word_embeddings is False:
            raise UserError(
                "MosaicGPTConfig.tie_word_embeddings=False: MosaicGPT has no separate output projection (logits "
                "are hidden @ wte.T); leave it True"
            )
        # Eager attention unless asked otherwise: it is the original's "torch" kernel operation for operation,
        # gradients included. SDPA (`attn_implementation="sdpa"`) gives the same outputs within float rounding, but
        # in a row whose every key is masked (a left-pad query) it lets gradient reach the future keys, which the
        # original's causal fill blocks (only seen when a loss reads pad positions).
        if kwargs.get("attn_implementation") is None:
            kwargs["attn_implementation"] = "eager"
        super().__init__(tie_word_embeddings=True, **kwargs)
        self._validate()

    def _validate(self) -> None:
        for name in ("d_model", "n_heads", "n_layers", "mlp_ratio", "max_seq_len", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"MosaicGPTConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise UserError(
                f"MosaicGPTConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        for name in ("attn_pdrop", "resid_pdrop", "emb_pdrop"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise UserError(f"MosaicGPTConfig.{name} is a probability in [0, 1], got {value!r}")
        if self.attn_impl not in _ATTN_IMPLS:
            raise UserError(f"MosaicGPTConfig.attn_impl must be one of {_ATTN_IMPLS}, got {self.attn_impl!r}")
        if self.alibi and self.attn_impl == "flash":
            raise UserError("MosaicGPTConfig.attn_impl='flash' with alibi=True: the original refuses it (no bias in "
                            "its flash kernel); use attn_impl='torch'")
        for name in ("prefix_lm", "attn_uses_sequence_id"):
            if getattr(self, name):
                raise UserError(
                    f"MosaicGPTConfig.{name}={getattr(self, name)!r} is not implemented (MPT-1B does not use it); "
                    "set it to False"
                )
        if not isinstance(self.embedding_fraction, (int, float)) or not 0 < self.embedding_fraction <= 1:
            raise UserError(
                f"MosaicGPTConfig.embedding_fraction must be in (0, 1], got {self.embedding_fraction!r}"
            )
        if isinstance(self.logit_scale, str) and self.logit_scale != "inv_sqrt_d_model":
            raise UserError(
                f"MosaicGPTConfig.logit_scale={self.logit_scale!r} is not recognized; use a number or "
                "'inv_sqrt_d_model'"
            )
        if self.attn_clip_qkv is not None and (not isinstance(self.attn_clip_qkv, (int, float))
                                               or self.attn_clip_qkv < 0):
            raise UserError(f"MosaicGPTConfig.attn_clip_qkv must be None or a number >= 0, got {self.attn_clip_qkv!r}")
        if self.softmax_scale is not None and not isinstance(self.softmax_scale, (int, float)):
            raise UserError(f"MosaicGPTConfig.softmax_scale must be None or a number, got {self.softmax_scale!r}")
        if self.param_init_fn not in _INIT_FNS:
            raise UserError(f"MosaicGPTConfig.param_init_fn must be one of {_INIT_FNS}, got {self.param_init_fn!r}")


# The released mosaicml/mpt-1b-redpajama-200b config.json (its non-default-free fields), as OpenFlamingo-3B loads it.
MPT_1B_REDPAJAMA = dict(
    d_model=2048, n_heads=16, n_layers=24, mlp_ratio=4, max_seq_len=2048, vocab_size=50432, alibi=True,
    alibi_bias_max=8, attn_qk_ln=True, attn_clip_qkv=None, softmax_scale=None, attn_impl="torch", no_bias=True,
    low_precision_layernorm=True, logit_scale=None, embedding_fraction=1.0, attn_pdrop=0.0, resid_pdrop=0.0,
    emb_pdrop=0.0, use_cache=False, tokenizer_name="EleutherAI/gpt-neox-20b",
)
