"""An ablation as one command: train every variant of a base config, evaluate each closed loop, write one report.

    hf-vlmdrive sweep examples/configs/libero_from_scratch.yaml \\
        --vary model_config.compressor_type=pool,per_layer,qformer --parallel 3 \\
        --eval-suite libero_object --eval-episodes 10 --output-dir outputs/compressor_sweep

Stages, each resumable (re-run the same command after an interruption; finished work is skipped):
1. train: one `hf-vlmdrive train <family> --config <variant>.yaml --resume_from_checkpoint last` per variant, N at
   once (`--parallel`); each run gets its own output folder, its own log, its own `--main_process_port` when a
   launcher is given (`--launcher "accelerate launch --config_file ..."`: separate ports avoid the EADDRINUSE clash
   of runs started side by side) and, with `--devices 0,1,2`, its own device (CUDA_VISIBLE_DEVICES).
2. eval (with `--eval-suite`): each variant's final checkpoint behind its own policy server (`hf-vlmdrive serve
   --model <run> --port P`, P from `--eval-base-port`, started and stopped by the sweep), evaluated by
   `hf-vlmdrive eval libero --server 127.0.0.1:P` on the same fixed initial states (`--eval-episodes` per task);
   `--eval-via in-process` runs `eval libero --model <run>` instead. Writes `<run>/libero_eval.json` (which
   `eval libero` itself resumes episode by episode) and, with `--eval-videos`, one mp4 per episode in `<run>/videos`.
3. report: `<output-dir>/report.md` with loss curves and per-module gradient norms (figures), peak memory,
   geometry-cache counters, success per task and suite with 95 % Wilson intervals, and Fisher's exact test of each
   variant against the reference (`--reference`, default the first variant) at this sample size.

A variant is a set of overrides of the base YAML's keys (dotted paths into nested mappings): `--vary KEY=A,B,C`
(several `--vary` give their product) and `--variant NAME KEY=V [KEY=V ...]` (a named set, e.g. a baseline).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .arguments import load_yaml_config
from .errors import UserError

logger = logging.getLogger(__name__)

STATUS_FILE = "sweep_status.json"
EVAL_FILE = "libero_eval.json"
FAMILIES = ("waypoint", "simlingo", "robovlm", "geovla")


@dataclasses.dataclass
class Variant:
    """One run of the sweep: a name (its folder) and the overrides of the base config."""

    name: str
    overrides: dict[str, Any]


def _value(text: str) -> Any:
    """A command-line value: a number when it reads as one ('16' -> 16, '1e-4' -> 0.0001, which YAML 1.1 would
    keep as a string), else as YAML types it ('true' -> True, 'null' -> None, 'pool' -> 'pool')."""
    if not text.strip():
        return ""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _split_assignment(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{flag} expects KEY=VALUE (a dotted key of the config), got {text!r}")
    return key.strip(), value


def _slug(assignments: Sequence[tuple[str, str]]) -> str:
    parts = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in assignments]
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", "__".join(parts)) or "base"


def plan_variants(vary: Sequence[str] = (), named: Sequence[Sequence[str]] = ()) -> list[Variant]:
    """The variants of `--vary KEY=A,B` (product over flags) followed by the `--variant NAME KEY=V ...` ones."""
    axes = []
    for spec in vary:
        key, values = _split_assignment(spec, "--vary")
        texts = [v.strip() for v in values.split(",")]
        if not all(texts):
            raise UserError(f"--vary {spec!r}: give comma-separated values, e.g. {key}=a,b,c")
        axes.append([(key, text) for text in texts])
    variants = [Variant(_slug(combo), {k: _value(t) for k, t in combo}) for combo in itertools.product(*axes)]
    variants = variants if axes else []
    for spec in named:
        if not spec:
            raise UserError("--variant expects NAME KEY=VALUE [KEY=VALUE ...]")
        name, assignments = spec[0], spec[1:]
        if "=" in name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise UserError(f"--variant: the first word is the variant's name (letters, digits, _ . + -), got {name!r}")
        variants.append(Variant(name, {k: _value(v) for k, v in (_split_assignment(a, "--variant") for a in assignments)}))
    if not variants:
        raise UserError("nothing to sweep: give --vary KEY=A,B,... and/or --variant NAME KEY=VALUE ...")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise UserError(f"two variants share a name: {names}; name them apart with --variant")
    return variants


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `config` with dotted keys set (`model_config.compressor_type`); missing mappings are made."""
    out = copy.deepcopy(dict(config))
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"override {key}: {part!r} is a {type(child).__name__} in the config, not a mapping")
            node = child
        node[leaf] = value
    return out


def _status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _set_status(run_dir: Path, **values) -> None:
    status = {**_status(run_dir), **values}
    tmp = run_dir / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps(status, indent=2), encoding="utf-8")
    os.replace(tmp, run_dir / STATUS_FILE)


@dataclasses.dataclass
class Job:
    variant: str
    stage: str
    argv: list[str]
    log: Path
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    # A server the job talks to: started first, the job starts once `server_port` accepts connections, and the
    # server is stopped when the job ends (its output goes to `server_log`).
    server_argv: list[str] | None = None
    server_port: int | None = None
    server_log: Path | None = None


# Seconds a job's server may take to accept connections (it loads the checkpoint first).
SERVER_START_TIMEOUT = 300.0


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclasses.dataclass
class _Running:
    job: Job
    env: dict[str, str]
    handle: Any
    started: float
    proc: subprocess.Popen | None = None
    server: subprocess.Popen | None = None
    server_handle: Any = None


def _open_log(path: Path, argv: Sequence[str]):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed when the job ends)
    handle.write(f"\n$ {shlex.join(argv)}\n")
    handle.flush()
    return handle


def _start(run: _Running) -> None:
    run.proc = subprocess.Popen(run.job.argv, stdout=run.handle, stderr=subprocess.STDOUT, env=run.env)


def _poll(run: _Running) -> int | None:
    """The job's exit code once it has ended (a server that died or never opened its port ends it), else None."""
    job = run.job
    if run.proc is None:  # waiting for the job's server
        if run.server is None:  # its port was taken: the server was never started
            return 1
        code = run.server.poll()
        if code is not None:
            run.handle.write(f"the policy server exited with {code} before accepting connections "
                             f"(its log: {job.server_log})\n")
            return code or 1
        if _port_open(job.server_port):
            _start(run)
            return None
        if time.time() - run.started > SERVER_START_TIMEOUT:
            run.handle.write(f"the policy server did not accept connections on port {job.server_port} within "
                             f"{SERVER_START_TIMEOUT:.0f} s (its log: {job.server_log})\n")
            return 1
        return None
    return run.proc.poll()


def run_jobs(jobs: Sequence[Job], parallel: int = 1, devices: Sequence[str] = (), on_done=None) -> dict[str, int]:
    """Run `jobs` `parallel` at a time (each slot pinned to `devices[slot]` when given); {variant: exit code}.

    A job with `server_argv` starts its server first and itself once the server accepts connections on
    `server_port`; the server is stopped when the job ends (a server that exits early fails the job)."""
    pending = list(jobs)
    running: dict[int, _Running] = {}
    codes: dict[str, int] = {}
    while pending or running:
        while pending and len(running) < max(1, parallel):
            slot = next(i for i in range(max(1, parallel)) if i not in running)
            job = pending.pop(0)
            env = {**os.environ, **job.env}
            if devices:
                env["CUDA_VISIBLE_DEVICES"] = str(devices[slot % len(devices)])
            run = _Running(job, env, _open_log(job.log, job.argv), time.time())
            if job.server_argv:
                if _port_open(job.server_port):
                    run.handle.write(f"port {job.server_port} is already in use: another server would not "
                                     "start there; pick another --eval-base-port\n")
                else:
                    run.server_handle = _open_log(job.server_log or job.log, job.server_argv)
                    run.server = subprocess.Popen(job.server_argv, stdout=run.server_handle,
                                                  stderr=subprocess.STDOUT, env=env)
            else:
                _start(run)
            running[slot] = run
            print(f"[sweep] {job.stage} {job.variant}: started (log {job.log})", flush=True)
        time.sleep(0.5)
        for slot, run in list(running.items()):
            job = run.job
            code = _poll(run)
            if code is None:
                continue
            _stop(run.server)
            for handle in (run.handle, run.server_handle):
                if handle is not None:
                    handle.close()
            del running[slot]
            codes[job.variant] = code
            state = "done" if code == 0 else f"FAILED (exit {code}; see {job.log})"
            print(f"[sweep] {job.stage} {job.variant}: {state} after {time.time() - run.started:.0f} s", flush=True)
            if on_done is not None:
                on_done(job, code)
    return codes


def _launch_prefix(launcher: str | None, port: int | None) -> list[str]:
    if not launcher:
        return [sys.executable, "-m", "hf_vlmdrive.cli"]
    words = shlex.split(launcher)
    if port is not None and "--main_process_port" not in words:
        words += ["--main_process_port", str(port)]
    return [*words, "-m", "hf_vlmdrive.cli"]


@dataclasses.dataclass
class SweepSettings:
    config: str
    output_dir: str
    family: str = "geovla"
    vary: Sequence[str] = ()
    variants: Sequence[Sequence[str]] = ()
    parallel: int = 1
    devices: Sequence[str] = ()
    launcher: str | None = None
    base_port: int = 29600
    train_args: str = ""
    eval_suite: str | None = None
    eval_episodes: int = 10
    eval_task_ids: str | None = None
    eval_args: str = ""
    eval_parallel: int | None = None
    eval_via: str = "server"
    eval_videos: bool = False
    reference: str | None = None
    eval_base_port: int = 10300
    serve_args: str = ""


def run_sweep(settings: SweepSettings) -> Path:
    """Train, evaluate and report (see the module docstring); returns the report's path."""
    if settings.family not in FAMILIES:
        raise UserError(f"--family must be one of {', '.join(FAMILIES)}, got {settings.family!r}")
    if settings.parallel < 1:
        raise UserError(f"--parallel must be >= 1, got {settings.parallel}")
    if settings.eval_via not in ("server", "in-process"):
        raise UserError(f"--eval-via must be server or in-process, got {settings.eval_via!r}")
    base = load_yaml_config(settings.config)
    variants = plan_variants(settings.vary, settings.variants)
    reference = settings.reference or variants[0].name
    if reference not in {v.name for v in variants}:
        raise UserError(f"--reference {reference!r} is not a variant of this sweep: {[v.name for v in variants]}")
    root = Path(settings.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    plan = {"config": str(settings.config), "family": settings.family,
            "variants": {v.name: v.overrides for v in variants}}
    (root / "sweep.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")

    jobs = []
    for i, variant in enumerate(variants):
        run_dir = root / variant.name
        run_dir.mkdir(parents=True, exist_ok=True)
        config = apply_overrides(base, {**variant.overrides, "output_dir": str(run_dir)})
        config_path = run_dir / "sweep_config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        if _status(run_dir).get("train") == "done":
            print(f"[sweep] train {variant.name}: already done", flush=True)
            continue
        argv = [*_launch_prefix(settings.launcher, settings.base_port + i if settings.launcher else None),
                "train", settings.family, "--config", str(config_path), "--resume_from_checkpoint", "last",
                *shlex.split(settings.train_args)]
        jobs.append(Job(variant.name, "train", argv, run_dir / "train.log"))

    def trained(job, code):
        if code == 0:
            _set_status(root / job.variant, train="done")

    codes = run_jobs(jobs, settings.parallel, settings.devices, on_done=trained)
    failed = sorted(v for v, c in codes.items() if c != 0)

    if settings.eval_suite:
        eval_jobs = []
        cli = [sys.executable, "-m", "hf_vlmdrive.cli"]
        for i, variant in enumerate(variants):
            run_dir = root / variant.name
            status = _status(run_dir)
            if status.get("train") != "done" or status.get("eval") == "done":
                continue
            job = Job(variant.name, "eval", [], run_dir / "eval.log")
            if settings.eval_via == "server":
                job.server_port = settings.eval_base_port + i
                job.server_argv = [*cli, "serve", "--model", str(run_dir), "--host", "127.0.0.1",
                                   "--port", str(job.server_port), *shlex.split(settings.serve_args)]
                job.server_log = run_dir / "serve.log"
                source = ["--server", f"127.0.0.1:{job.server_port}"]
            else:
                source = ["--model", str(run_dir)]
            job.argv = [*cli, "eval", "libero", *source, "--suite", settings.eval_suite,
                        "--init-state-ids", f"0-{settings.eval_episodes - 1}", "--output", str(run_dir / EVAL_FILE),
                        "--no-progress", *shlex.split(settings.eval_args)]
            if settings.eval_task_ids:
                job.argv += ["--task-ids", settings.eval_task_ids]
            if settings.eval_videos:
                job.argv += ["--video-dir", str(run_dir / "videos")]
            eval_jobs.append(job)

        def evaluated(job, code):
            if code == 0:
                _set_status(root / job.variant, eval="done")

        codes = run_jobs(eval_jobs, settings.eval_parallel or settings.parallel, settings.devices, on_done=evaluated)
        failed += sorted(v for v, c in codes.items() if c != 0)

    report = write_report(root, variants, reference=reference)
    print(f"[sweep] report: {report}", flush=True)
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: {', '.join(failed)} (their logs are in {root}/<variant>/); "
                        "re-run the same command to resume them")
    return report


# ---------------------------------------------------------------------- report
def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (sound at small n and at 0 or n successes)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def fisher_exact_p(a_success: int, a_n: int, b_success: int, b_n: int) -> float:
    """Two-sided p-value of Fisher's exact test on two success counts."""
    from scipy.stats import fisher_exact

    return float(fisher_exact([[a_success, a_n - a_success], [b_success, b_n - b_success]])[1])


def read_log_history(run_dir: Path) -> list[dict[str, Any]]:
    """Trainer's log history of a run: `<run>/trainer_state.json`, else its newest checkpoint's."""
    candidates = [run_dir / "trainer_state.json"]
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                         if p.name.split("-")[-1].isdigit() else -1)
    candidates += [c / "trainer_state.json" for c in reversed(checkpoints)]
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
    return []


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    rows = [(h["step"], h[key]) for h in history if key in h and "step" in h]
    return [r[0] for r in rows], [float(r[1]) for r in rows]


def summarize_run(run_dir: Path) -> dict[str, Any]:
    """One variant's figures for the report: training signals from its log history, LIBERO results if any."""
    history = read_log_history(run_dir)
    train = [h for h in history if "loss" in h]
    last = train[-1] if train else {}
    grad_keys = sorted({k for h in train for k in h if k.startswith("grad_norm/")})
    memory = {k: max(h[k] for h in train if k in h) for k in {k for h in train for k in h if k.startswith("memory/")}}
    out: dict[str, Any] = {
        "status": _status(run_dir), "steps": last.get("step"), "final_loss": last.get("loss"),
        "grad_norms": {k.split("/", 1)[1]: sum(h[k] for h in train if k in h) / max(1, sum(k in h for h in train))
                       for k in grad_keys},
        "memory": memory,
        "geometry_cache": {k.split("/", 1)[1]: last[k] for k in last if k.startswith("geometry_cache/")},
        "history": history,
    }
    eval_path = run_dir / EVAL_FILE
    if eval_path.is_file():
        results = json.loads(eval_path.read_text(encoding="utf-8"))
        out["libero"] = {"protocol": results.get("protocol"), "per_suite": results.get("per_suite", {})}
    return out


def _fmt(value, spec=".4g") -> str:
    return "-" if value is None else format(value, spec)


def write_report(root: Path, variants: Sequence[Variant], reference: str) -> Path:
    """`<root>/report.md` (+ loss_curves.png, grad_norms.png) over the variants' run folders."""
    runs = {v.name: summarize_run(root / v.name) for v in variants}
    figures = _plot(root, runs)
    lines = [f"# Sweep report: {root.name}", "",
             f"{len(variants)} variant(s) of `{json.loads((root / 'sweep.json').read_text())['config']}`; "
             f"the reference for the significance tests is `{reference}`.", "", "## Variants", "",
             "| variant | overrides | status |", "|---|---|---|"]
    for v in variants:
        status = runs[v.name]["status"]
        state = ", ".join(f"{k} {s}" for k, s in status.items()) or "not trained"
        lines.append(f"| {v.name} | {', '.join(f'`{k}={val}`' for k, val in v.overrides.items()) or '-'} | {state} |")
    grad_names = sorted({g for r in runs.values() for g in r["grad_norms"]})
    mem_names = sorted({m for r in runs.values() for m in r["memory"]})
    lines += ["", "## Training", "",
              "| variant | steps | final loss | " + " | ".join(f"mean grad norm {g}" for g in grad_names)
              + "".join(f" | {m.split('/', 1)[-1]}" for m in mem_names)
              + " | cache hit rate | cache entries | cache RAM MB |",
              "|---" * (6 + len(grad_names) + len(mem_names)) + "|"]
    for v in variants:
        r = runs[v.name]
        cache = r["geometry_cache"]
        hit = cache.get("hit_rate")
        lines.append(f"| {v.name} | {_fmt(r['steps'], 'd')} | {_fmt(r['final_loss'])} | "
                     + " | ".join(_fmt(r["grad_norms"].get(g)) for g in grad_names)
                     + "".join(f" | {_fmt(r['memory'].get(m), '.0f')}" for m in mem_names)
                     + f" | {'-' if hit is None else f'{hit:.1%}'} | {_fmt(cache.get('entries'), '.0f')} | "
                       f"{_fmt(cache.get('memory_mb'), '.1f')} |")
    lines += [""] + [f"![{name}]({name})" for name in figures]
    evaluated = {name: r["libero"] for name, r in runs.items() if "libero" in r}
    if evaluated:
        lines += _libero_section(variants, evaluated, reference)
    else:
        lines += ["", "No closed-loop evaluation in this sweep (give --eval-suite)."]
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "report.json").write_text(json.dumps({k: {kk: vv for kk, vv in r.items() if kk != "history"}
                                                  for k, r in runs.items()}, indent=2), encoding="utf-8")
    return path


def _libero_section(variants, evaluated, reference) -> list[str]:
    protocols = {r["protocol"] for r in evaluated.values()}
    lines = ["", "## LIBERO closed loop", ""] + [f"Protocol: {p}" for p in protocols] + [""]
    ref = evaluated.get(reference)
    lines += ["| variant | suite | task | successes / episodes | rate | 95 % interval (Wilson) | "
              f"p vs {reference} (Fisher) |", "|---|---|---|---|---|---|---|"]
    for v in variants:
        if v.name not in evaluated:
            continue
        for suite, s in evaluated[v.name]["per_suite"].items():
            rows = [(f"task {t}", d) for t, d in s["tasks"].items()] + [("**all**", s)]
            for label, d in rows:
                n, k = d["episodes"], d["successes"]
                lo, hi = wilson_interval(k, n)
                p = "-"
                ref_d = None
                if ref is not None and v.name != reference and suite in ref["per_suite"]:
                    rs = ref["per_suite"][suite]
                    ref_d = rs if label == "**all**" else rs["tasks"].get(label.split()[-1])
                if ref_d is not None and n and ref_d["episodes"]:
                    pv = fisher_exact_p(k, n, ref_d["successes"], ref_d["episodes"])
                    p = f"{pv:.3f}{' (significant at 0.05)' if pv < 0.05 else ''}"
                rate = f"{k / n:.0%}" if n else "-"
                lines.append(f"| {v.name} | {suite} | {label} | {k} / {n} | {rate} | {lo:.0%} - {hi:.0%} | {p} |")
    lines += ["", "A difference is called significant when Fisher's exact test gives p < 0.05 at these sample sizes; "
              "with 10 episodes per task only large differences (about 60 percentage points per task) can be."]
    return lines


def _plot(root: Path, runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    panels = [("loss_curves.png", ["loss"], "training loss")]
    grad_keys = sorted({k for r in runs.values() for h in r["history"] for k in h if k.startswith("grad_norm/")})
    if grad_keys:
        panels.append(("grad_norms.png", grad_keys, "gradient norm"))
    for filename, keys, ylabel in panels:
        fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
        drawn = False
        for ax, key in zip(axes[0], keys):
            for name, r in runs.items():
                steps, values = _series(r["history"], key)
                if steps:
                    ax.plot(steps, values, label=name)
                    drawn = True
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            if ax.has_data():
                ax.legend(fontsize=7)
        if drawn:
            fig.tight_layout()
            fig.savefig(root / filename, dpi=110)
            written.append(filename)
        plt.close(fig)
    return written


__all__ = [
    "SweepSettings",
    "Variant",
    "apply_overrides",
    "fisher_exact_p",
    "plan_variants",
    "read_log_history",
    "run_jobs",
    "run_sweep",
    "summarize_run",
    "wilson_interval",
    "write_report",
]
