"""`hf-vlmdrive train robovlm` and `hf-vlmdrive convert robovlms` (RoboVLM policy, SPEC 1.4)."""

from __future__ import annotations


def _train(argv: list[str]) -> int:
    from ..trainers.robovlm_recipe import main

    main(argv)
    return 0


def _convert(argv: list[str]) -> int:
    from ..models.robovlm.convert_robovlms import main

    return main(argv)


def register(registry) -> None:
    """Add the RoboVLM commands."""
    registry.add(("train", "robovlm"), _train,
                 "train a RoboVLM policy on HDF5 / LeRobot episodes (synthetic mobile-robot ones if none given)")
    registry.add(("convert", "robovlms"), _convert,
                 "convert a RoboVLMs checkpoint (.ckpt / .pt / DeepSpeed dir / safetensors) to save_pretrained")


__all__ = ["register"]
