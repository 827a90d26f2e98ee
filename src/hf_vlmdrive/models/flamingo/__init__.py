"""Flamingo (OpenFlamingo 2.0.1 architecture, SPEC 1.3): CLIP tower + Perceiver resampler + a causal LM with
gated cross-attention blocks.

The names below are imported on first access (PEP 562): `FlamingoConfig` does not import the modeling code.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "DECODER_LAYERS_ATTR": ".configuration_flamingo",
    "FlamingoConfig": ".configuration_flamingo",
    "FlamingoCausalLMOutput": ".modeling_flamingo",
    "FlamingoDecoderLayer": ".modeling_flamingo",
    "FlamingoForConditionalGeneration": ".modeling_flamingo",
    "FlamingoPreTrainedModel": ".modeling_flamingo",
    "FlamingoProcessor": ".processing_flamingo",
}

__all__ = list(_LAZY_ATTRS)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
