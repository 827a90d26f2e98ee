"""Launch a command in N real processes on CPU (gloo), as `accelerate launch` does on a user's machine.

Used by the multi-process tests; also handy by hand:

    from hf_vlmdrive.testing.distributed import launch_cpu
    launch_cpu(["train", "waypoint", "--config", "examples/configs/waypoint_tiny.yaml", ...], num_processes=2)

`launch_cpu(argv)` runs `accelerate launch --multi_gpu --num_processes N --main_process_port <free port>
-m hf_vlmdrive.cli <argv> --use_cpu true` (accelerate's own `--cpu` with several processes starts ONE process
without a word; `--multi_gpu` plus the script's `--use_cpu true` starts N that talk over gloo). A script path instead
of CLI words: `launch_cpu([...], script="examples/train_waypoint.py")`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now (for `--main_process_port`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(argv: list[str], num_processes: int = 2, script: str | None = None,
                       deepspeed_config: str | None = None, port: int | None = None) -> list[str]:
    """The `accelerate launch` command line `launch_cpu` runs (see the module docstring). With `deepspeed_config`
    (an accelerate YAML whose distributed_type is DEEPSPEED) the run uses DeepSpeed on CPU instead of DDP; the
    caller sets `DS_ACCELERATOR=cpu` and passes `--ddp_backend gloo`."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--num_processes",
           str(num_processes), "--main_process_port", str(port or free_port())]
    if deepspeed_config:
        cmd += ["--config_file", str(deepspeed_config)]
    else:
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += [script] if script else ["-m", "hf_vlmdrive.cli"]
    cmd += list(argv)
    if not deepspeed_config:
        cmd += ["--use_cpu", "true"]
    return cmd


def launch_cpu(argv: list[str], num_processes: int = 2, script: str | None = None, cwd: str | Path | None = None,
               env: dict | None = None, timeout: float = 600, deepspeed_config: str | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run `argv` in `num_processes` CPU processes; returns the finished process (stdout + stderr in `.stdout`).
    Raises AssertionError with the output's tail when it fails and `check` is true."""
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "ACCELERATE_USE_CPU": "" if deepspeed_config else "true", **(env or {})}
    if deepspeed_config:
        run_env.setdefault("DS_ACCELERATOR", "cpu")
    src = str(Path(__file__).resolve().parents[2])
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (src, run_env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(accelerate_command(argv, num_processes, script, deepspeed_config), cwd=cwd, env=run_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{num_processes}-process run failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


__all__ = ["accelerate_command", "free_port", "launch_cpu"]
