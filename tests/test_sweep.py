"""`hf-vlmdrive sweep`: variants planned from --vary / --variant, trained as separate runs, resumed, reported."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hf_vlmdrive import sweep
from hf_vlmdrive.errors import UserError
from hf_vlmdrive.sweep import (
    Variant,
    apply_overrides,
    fisher_exact_p,
    plan_variants,
    wilson_interval,
    write_report,
)
from hf_vlmdrive.testing.distributed import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_plan_variants_product_and_named():
    variants = plan_variants(["model_config.compressor_type=pool,per_layer", "learning_rate=1e-4,3e-4"],
                             [["no_geometry", "model_config.use_geometry=false"]])
    assert [v.name for v in variants] == [
        "compressor_type=pool__learning_rate=1e-4", "compressor_type=pool__learning_rate=3e-4",
        "compressor_type=per_layer__learning_rate=1e-4", "compressor_type=per_layer__learning_rate=3e-4",
        "no_geometry"]
    assert variants[-1].overrides == {"model_config.use_geometry": False}
    assert variants[1].overrides == {"model_config.compressor_type": "pool", "learning_rate": 0.0003}
    with pytest.raises(UserError, match="KEY=VALUE"):
        plan_variants(["compressor_type"])
    with pytest.raises(UserError, match="share a name"):
        plan_variants([], [["a", "x=1"], ["a", "x=2"]])
    with pytest.raises(UserError, match="nothing to sweep"):
        plan_variants()


def test_apply_overrides_is_deep_and_leaves_the_base_alone():
    base = {"model_config": {"compressor_type": "pool", "dit": {"depth": 16}}, "seed": 0}
    out = apply_overrides(base, {"model_config.dit.depth": 4, "model_config.new.key": "x"})
    assert out["model_config"]["dit"]["depth"] == 4 and out["model_config"]["new"] == {"key": "x"}
    assert base["model_config"]["dit"]["depth"] == 16 and "new" not in base["model_config"]
    with pytest.raises(UserError, match="not a mapping"):
        apply_overrides(base, {"seed.x": 1})


def test_wilson_and_fisher_against_known_values():
    lo, hi = wilson_interval(8, 10)
    assert round(lo, 3) == 0.490 and round(hi, 3) == 0.943
    assert wilson_interval(0, 10)[0] == 0.0 and round(wilson_interval(0, 10)[1], 3) == 0.278
    assert round(fisher_exact_p(8, 10, 0, 10), 5) == 0.00071  # 8/10 vs 0/10: significant
    assert fisher_exact_p(5, 10, 4, 10) > 0.5  # 5/10 vs 4/10: not


def _fake_run(root: Path, name: str, successes: list[int], grad: float):
    run = root / name
    run.mkdir(parents=True)
    history = [{"loss": 1.0 / s, "grad_norm": 2.0, "grad_norm/geometry_compressor": grad * s,
                "memory/peak_rss_mb": 900.0 + s, "geometry_cache/hit_rate": 0.452, "geometry_cache/entries": 50,
                "geometry_cache/memory_mb": 12.5, "step": s} for s in (1, 2)]
    (run / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    tasks = {str(t): {"episodes": 10, "successes": k} for t, k in enumerate(successes)}
    per_suite = {"libero_object": {"episodes": 30, "successes": sum(successes), "tasks": tasks}}
    (run / "libero_eval.json").write_text(json.dumps({"protocol": "LIBERO closed loop | test", "per_suite": per_suite}))
    (run / "sweep_status.json").write_text(json.dumps({"train": "done", "eval": "done"}))


def test_report_holds_the_outcome_table(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"config": "base.yaml"}))
    _fake_run(tmp_path, "pool", [8, 0, 0], 0.5)
    _fake_run(tmp_path, "qformer", [10, 9, 8], 0.25)
    variants = [Variant("pool", {"model_config.compressor_type": "pool"}),
                Variant("qformer", {"model_config.compressor_type": "qformer"})]
    report = write_report(tmp_path, variants, reference="pool").read_text()
    assert "| pool | 2 | 0.5 | 0.75 | 902 | 45.2% | 50 | 12.5 |" in report  # mean grad norm over the 2 records
    assert "| qformer | libero_object | **all** | 27 / 30 | 90% | 74% - 97% | 0.000 (significant at 0.05) |" in report
    assert "| qformer | libero_object | task 0 | 10 / 10 | 100% | 72% - 100% | 0.474 |" in report
    assert "Protocol: LIBERO closed loop | test" in report
    assert (tmp_path / "loss_curves.png").stat().st_size > 0 and (tmp_path / "grad_norms.png").stat().st_size > 0


@pytest.mark.slow
def test_sweep_trains_each_variant_and_resumes(tmp_path):
    base = dict(
        model_config=dict(vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
                          head_hidden_sizes=[32]),
        train_data="synthetic:16", eval_data="synthetic:8:1", image_width=48, image_height=32,
        output_dir="ignored", per_device_train_batch_size=8, max_steps=2, logging_steps=1, save_strategy="steps",
        save_steps=2, eval_strategy="no", report_to="none", disable_tqdm=True, seed=0)
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(base))
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "hf_vlmdrive.cli", "sweep", str(config), "--family", "waypoint",
           "--vary", "model_config.pooling=attention,mean", "--variant", "broken", "model_config.pooling=median",
           "--output-dir", str(out), "--parallel", "2"]
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 2, first.stdout + first.stderr
    assert "1 run(s) failed: broken" in first.stderr and "re-run the same command" in first.stderr
    for name in ("pooling=attention", "pooling=mean"):
        assert json.loads((out / name / "sweep_status.json").read_text()) == {"train": "done"}
        assert yaml.safe_load((out / name / "sweep_config.yaml").read_text())["output_dir"] == str(out / name)
        assert (out / name / "model.safetensors").is_file()
    assert not (out / "broken" / "sweep_status.json").exists()
    report = (out / "report.md").read_text()
    assert "| pooling=mean | 2 |" in report and "| broken | `model_config.pooling=median` | not trained |" in report
    # fix the broken variant by dropping it: the finished runs are not trained again
    cmd = cmd[:cmd.index("--variant")] + cmd[cmd.index("--output-dir"):]
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already done") == 2 and "started" not in second.stdout


def test_run_jobs_starts_a_jobs_server_first_and_stops_it(tmp_path):
    """The eval stage's server path: the client starts once the server accepts connections, the server is stopped
    when the client ends; a server that dies first fails the job without running it; a taken port is refused."""
    port = free_port()
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    client = [sys.executable, "-c", "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1]))); "
              "open(sys.argv[2], 'w').write('reached')", str(port), str(tmp_path / "client.txt")]
    job = sweep.Job("v", "eval", client, tmp_path / "eval.log", server_argv=server, server_port=port,
                    server_log=tmp_path / "serve.log")
    assert sweep.run_jobs([job]) == {"v": 0}
    assert (tmp_path / "client.txt").read_text() == "reached"
    assert not sweep._port_open(port)  # the server was stopped with the job
    assert "http.server" in (tmp_path / "serve.log").read_text()
    (tmp_path / "client.txt").unlink()

    dead = sweep.Job("d", "eval", client, tmp_path / "dead.log", server_port=port, server_log=tmp_path / "d.log",
                     server_argv=[sys.executable, "-c", "raise SystemExit(3)"])
    assert sweep.run_jobs([dead]) == {"d": 3}
    assert "exited with 3 before accepting connections" in (tmp_path / "dead.log").read_text()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        busy = sweep.Job("b", "eval", client, tmp_path / "busy.log", server_argv=server, server_port=port)
        assert sweep.run_jobs([busy]) == {"b": 1}
    assert f"port {port} is already in use" in (tmp_path / "busy.log").read_text()
    assert not (tmp_path / "client.txt").exists()  # neither client ran
