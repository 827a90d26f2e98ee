"""`hf-vlmdrive sweep`: train every variant of a base config, evaluate each closed loop, one report
(`hf_vlmdrive.sweep`)."""

from __future__ import annotations

from ..arguments import ArgumentParser


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="hf-vlmdrive sweep",
                       description="Train the variants of a base config (N at once), evaluate each closed loop on "
                                   "LIBERO, and write report.md with the outcome table. Re-run to resume.")
    p.add_argument("config", help="the base YAML config of `hf-vlmdrive train <family>`")
    p.add_argument("--family", default="geovla", help="which `train` command runs each variant (default geovla)")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=A,B,...",
                   help="a config key (dotted into nested mappings) and its values; several --vary give the product")
    p.add_argument("--variant", action="append", nargs="+", default=[], metavar="NAME KEY=VALUE",
                   help="a named variant with its overrides, e.g. --variant no_geometry model_config.use_geometry=false")
    p.add_argument("--output-dir", default=None, help="where the runs and the report go (default: outputs/sweep-<config>)")
    p.add_argument("--parallel", type=int, default=1, help="runs trained at once (default 1)")
    p.add_argument("--devices", default="", help="comma-separated device ids, one per parallel slot "
                                                 "(CUDA_VISIBLE_DEVICES of each run), e.g. 0,1,2")
    p.add_argument("--launcher", default=None,
                   help='launch each run through this command, e.g. "accelerate launch --config_file '
                        'examples/configs/accelerate_zero2.yaml --num_processes 1"; each run gets its own '
                        "--main_process_port (from --base-port upwards)")
    p.add_argument("--base-port", type=int, default=29600, help="first --main_process_port given to --launcher runs")
    p.add_argument("--train-args", default="", help="extra arguments for every training run (one quoted string)")
    p.add_argument("--eval-suite", default=None, help="LIBERO suite(s) to evaluate each final model on (none: no eval)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per task, initial states 0..N-1")
    p.add_argument("--eval-task-ids", default=None, help="task ids, e.g. '0-2' (default: every task of the suite)")
    p.add_argument("--eval-parallel", type=int, default=None, help="evaluations at once (default: --parallel)")
    p.add_argument("--eval-args", default="", help="extra arguments for every `eval libero` run (one quoted string)")
    p.add_argument("--reference", default=None, help="the variant the others are tested against (default: the first)")
    p.add_argument("--eval-via", choices=("server", "in-process"), default="server",
                   help="server (default): each checkpoint behind its own `hf-vlmdrive serve`, evaluated over the "
                        "websocket protocol; in-process: `eval libero --model`")
    p.add_argument("--eval-videos", action="store_true", help="one mp4 per evaluated episode in <run>/videos")
    p.add_argument("--eval-base-port", type=int, default=10300,
                   help="port of the first variant's policy server (the next variant +1, ...)")
    p.add_argument("--serve-args", default="", help="extra arguments for every `hf-vlmdrive serve` (one quoted "
                                                    "string), e.g. \"--device cpu --key-map '{...}'\"")
    return p


def run(argv: list[str]) -> int:
    from pathlib import Path

    from ..sweep import SweepSettings, run_sweep

    args = build_parser().parse_args(argv)
    output = args.output_dir or f"outputs/sweep-{Path(args.config).stem}"
    run_sweep(SweepSettings(
        config=args.config, output_dir=output, family=args.family, vary=args.vary, variants=args.variant,
        parallel=args.parallel, devices=[d for d in args.devices.split(",") if d.strip()], launcher=args.launcher,
        base_port=args.base_port, train_args=args.train_args, eval_suite=args.eval_suite,
        eval_episodes=args.eval_episodes, eval_task_ids=args.eval_task_ids, eval_args=args.eval_args,
        eval_parallel=args.eval_parallel, eval_via=args.eval_via, eval_base_port=args.eval_base_port,
        serve_args=args.serve_args, reference=args.reference, eval_videos=args.eval_videos))
    return 0


def register(registry) -> None:
    """Add `sweep`."""
    registry.add(("sweep",), run, "train config variants side by side, evaluate each, write one report")


__all__ = ["build_parser", "register", "run"]
