"""MosaicGPT (MosaicML's MPT-1B-RedPajama-200b architecture, model_type "mosaic_gpt"), natively: OpenFlamingo-3B's
language model, loadable from its Hub folder without remote code.

The names below are imported on first access (PEP 562): `MosaicGPTConfig` does not import the modeling code.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "MPT_1B_REDPAJAMA": ".configuration_mosaic_gpt",
    "MosaicGPTConfig": ".configuration_mosaic_gpt",
    "MosaicGPTBlock": ".modeling_mosaic_gpt",
    "MosaicGPTCausalLMOutput": ".modeling_mosaic_gpt",
    "MosaicGPTForCausalLM": ".modeling_mosaic_gpt",
    "MosaicGPTModel": ".modeling_mosaic_gpt",
    "MosaicGPTModelOutput": ".modeling_mosaic_gpt",
    "MosaicGPTPreTrainedModel": ".modeling_mosaic_gpt",
    "alibi_slopes": ".modeling_mosaic_gpt",
}

__all__ = list(_LAZY_ATTRS)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
