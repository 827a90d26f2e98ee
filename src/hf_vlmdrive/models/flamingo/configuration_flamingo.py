"""Configuration of the Flamingo family (OpenFlamingo 2.0.1 architecture): CLIP tower + Perceiver resampler +
any decoder-only causal LM with gated cross-attention blocks."""

from __future__ import annotations

from transformers import AutoConfig, PretrainedConfig

from ...errors import UserError
from ..common.config_utils import resolve_vision_config

# Where each LM family keeps its decoder-layer list, relative to the `*ForCausalLM` model
# (OpenFlamingo's factory.py `__KNOWN_DECODER_LAYERS_ATTR_NAMES`, for transformers' native classes).
DECODER_LAYERS_ATTR = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma": "model.layers",
    "phi3": "model.layers",
    "smollm3": "model.layers",
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
    "mpt": "transformer.blocks",
    "mosaic_gpt": "transformer.blocks",  # MPT-1B's MosaicGPT (hf_vlmdrive.models.mosaic_gpt), OpenFlamingo-3B's LM
    "gptj": "transformer.h",
    "gpt2": "transformer.h",
}

# OpenFlamingo-3B's vision tower: open_clip ViT-L-14 "openai" (OpenAI's CLIP ViT-L/14 at 224 px, QuickGELU), as
# transformers' `clip_vision_model` (the values of openai/clip-vit-large-patch14's vision_config).
CLIP_VIT_L_14 = dict(
    model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
    num_attention_heads=16, image_size=224, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    projection_dim=768,
)
# OpenFlamingo-3B's tokenizer: gpt-neox-20b's 50277 tokens + <|endofchunk|>, <image>, <PAD> (the factory's resize).
OPEN_FLAMINGO_3B_VOCAB_SIZE = 50280


def _default_text_config() -> PretrainedConfig:
    """MPT-1B-RedPajama-200b (MosaicGPT) with the embedding resized to OpenFlamingo's 50280 tokens."""
    from ..mosaic_gpt.configuration_mosaic_gpt import MPT_1B_REDPAJAMA, MosaicGPTConfig

    return MosaicGPTConfig(**{**MPT_1B_REDPAJAMA, "vocab_size": OPEN_FLAMINGO_3B_VOCAB_SIZE})


class FlamingoConfig(PretrainedConfig):
    r"""Configuration of [`FlamingoForConditionalGeneration`].

    ```
    pixel_values (B, T_img, F, 3, H, W) -> CLIP tower -> patch tokens before the post-layernorm, no CLS
        -> Perceiver resampler -> media latents (B, T_img, num_latents, D_vis)
    input_ids (B, T_txt) -> LM embeddings -> [gated xattn block (every n-th layer)] -> decoder layer -> ... -> logits
    ```

    With no arguments it is OpenFlamingo-3B: CLIP ViT-L/14 (`CLIP_VIT_L_14`), MPT-1B-RedPajama-200b
    (`MosaicGPTConfig`, embeddings resized to 50280 tokens), cross-attention before every layer and
    OpenFlamingo's resampler / gated-block defaults (the token ids stay None: they come from the tokenizer).

    Args:
        vision_config (`dict` or `PretrainedConfig`, *optional*):
            The vision tower, a `clip_vision_model` config; defaults to CLIP ViT-L/14 (OpenFlamingo: open_clip
            ViT-L-14 "openai" with QuickGELU, i.e. `hidden_act="quick_gelu"`).
        text_config (`dict` or `PretrainedConfig`, *optional*):
            Any decoder-only causal LM config transformers builds with `AutoModelForCausalLM` (Llama, GPT-NeoX,
            MPT, Qwen2, OPT, MosaicGPT, ...). Defaults to MPT-1B-RedPajama-200b (`model_type` "mosaic_gpt").
        decoder_layers_attr (`str`, *optional*):
            Dotted path of the decoder-layer `ModuleList` inside the causal LM; inferred from
            `text_config.model_type` (see `DECODER_LAYERS_ATTR`) when not given.
        cross_attn_every_n_layers (`int`, *optional*, defaults to 1):
            A gated cross-attention block runs before decoder layer `i` iff `(i + 1) % n == 0`.
        perceiver_depth (`int`, *optional*, defaults to 6):
            Layers of the Perceiver resampler.
        perceiver_num_latents (`int`, *optional*, defaults to 64):
            Latents (tokens) per media.
        perceiver_heads (`int`, *optional*, defaults to 8):
            Attention heads of the resampler.
        perceiver_dim_head (`int`, *optional*, defaults to 64):
            Width of each resampler head.
        perceiver_ff_mult (`float`, *optional*, defaults to 4):
            FF width of the resampler relative to the vision width.
        cross_attn_heads (`int`, *optional*, defaults to 8):
            Heads of the gated cross-attention.
        cross_attn_dim_head (`int`, *optional*, defaults to 64):
            Width of each cross-attention head.
        cross_attn_ff_mult (`float`, *optional*, defaults to 4):
            FF width of the gated blocks relative to the LM width.
        only_attend_immediate_media (`bool`, *optional*, defaults to `True`):
            A text token sees only the latest `<image>` at or before it (otherwise every earlier one).
        media_token_id (`int`, *optional*):
            Id of `<image>` in the tokenizer.
        end_of_chunk_token_id (`int`, *optional*):
            Id of `<|endofchunk|>` (the default end of generation).
        freeze_vision (`bool`, *optional*, defaults to `True`):
            Keep the vision tower frozen (OpenFlamingo always does).
        freeze_language_model (`bool`, *optional*, defaults to `True`):
            Keep the LM's own weights frozen (only the resampler and the gated blocks train).
        train_lm_embeddings (`bool`, *optional*, defaults to `False`):
            Train the LM input embeddings too (OpenFlamingo's default unless `--freeze_lm_embeddings`); the
            recipe can restrict their gradients to the new token rows.
    """

    model_type = "flamingo"
    sub_configs = {"vision_config": PretrainedConfig, "text_config": PretrainedConfig}

    def __init__(
        self,
        vision_config: dict | PretrainedConfig | None = None,
        text_config: dict | PretrainedConfig | None = None,
        decoder_layers_attr: str | None = None,
        cross_attn_every_n_layers: int = 1,
        perceiver_depth: int = 6,
        perceiver_num_latents: int = 64,
        perceiver_heads: int = 8,
        perceiver_dim_head: int = 64,
        perceiver_ff_mult: float = 4,
        cross_attn_heads: int = 8,
        cross_attn_dim_head: int = 64,
        cross_attn_ff_mult: float = 4,
        only_attend_immediate_media: bool = True,
        media_token_id: int | None = None,
        end_of_chunk_token_id: int | None = None,
        freeze_vision: bool = True,
        freeze_language_model: bool = True,
        train_lm_embeddings: bool = False,
        **kwargs,
    ):
        if vision_config is None:
            vision_config = dict(CLIP_VIT_L_14)
        self.vision_config = resolve_vision_config(vision_config, default_type="clip_vision_model", field="vision_config")
        if text_config is None:
            text_config = _default_text_config()
        if isinstance(text_config, dict):
            text_kwargs = dict(text_config)
            text_type = text_kwargs.pop("model_type", "llama")
            if text_type == "mosaic_gpt":  # ours: no reliance on the Auto registration having run
                from ..mosaic_gpt.configuration_mosaic_gpt import MosaicGPTConfig

                text_config = MosaicGPTConfig(**text_kwargs)
            else:
                try:
                    text_config = AutoConfig.for_model(text_type, **text_kwargs)
                except ValueError as err:
                    raise UserError(
                        f"FlamingoConfig.text_config.model_type={text_type!r} is not a model type transformers "
                        f"knows; use a causal LM type such as {sorted(DECODER_LAYERS_ATTR)}"
                    ) from err
        self.text_config = text_config
        if decoder_layers_attr is None:
            decoder_layers_attr = DECODER_LAYERS_ATTR.get(self.text_config.model_type)
            if decoder_layers_attr is None:
                raise UserError(
                    f"FlamingoConfig.decoder_layers_attr: no default for text_config.model_type="
                    f"{self.text_config.model_type!r}; pass the dotted path of its decoder-layer list "
                    "(e.g. 'model.layers')"
                )
        self.decoder_layers_attr = decoder_layers_attr
        self.cross_attn_every_n_layers = cross_attn_every_n_layers
        self.perceiver_depth = perceiver_depth
        self.perceiver_num_latents = perceiver_num_latents
        self.perceiver_heads = perceiver_heads
        self.perceiver_dim_head = perceiver_dim_head
        self.perceiver_ff_mult = perceiver_ff_mult
        self.cross_attn_heads = cross_attn_heads
        self.cross_attn_dim_head = cross_attn_dim_head
        self.cross_attn_ff_mult = cross_attn_ff_mult
        self.only_attend_immediate_media = only_attend_immediate_media
        self.media_token_id = media_token_id
        self.end_of_chunk_token_id = end_of_chunk_token_id
        self.freeze_vision = freeze_vision
        self.freeze_language_model = freeze_language_model
        self.train_lm_embeddings = train_lm_embeddings
        # Sub-configs of loaded models keep their attention implementation (the composite's unset value would
        # otherwise be copied into them).
        kept = [(c, getattr(c, "_attn_implementation_internal", None)) for c in (self.vision_config, self.text_config)]
        super().__init__(**kwargs)
        for sub_config, implementation in kept:
            if implementation is not None and getattr(sub_config, "_attn_implementation_internal", None) is None:
                sub_config._attn_implementation_internal = implementation
        for name in ("cross_attn_every_n_layers", "perceiver_depth", "perceiver_num_latents", "perceiver_heads",
                     "perceiver_dim_head", "cross_attn_heads", "cross_attn_dim_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"FlamingoConfig.{name} must be a positive integer, got {value!r}")
        for name in ("perceiver_ff_mult", "cross_attn_ff_mult"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise UserError(f"FlamingoConfig.{name} must be a positive number, got {value!r}")
        if self.cross_attn_every_n_layers > self.num_text_layers:
            raise UserError(
                f"FlamingoConfig.cross_attn_every_n_layers={self.cross_attn_every_n_layers} exceeds the LM's "
                f"{self.num_text_layers} layers: no gated cross-attention block would be built"
            )
        for name in ("media_token_id", "end_of_chunk_token_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise UserError(f"FlamingoConfig.{name} must be a token id (int >= 0) or None, got {value!r}")

    @property
    def num_text_layers(self) -> int:
        """Decoder layers of the LM (`num_hidden_layers`, or MPT's `n_layers`)."""
        for attr in ("num_hidden_layers", "n_layers", "n_layer"):
            value = getattr(self.text_config, attr, None)
            if value is not None:
                return int(value)
        raise UserError(f"text_config ({self.text_config.model_type}) has no num_hidden_layers / n_layers")

    @property
    def text_hidden_size(self) -> int:
        """Width of the LM (`hidden_size`, or MPT's `d_model`)."""
        for attr in ("hidden_size", "d_model", "n_embd"):
            value = getattr(self.text_config, attr, None)
            if value is not None:
                return int(value)
        raise UserError(f"text_config ({self.text_config.model_type}) has no hidden_size / d_model")

    @property
    def vision_hidden_size(self) -> int:
        """Width of the vision tokens (= the resampler width; OpenFlamingo's `vis_dim`)."""
        return int(self.vision_config.hidden_size)

    def cross_attn_layer_indices(self) -> list[int]:
        """Indices of the decoder layers preceded by a gated cross-attention block."""
        n = self.cross_attn_every_n_layers
        return [i for i in range(self.num_text_layers) if (i + 1) % n == 0]


__all__ = ["CLIP_VIT_L_14", "DECODER_LAYERS_ATTR", "OPEN_FLAMINGO_3B_VOCAB_SIZE", "FlamingoConfig"]
