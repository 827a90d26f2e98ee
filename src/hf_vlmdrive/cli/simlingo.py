"""`hf-vlmdrive train simlingo` and `hf-vlmdrive eval simlingo` (SimLingo-base, SPEC 1.2)."""

from __future__ import annotations


def _train(argv: list[str]) -> int:
    from ..arguments import parse_args
    from ..trainers.simlingo_config import SimLingoScriptArguments, SimLingoTrainingArguments
    from ..trainers.simlingo_recipe import train_simlingo

    script_args, training_args = parse_args(
        [SimLingoScriptArguments, SimLingoTrainingArguments], argv, prog="hf-vlmdrive train simlingo"
    )
    train_simlingo(script_args, training_args)
    return 0


def _eval(argv: list[str]) -> int:
    from ..arguments import parse_args
    from ..trainers.simlingo_config import SimLingoEvalArguments
    from ..trainers.simlingo_recipe import run_eval

    (args,) = parse_args([SimLingoEvalArguments], argv, prog="hf-vlmdrive eval simlingo")
    run_eval(args)
    return 0


def register(registry) -> None:
    """Add the SimLingo commands."""
    registry.add(("train", "simlingo"), _train,
                 "train SimLingo-base on CARLA-layout routes (synthetic if none given), then evaluate held-out")
    registry.add(("eval", "simlingo"), _eval, "ADE/FDE of a SimLingo checkpoint vs constant-velocity baselines")


__all__ = ["register"]
