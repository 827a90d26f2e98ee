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

import collections
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# Installed as sitecustomize.py in every launched process when `trace_writes_under` is given: records each file a rank
# opens for writing (builtins.open / io.open, so Path.write_text too, safetensors' save_file, os.replace / os.rename targets) under that folder.
_TRACE_SITECUSTOMIZE = """
import builtins, os
_root = os.environ.get("HF_VLMDRIVE_TRACE_ROOT")
_rank = os.environ.get("RANK")
if _root and _rank is not None:
    _log = open(os.path.join(os.environ["HF_VLMDRIVE_TRACE_DIR"], "writes-%s-%d.txt" % (_rank, os.getpid())), "a",
                buffering=1)
    def _note(path):
        try:
            path = os.path.abspath(os.fspath(path))
        except TypeError:
            return
        if path.startswith(_root):
            _log.write(_rank + "\\t" + path + "\\n")
    _open = builtins.open
    def _traced_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            _note(file)
        return _open(file, mode, *args, **kwargs)
    builtins.open = _traced_open
    import io
    io.open = _traced_open  # pathlib's write_text / write_bytes / open call io.open
    for _name in ("replace", "rename"):
        def _wrap(fn):
            def _moved(src, dst, *args, **kwargs):
                _note(dst)
                return fn(src, dst, *args, **kwargs)
            return _moved
        setattr(os, _name, _wrap(getattr(os, _name)))
    try:
        import safetensors.torch as _st
        _save = _st.save_file
        def _traced_save(tensors, filename, *args, **kwargs):
            _note(filename)
            return _save(tensors, filename, *args, **kwargs)
        _st.save_file = _traced_save
    except Exception:
        pass
"""


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
               check: bool = True, trace_writes_under: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `argv` in `num_processes` CPU processes; returns the finished process (stdout + stderr in `.stdout`).
    Raises AssertionError with the output's tail when it fails and `check` is true.

    `trace_writes_under=DIR`: every rank records the files it writes under DIR; the result's `.writes` maps each
    written path to the sorted ranks that wrote it (`files_written_by_several_ranks(proc)` lists the clashes)."""
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "ACCELERATE_USE_CPU": "" if deepspeed_config else "true", **(env or {})}
    if deepspeed_config:
        run_env.setdefault("DS_ACCELERATOR", "cpu")
    src = str(Path(__file__).resolve().parents[2])
    paths = [src]
    trace = None
    if trace_writes_under is not None:
        trace = tempfile.mkdtemp(prefix="hf_vlmdrive_writes_")
        Path(trace, "sitecustomize.py").write_text(_TRACE_SITECUSTOMIZE)
        paths.insert(0, trace)
        run_env.update(HF_VLMDRIVE_TRACE_DIR=trace,
                       HF_VLMDRIVE_TRACE_ROOT=os.path.abspath(os.fspath(trace_writes_under)))
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (*paths, run_env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(accelerate_command(argv, num_processes, script, deepspeed_config), cwd=cwd, env=run_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    proc.writes = _read_writes(trace) if trace else {}
    if check and proc.returncode != 0:
        raise AssertionError(f"{num_processes}-process run failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def _read_writes(trace_dir: str) -> dict[str, list[int]]:
    ranks: dict[str, set[int]] = collections.defaultdict(set)
    for log in Path(trace_dir).glob("writes-*.txt"):
        for line in log.read_text().splitlines():
            rank, _, path = line.partition("\t")
            if path:
                ranks[path].add(int(rank))
    return {path: sorted(r) for path, r in sorted(ranks.items())}


def files_written_by_several_ranks(proc: subprocess.CompletedProcess, ignore: tuple[str, ...] = ()) -> dict:
    """{path: ranks} for the files more than one rank wrote (empty when every file was written once). Paths that
    contain any of `ignore` (e.g. a per-rank checkpoint file such as "rng_state_") are left out."""
    return {p: r for p, r in getattr(proc, "writes", {}).items() if len(r) > 1 and not any(i in p for i in ignore)}


__all__ = ["accelerate_command", "files_written_by_several_ranks", "free_port", "launch_cpu"]
