"""RoboVLM policy (SPEC 1.4): a VLM backbone (Kosmos-2) + learnable action token + LSTM / MLP / GPT policy head.

The names below are imported on first access (PEP 562): `RoboVLMConfig` does not import the modeling code.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "RoboVLMConfig": ".configuration_robovlm",
    "HEAD_TYPES": ".configuration_robovlm",
    "SUPPORTED_BACKBONES": ".configuration_robovlm",
    "ADAPTERS": ".adapters",
    "BackboneAdapter": ".adapters",
    "Kosmos2Adapter": ".adapters",
    "RoboVLMForActionPrediction": ".modeling_robovlm",
    "RoboVLMOutput": ".modeling_robovlm",
    "RoboVLMPreTrainedModel": ".modeling_robovlm",
    "LSTMPolicyHead": ".heads",
    "MLPPolicyHead": ".heads",
    "GPTPolicyHead": ".heads",
    "RoboVLMProcessor": ".processing_robovlm",
    "DEFAULT_PROMPT_TEMPLATE": ".processing_robovlm",
}

__all__ = list(_LAZY_ATTRS)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
