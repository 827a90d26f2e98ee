"""Deprecated location (removed in 0.2): road-scene SFT is `trainers/roadscene_recipe.py` (`train_roadscene`),
its arguments `trainers/roadscene_config.py`, its collator `hf_vlmdrive.data.collators.AssistantOnlyVLMCollator`."""

from ..data.collators import AssistantOnlyVLMCollator
from ..data.collators import load_chat_image as _load_image
from .roadscene_config import RoadSceneSFTArguments
from .roadscene_recipe import build_model, load_processor, run_sft, train_roadscene

__all__ = ["AssistantOnlyVLMCollator", "RoadSceneSFTArguments", "_load_image", "build_model", "load_processor",
           "run_sft", "train_roadscene"]
