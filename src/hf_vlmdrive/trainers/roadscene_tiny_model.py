"""Deprecated location (removed in 0.2): the tiny SmolVLM2 builder lives in `hf_vlmdrive.testing.tiny_smolvlm`."""

from ..testing.tiny_smolvlm import SMOLVLM2_CHAT_TEMPLATE, build_tiny_smolvlm, train_tiny_tokenizer

__all__ = ["SMOLVLM2_CHAT_TEMPLATE", "build_tiny_smolvlm", "train_tiny_tokenizer"]
