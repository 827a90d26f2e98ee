"""Flamingo (OpenFlamingo 2.0.1 architecture) as a transformers model.

```
pixel_values (B, T_img, F, 3, H, W)
   |  CLIP vision tower (frozen): last_hidden_state[:, 1:]  (patch tokens, no CLS, no post-layernorm)
   v
(B, T_img, F, v, D_vis) -> PerceiverResampler -> media latents (B, T_img, n_latents, D_vis)
                                                        |  (computed once per forward / generate call)
input_ids (B, T_txt) -> LM embeddings                   v
   -> for each decoder layer i:  [GatedCrossAttentionBlock if (i+1) % n == 0]  ->  decoder layer i
   -> final norm -> LM head -> logits (B, T_txt, V)
```

Composition, not patching: the causal LM (`AutoModelForCausalLM.from_config(text_config)`, any family) keeps
its classes; its decoder-layer `ModuleList` (`config.decoder_layers_attr`) is replaced by a list of
[`FlamingoDecoderLayer`]s, each holding the original layer (`decoder_layer`) and its gated block
(`gated_cross_attn_layer`, or None). Parameter names therefore equal OpenFlamingo's
(`lang_encoder.model.layers.3.gated_cross_attn_layer.attn.to_q.weight` there,
`language_model.model.layers.3.gated_cross_attn_layer.attn.to_q.weight` here).

Media conditioning: before the LM runs, the model hands each wrapper the media latents and the per-token
"text time" (inclusive cumsum of `<image>` tokens, plus the images of earlier chunks during cached
generation, so new tokens attend to the last image of their row), and clears them afterwards. The gated
block receives them as arguments, so gradient checkpointing recomputes it correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...errors import UserError
from ..common.freezing import FreezingMixin
from ..common.gated_cross_attention import (
    GatedCrossAttentionBlock,
    PerceiverResampler,
    text_time_from_media_locations,
)
from ..common.init import init_module
from .configuration_flamingo import FlamingoConfig

__all__ = [
    "FlamingoCausalLMOutput",
    "FlamingoDecoderLayer",
    "FlamingoForConditionalGeneration",
    "FlamingoPreTrainedModel",
]


def _get_path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_path(obj, path: str, value) -> None:
    *head, last = path.split(".")
    for part in head:
        obj = getattr(obj, part)
    setattr(obj, last, value)


@dataclass
class FlamingoCausalLMOutput(ModelOutput):
    """Output of [`FlamingoForConditionalGeneration`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): next-token cross-entropy (labels given).
        logits (`torch.FloatTensor` of shape `(B, T_txt, vocab)`): LM logits.
        cache (`Cache`, *optional*): the LM's KV cache (self-attention only; the media are not cached).
        hidden_states, attentions: as the LM returns them when asked.
        image_features (`torch.FloatTensor` of shape `(B, T_img, num_latents, D_vis)`, *optional*): the media
            latents the cross-attention saw.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: object | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    image_features: torch.FloatTensor | None = None


class FlamingoDecoderLayer(nn.Module):
    """One LM decoder layer preceded by its gated cross-attention block (OpenFlamingo's `FlamingoLayer`).

    Called exactly like the wrapped layer (its arguments pass through unchanged); the media latents and text
    time are set by [`FlamingoForConditionalGeneration`] for the duration of one forward.
    """

    def __init__(self, gated_cross_attn_layer: GatedCrossAttentionBlock | None, decoder_layer: nn.Module):
        super().__init__()
        self.gated_cross_attn_layer = gated_cross_attn_layer
        self.decoder_layer = decoder_layer
        # Attributes some LM loops read from their layers (Qwen2 / Gemma: `attention_type`).
        for attr in ("attention_type", "layer_idx"):
            if hasattr(decoder_layer, attr):
                setattr(self, attr, getattr(decoder_layer, attr))
        self._media: torch.Tensor | None = None
        self._text_time: torch.Tensor | None = None

    def condition(self, media: torch.Tensor | None, text_time: torch.Tensor | None) -> None:
        """Set (or with None, clear) the media latents (B, T_img, n, D) and text time (B, T_txt)."""
        self._media, self._text_time = media, text_time

    def forward(self, *args, **kwargs):
        """`decoder_layer(gated_block(hidden_states), ...)`; every other argument passes through."""
        if self.gated_cross_attn_layer is not None:
            if args:
                hidden = self.gated_cross_attn_layer(args[0], self._media, self._text_time)
                args = (hidden, *args[1:])
            else:
                kwargs["hidden_states"] = self.gated_cross_attn_layer(
                    kwargs["hidden_states"], self._media, self._text_time
                )
        return self.decoder_layer(*args, **kwargs)


class FlamingoPreTrainedModel(FreezingMixin, PreTrainedModel):
    """Weight initialisation, freezing and Auto-class plumbing of the Flamingo family."""

    config_class = FlamingoConfig
    base_model_prefix = "flamingo"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["FlamingoDecoderLayer", "CLIPEncoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _can_compile_fullgraph = False

    def _init_weights(self, module: nn.Module) -> None:
        # Only this family's modules: the vision tower and the LM are PreTrainedModels and initialise (or load)
        # themselves. Gates start at 0 (an untrained model is the LM); latents ~ N(0, 1) as in OpenFlamingo.
        if isinstance(module, GatedCrossAttentionBlock):
            init.zeros_(module.attn_gate)
            init.zeros_(module.ff_gate)
        elif isinstance(module, PerceiverResampler):
            init.normal_(module.latents, std=1.0)
        elif isinstance(module, (nn.Linear, nn.LayerNorm)):
            init_module(module, std=0.02)


class FlamingoForConditionalGeneration(FlamingoPreTrainedModel, GenerationMixin):
    """Frozen CLIP tower + Perceiver resampler + a causal LM interleaved with gated cross-attention blocks.

    Inputs: `pixel_values` (B, T_img, F, 3, H, W) float (processor output), `input_ids` (B, T_txt) with one
    `<image>` token per image, `attention_mask` (B, T_txt), `labels` (B, T_txt) with -100 where ignored.
    """

    def __init__(self, config: FlamingoConfig, vision_model: PreTrainedModel | None = None,
                 language_model: PreTrainedModel | None = None):
        """`vision_model` / `language_model`: already loaded parts to use instead of building them from the
        config (`from_backbones` and the OpenFlamingo converter: no second copy of a large LM in memory)."""
        # A loaded part keeps the attention implementation it was loaded with (our __init__ would reset the
        # shared sub-config to the composite's unresolved value).
        kept = [(m.config, m.config._attn_implementation) for m in (vision_model, language_model) if m is not None]
        super().__init__(config)
        self.vision_model = vision_model if vision_model is not None else AutoModel.from_config(config.vision_config)
        self.perceiver = PerceiverResampler(
            dim=config.vision_hidden_size, depth=config.perceiver_depth, dim_head=config.perceiver_dim_head,
            heads=config.perceiver_heads, num_latents=config.perceiver_num_latents, ff_mult=config.perceiver_ff_mult,
        )
        loaded_parts = [m for m in (vision_model, language_model) if m is not None]
        if language_model is None:
            language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.language_model = language_model
        for part in loaded_parts:  # loaded weights: post_init must not initialise them again
            for module in part.modules():
                module._is_hf_initialized = True
            for tensor in (*part.parameters(), *part.buffers()):
                tensor._is_hf_initialized = True
        self._wrap_decoder_layers()
        self.post_init()
        for sub_config, implementation in kept:
            sub_config._attn_implementation_internal = implementation
        if config.end_of_chunk_token_id is not None and self.generation_config is not None:
            self.generation_config.eos_token_id = config.end_of_chunk_token_id  # `<|endofchunk|>` ends a reply
        self.apply_freezing()

    @classmethod
    def from_backbones(
        cls,
        vision: str,
        text: str,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        dtype: torch.dtype | None = None,
        tokenizer: Any = None,
        **config_kwargs: Any,
    ) -> FlamingoForConditionalGeneration:
        """A new (untrained: gates 0, so it equals the LM) Flamingo from a pretrained CLIP tower and causal LM.

        `vision`: Hub id / directory of a CLIP model or CLIP vision model; `text`: of a causal LM. The LM's
        tokenizer (`tokenizer`, else loaded from `text`) gets OpenFlamingo's special tokens and the embeddings are
        resized, as `create_model_and_transforms` does; pass the tokenizer of
        [`FlamingoProcessor.from_backbones`]`(vision, text)` (`processor.tokenizer`) so that the model and the
        processor share it (loading it twice gives the same ids). `revision` / `token` go to the Hub for both
        checkpoints, `dtype` is the dtype of the returned model's parameters (default: float32); `config_kwargs`
        go to [`FlamingoConfig`] (e.g. `cross_attn_every_n_layers=4`).
        """
        from transformers import AutoTokenizer, CLIPVisionModel

        from .processing_flamingo import add_flamingo_special_tokens

        hub = {"revision": revision, "token": token}
        dtype = torch.float32 if dtype is None else dtype
        tok = AutoTokenizer.from_pretrained(text, **hub) if tokenizer is None else tokenizer
        ids = add_flamingo_special_tokens(tok)
        lm = AutoModelForCausalLM.from_pretrained(text, dtype=dtype, **hub)
        lm.resize_token_embeddings(len(tok))
        tower = CLIPVisionModel.from_pretrained(vision, dtype=dtype, **hub)
        if tok.pad_token_id is not None and getattr(lm.config, "pad_token_id", None) is None:
            lm.config.pad_token_id = tok.pad_token_id
        config = FlamingoConfig(vision_config=tower.config, text_config=lm.config, **{**ids, **config_kwargs})
        model = cls(config, vision_model=tower, language_model=lm)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.to(dtype)  # the new parts (resampler, gated blocks) too
        model.apply_freezing()
        return model

    # ------------------------------------------------------------------ structure
    def _wrap_decoder_layers(self) -> None:
        config = self.config
        try:
            layers = _get_path(self.language_model, config.decoder_layers_attr)
        except AttributeError as err:
            raise UserError(
                f"FlamingoConfig.decoder_layers_attr={config.decoder_layers_attr!r} is not an attribute path of "
                f"{type(self.language_model).__name__}; give the dotted path of its decoder-layer ModuleList"
            ) from err
        if not isinstance(layers, nn.ModuleList) or len(layers) != config.num_text_layers:
            raise UserError(
                f"FlamingoConfig.decoder_layers_attr={config.decoder_layers_attr!r} is not the decoder-layer list "
                f"of {type(self.language_model).__name__} (expected a ModuleList of {config.num_text_layers} layers)"
            )
        with_block = set(config.cross_attn_layer_indices())
        wrapped = [
            FlamingoDecoderLayer(
                GatedCrossAttentionBlock(
                    dim=config.text_hidden_size, dim_visual=config.vision_hidden_size,
                    dim_head=config.cross_attn_dim_head, heads=config.cross_attn_heads,
                    ff_mult=config.cross_attn_ff_mult, only_attend_immediate_media=config.only_attend_immediate_media,
                ) if i in with_block else None,
                layer,
            )
            for i, layer in enumerate(layers)
        ]
        _set_path(self.language_model, config.decoder_layers_attr, nn.ModuleList(wrapped))

    @property
    def flamingo_layers(self) -> nn.ModuleList:
        """The LM's decoder layers, each a [`FlamingoDecoderLayer`]."""
        return _get_path(self.language_model, self.config.decoder_layers_attr)

    @property
    def gated_cross_attn_layers(self) -> list[GatedCrossAttentionBlock]:
        """The gated cross-attention blocks, in layer order."""
        return [layer.gated_cross_attn_layer for layer in self.flamingo_layers if layer.gated_cross_attn_layer is not None]

    def frozen_parameter_patterns(self) -> list[str]:
        """Vision tower (`freeze_vision`), the LM's own weights (`freeze_language_model`; the gated blocks and,
        with `train_lm_embeddings`, the input embeddings stay trainable)."""
        patterns = []
        if self.config.freeze_vision:
            patterns.append("vision_model.*")
        if self.config.freeze_language_model:
            lm_params = [f"language_model.{n}" for n, _ in self.language_model.named_parameters()
                         if ".gated_cross_attn_layer." not in f".{n}"]
            if self.config.train_lm_embeddings:
                emb = self.language_model.get_input_embeddings()
                emb_names = {f"language_model.{n}" for n, p in self.language_model.named_parameters()
                             if any(p is q for q in emb.parameters())}
                lm_params = [n for n in lm_params if n not in emb_names]
            patterns.extend(lm_params)
        return patterns

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def resize_token_embeddings(self, *args, **kwargs):
        """Resize the LM's embeddings (and tied head) and keep `text_config.vocab_size` in step."""
        out = self.language_model.resize_token_embeddings(*args, **kwargs)
        self.config.text_config.vocab_size = self.language_model.config.vocab_size
        return out

    # ------------------------------------------------------------------ vision
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, T_img, F, 3, H, W) -> media latents (B, T_img, num_latents, D_vis)."""
        if pixel_values.ndim != 6 or pixel_values.shape[3] != 3:
            raise UserError(
                f"pixel_values must have shape (B, T_img, F, 3, H, W), got {tuple(pixel_values.shape)}"
            )
        b, t, f = pixel_values.shape[:3]
        dtype = next(self.vision_model.parameters()).dtype
        flat = pixel_values.reshape(b * t * f, *pixel_values.shape[3:]).to(dtype)
        frozen = not any(p.requires_grad for p in self.vision_model.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            hidden = self.vision_model(pixel_values=flat).last_hidden_state  # before post_layernorm
        tokens = hidden[:, 1:]  # drop CLS: (b*T*F, v, D)
        tokens = tokens.reshape(b, t, f, *tokens.shape[1:])  # (B, T_img, F, v, D)
        return self.perceiver(tokens)

    # ------------------------------------------------------------------ forward
    def _condition(self, media: torch.Tensor | None, text_time: torch.Tensor | None) -> None:
        for layer in self.flamingo_layers:
            layer.condition(media, text_time)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        image_features: torch.FloatTensor | None = None,
        num_prior_images: torch.LongTensor | None = None,
        cache=None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> FlamingoCausalLMOutput:
        """Run the LM with cross-attention to the media; `image_features` (from `get_image_features`) skips the
        vision tower; `num_prior_images` (B,) counts `<image>` tokens already in the KV cache."""
        if input_ids is None:
            raise UserError("FlamingoForConditionalGeneration needs input_ids (the <image> tokens locate the media)")
        if pixel_values is not None and image_features is None:
            image_features = self.get_image_features(pixel_values)
        if image_features is not None and image_features.shape[0] != input_ids.shape[0]:
            raise UserError(
                f"pixel_values / image_features have batch size {image_features.shape[0]} but input_ids has "
                f"{input_ids.shape[0]}"
            )
        media_id = self.config.media_token_id
        media_locations = (input_ids == media_id) if media_id is not None else torch.zeros_like(input_ids, dtype=torch.bool)
        text_time = text_time_from_media_locations(media_locations, num_prior_images)
        if image_features is not None and num_prior_images is None:
            # (During generation a generated <image> has no picture: its text time then exceeds T_img, every
            # score is masked alike and the token attends uniformly to all media, as OpenFlamingo's masking
            # formula gives. A prompt must bring one image per <image> token.)
            most = int(text_time.max()) if text_time.numel() else 0
            if most > image_features.shape[1]:
                raise UserError(
                    f"input_ids hold {most} <image> tokens in a row but only {image_features.shape[1]} images per "
                    "row were given (pixel_values dim 1); give one image per <image> token"
                )
        if image_features is None and bool(media_locations.any()):
            raise UserError("input_ids contain <image> tokens but no pixel_values (or image_features) were given")
        self._condition(image_features, text_time if image_features is not None else None)
        try:
            out = self.language_model(
                input_ids=input_ids, attention_mask=attention_mask, labels=labels, cache=cache, use_cache=use_cache,
                **kwargs,
            )
        finally:
            self._condition(None, None)
        return FlamingoCausalLMOutput(
            loss=out.loss, logits=out.logits, cache=getattr(out, "cache", None),
            hidden_states=getattr(out, "hidden_states", None), attentions=getattr(out, "attentions", None),
            image_features=image_features,
        )

    # ------------------------------------------------------------------ generation
    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        """The LM's inputs for one step, plus the media latents and the `<image>` count of the cached prefix."""
        model_inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        model_inputs.pop("pixel_values", None)  # the media latents are computed once, in generate()
        step_len = model_inputs["input_ids"].shape[1]
        prior = input_ids[:, : input_ids.shape[1] - step_len]
        model_inputs["num_prior_images"] = (prior == self.config.media_token_id).sum(-1)
        model_inputs["image_features"] = kwargs.get("image_features")
        return model_inputs

    @torch.no_grad()
    def generate(self, input_ids=None, pixel_values=None, attention_mask=None, image_features=None, **kwargs):
        """`GenerationMixin.generate` with the media latents computed once for the batch (then repeated per beam
        by `generate` itself); stops at `<|endofchunk|>` by default (the saved generation config's eos)."""
        if pixel_values is not None and image_features is None:
            image_features = self.get_image_features(pixel_values)
        if "eos_token_id" not in kwargs and self.generation_config.eos_token_id is None:
            kwargs["eos_token_id"] = self.config.end_of_chunk_token_id
        return super().generate(
            input_ids=input_ids, attention_mask=attention_mask, image_features=image_features, **kwargs
        )

    def default_generation_config(self) -> GenerationConfig:
        """`<|endofchunk|>` as eos, the LM's pad / bos ids, beam search 3 (the reference inference setting)."""
        return GenerationConfig(
            eos_token_id=self.config.end_of_chunk_token_id,
            pad_token_id=getattr(self.config.text_config, "pad_token_id", None),
            bos_token_id=getattr(self.config.text_config, "bos_token_id", None),
            num_beams=3,
            max_new_tokens=128,
        )
