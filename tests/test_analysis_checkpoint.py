"""`hf-vlmdrive analyze checkpoint` on files written by the real tools (Lightning, torch.save, safetensors,
DeepSpeed), the DeepSpeed directory layouts, and malicious pickles that must be refused without running."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from hf_vlmdrive.analysis.checkpoint import inspect_checkpoint, load_state_dict
from hf_vlmdrive.cli import main as cli_main


class _Policy(nn.Module):
    """Shaped like a RoboVLMs policy: `backbone.*`, `act_head.*`, a buffer."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.act_head = nn.Linear(8, 2)
        self.register_buffer("step_count", torch.zeros(3, dtype=torch.long))


def _numel(module) -> int:
    return sum(t.numel() for t in module.state_dict().values())


def _run_json(argv, tmp_path, capsys):
    out = tmp_path / "inspect.json"
    code = cli_main(["analyze", "checkpoint", *argv, "--output-json", str(out)])
    assert code == 0, capsys.readouterr().err
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------ Lightning
def test_lightning_ckpt_written_by_lightning(tmp_path, capsys):
    L = pytest.importorskip("lightning")

    class Module(L.LightningModule):
        def __init__(self, lr: float = 1e-3, configs: dict | None = None):
            super().__init__()
            self.save_hyperparameters()
            self.model = _Policy()

        def training_step(self, batch, i):
            return self.model.act_head(self.model.backbone(batch[0])).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 4)), batch_size=4)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    module = Module(configs={"model": "kosmos", "window_size": 8})
    trainer.fit(module, data)
    ckpt = tmp_path / "epoch=0.ckpt"
    trainer.save_checkpoint(ckpt)
    r = _run_json([str(ckpt)], tmp_path, capsys)
    assert r["format"] == "lightning" and r["state_dict_key"] == "state_dict"
    assert r["global_step"] == trainer.global_step == 3 and r["epoch"] == trainer.current_epoch
    assert r["versions"]["pytorch-lightning_version"] == L.__version__
    assert r["hyper_parameters"] == {"lr": 1e-3, "configs": {"model": "kosmos", "window_size": 8}}
    sd = r["state_dict"]
    total = _numel(module)
    assert sd["num_elements"] == total and sd["num_tensors"] == len(module.state_dict())  # buffers included
    assert sd["numel_by_prefix_depth1"] == {"model": total}
    assert sd["numel_by_prefix_depth2"] == {"model.backbone": 4 * 8 + 8 + 16, "model.act_head": 18,
                                            "model.step_count": 3}
    assert sd["dtypes"] == {"float32": 6, "int64": 1}
    assert sd["keys"]["model.act_head.weight"] == {"shape": [2, 8], "dtype": "float32"}
    assert sd["memory_estimate"]["fp32_bytes"] == 4 * total and sd["memory_estimate"]["bf16_bytes"] == 2 * total
    assert sd["bytes"] == sum(t.numel() * t.element_size() for t in module.state_dict().values())
    assert "optimizer_states" in r["other_states"]


# ------------------------------------------------------------------------------------------ torch.save
def test_nested_dicts_and_module_prefix(tmp_path, capsys):
    model = _Policy()
    opt = torch.optim.AdamW(model.parameters())
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}  # DDP-wrapped
    torch.save({"model_state_dict": sd, "optimizer_state_dict": opt.state_dict(), "epoch": 7, "global_step": 70},
               tmp_path / "nested.pt")
    r = _run_json([str(tmp_path / "nested.pt")], tmp_path, capsys)
    assert r["format"] == "torch_nested" and r["state_dict_key"] == "model_state_dict"
    assert r["epoch"] == 7 and r["global_step"] == 70
    assert set(r["state_dict"]["numel_by_prefix_depth1"]) == {"backbone", "act_head", "step_count"}
    assert "module.act_head.bias" in r["state_dict"]["keys"]
    loaded, _ = load_state_dict(tmp_path / "nested.pt")
    assert torch.equal(loaded["module.act_head.weight"], model.act_head.weight)
    # one level deeper: {"state_dict": {"model_state_dict": ...}}
    torch.save({"state_dict": {"model_state_dict": model.state_dict()}}, tmp_path / "deep.pt")
    assert inspect_checkpoint(tmp_path / "deep.pt")["state_dict_key"] == "state_dict.model_state_dict"


def test_optimizer_state_file_reports_its_tensors(tmp_path, capsys):
    # Trainer's optimizer.pt is `optimizer.state_dict()`: the tensors sit under state.<param id>, not in a state dict.
    model = _Policy()
    opt = torch.optim.AdamW([{"params": model.backbone.parameters(), "lr": 1e-4},
                             {"params": model.act_head.parameters(), "lr": 1e-3, "weight_decay": 0.0}])
    model.act_head(model.backbone(torch.randn(2, 4))).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    r = _run_json([str(tmp_path / "optimizer.pt")], tmp_path, capsys)
    params = list(model.backbone.parameters()) + list(model.act_head.parameters())
    assert r["format"] == "torch_optimizer" and r["num_param_groups"] == 2
    assert r["num_parameters_with_state"] == len(params) == 6
    # exp_avg and exp_avg_sq per parameter (+ a scalar step each)
    assert r["state_dict"]["num_tensors"] == 3 * len(params)
    assert "state.0.exp_avg" in r["state_dict"]["keys"] and "state.5.exp_avg_sq" in r["state_dict"]["keys"]
    moments = 2 * sum(p.numel() for p in params)
    assert r["state_dict"]["num_elements"] == moments + len(params)
    assert r["param_group_hyperparameters"][1]["lr"] == 1e-3
    assert r["state_dict"]["bytes"] > 0


def test_safetensors_mixed_dtypes_and_metadata(tmp_path, capsys):
    from safetensors.torch import save_file

    tensors = {"a.w": torch.randn(3, 4), "a.b": torch.zeros(4, dtype=torch.bfloat16),
               "b.idx": torch.arange(5, dtype=torch.int64)}
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata={"format": "pt", "note": "hello"})
    r = _run_json([str(tmp_path / "m.safetensors")], tmp_path, capsys)
    assert r["format"] == "safetensors" and r["safetensors_metadata"] == {"format": "pt", "note": "hello"}
    sd = r["state_dict"]
    assert sd["dtypes"] == {"float32": 1, "bfloat16": 1, "int64": 1}
    assert sd["numel_by_dtype"] == {"float32": 12, "bfloat16": 4, "int64": 5}
    assert sd["bytes"] == 12 * 4 + 4 * 2 + 5 * 8 and sd["num_elements"] == 21
    assert sd["numel_by_prefix_depth1"] == {"a": 16, "b": 5}


def test_safetensors_epoch_and_global_step_from_metadata(tmp_path, capsys):
    """Lightning-style exporters write the counters as metadata strings: they come back as ints; absent, null;
    a string that is not an integer stays null, with a note naming it."""
    from safetensors.torch import save_file

    tensors = {"w": torch.zeros(2)}
    save_file(tensors, str(tmp_path / "c.safetensors"), metadata={"epoch": "3", "global_step": "1200"})
    r = _run_json([str(tmp_path / "c.safetensors")], tmp_path, capsys)
    assert r["epoch"] == 3 and r["global_step"] == 1200 and "notes" not in r
    save_file(tensors, str(tmp_path / "plain.safetensors"), metadata={"format": "pt"})
    r = inspect_checkpoint(tmp_path / "plain.safetensors")
    assert r["epoch"] is None and r["global_step"] is None and "notes" not in r
    save_file(tensors, str(tmp_path / "odd.safetensors"), metadata={"epoch": "2.5", "global_step": "40"})
    r = inspect_checkpoint(tmp_path / "odd.safetensors")
    assert r["epoch"] is None and r["global_step"] == 40
    assert len(r["notes"]) == 1 and "epoch='2.5' is not an integer" in r["notes"][0]


# ------------------------------------------------------------------------------------------ DeepSpeed layouts
_MARKER_ENV = "HF_VLMDRIVE_TEST_MARKER"


class _Explodes:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _deepspeed_dir(root: Path, tag: str, module_state: dict, client_state: dict, marker: Path) -> Path:
    """A DeepSpeed checkpoint directory as `DeepSpeedEngine.save_checkpoint` writes it (deepspeed/runtime/engine.py:
    `_save_checkpoint` -> `<dir>/<tag>/mp_rank_00_model_states.pt`, `_save_zero_checkpoint` ->
    `zero_pp_rank_0_mp_rank_00_optim_states.pt`, then `<dir>/latest` = tag)."""
    (root / tag).mkdir(parents=True)
    state = {"module": module_state, "buffer_names": [], "optimizer": None, "param_shapes": [],
             "frozen_param_shapes": None, "shared_params": {}, "frozen_param_fragments": None, "lr_scheduler": None,
             "data_sampler": None, "random_ltd": None, "sparse_tensor_module_names": set(), "skipped_steps": 0,
             "global_steps": 5, "global_samples": 40, "dp_world_size": 1, "mp_world_size": 1,
             "ds_config": {"train_batch_size": 8, "zero_optimization": {"stage": 2}}, "ds_version": "0.19.8",
             **client_state}
    torch.save(state, root / tag / "mp_rank_00_model_states.pt")
    with open(root / tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt", "wb") as f:
        pickle.dump({"optimizer_state_dict": _Explodes(str(marker))}, f)
    (root / "latest").write_text(tag)
    return root


def test_deepspeed_directory_layout(tmp_path, capsys):
    model = _Policy()
    marker = tmp_path / "ran.txt"
    root = _deepspeed_dir(tmp_path / "ds", "global_step5", model.state_dict(), {"epoch": 2}, marker)
    r = _run_json([str(root)], tmp_path, capsys)
    assert r["format"] == "deepspeed" and r["tag"] == "global_step5"
    assert r["global_step"] == 5 and r["epoch"] == 2 and r["versions"]["ds_version"] == "0.19.8"
    assert r["state_dict"]["num_elements"] == _numel(model)
    (skipped,) = r["skipped_files"]
    assert skipped["file"].endswith("zero_pp_rank_0_mp_rank_00_optim_states.pt")
    assert "builtins.exec" in skipped["needs_globals"]
    assert not marker.exists()


def test_lightning_deepspeed_directory_layout(tmp_path, capsys):
    """Lightning's DeepSpeedStrategy.save_checkpoint: tag 'checkpoint', Lightning keys as client state,
    module keys under `_forward_module.`."""
    model = _Policy()
    module_state = {f"_forward_module.model.{k}": v for k, v in model.state_dict().items()}
    client = {"epoch": 4, "global_step": 99, "pytorch-lightning_version": "2.6.6", "loops": {}, "callbacks": {},
              "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": {"lr": 2e-5}}
    root = _deepspeed_dir(tmp_path / "last.ckpt", "checkpoint", module_state, client, tmp_path / "m")
    r = _run_json([str(root)], tmp_path, capsys)
    assert r["format"] == "lightning_deepspeed" and r["tag"] == "checkpoint"
    assert r["epoch"] == 4 and r["global_step"] == 99 and r["hyper_parameters"] == {"lr": 2e-5}
    assert r["state_dict"]["numel_by_prefix_depth1"] == {"model": _numel(model)}


# ------------------------------------------------------------------------------------------ refusals
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "payload": _Explodes(str(marker))}, f)
    assert cli_main(["analyze", "checkpoint", str(path), "--output-json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "builtins.exec" in err and "refused" in err
    assert not marker.exists() and not (tmp_path / "o.json").exists()
    # the same payload inside a torch zip checkpoint
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": _Explodes(str(marker))}, tmp_path / "evil.pt")
    assert cli_main(["analyze", "checkpoint", str(tmp_path / "evil.pt")]) == 2
    assert "builtins.exec" in capsys.readouterr().err and not marker.exists()


def test_namespace_hyperparameters_are_refused_by_name(tmp_path, capsys):
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": argparse.Namespace(lr=1.0)},
               tmp_path / "ns.ckpt")
    assert cli_main(["analyze", "checkpoint", str(tmp_path / "ns.ckpt")]) == 2
    assert "argparse.Namespace" in capsys.readouterr().err


def test_missing_and_garbage_files(tmp_path, capsys):
    assert cli_main(["analyze", "checkpoint", str(tmp_path / "none.ckpt")]) == 2
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert cli_main(["analyze", "checkpoint", str(tmp_path / "junk.pt")]) == 2
    assert "junk.pt" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ real DeepSpeed
_DS_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from torch import nn
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed

    class Wrapper(nn.Module):  # Lightning's wrapper: the LightningModule under `_forward_module`
        def __init__(self, m):
            super().__init__()
            self._forward_module = m
        def forward(self, x):
            return self._forward_module(x)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    cfg = {"train_batch_size": 2, "zero_optimization": {"stage": 2},
           "optimizer": {"type": "Adam", "params": {"lr": 1e-3, "torch_adam": True}}}
    for name, model, tag, client in (("ds", net, None, {"epoch": 1}),
                                     ("lightning.ckpt", Wrapper(nn.Linear(4, 2)), "checkpoint",
                                      {"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.6.6"})):
        engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
        loss = engine(torch.randn(2, 4)).sum()
        engine.backward(loss)
        engine.step()
        engine.save_checkpoint(os.path.join(sys.argv[1], name), tag=tag, client_state=client)
""")


@pytest.mark.slow
def test_real_deepspeed_checkpoints(tmp_path, capsys):
    """ZeRO-2 checkpoints written by DeepSpeed's own engine on CPU (plain and in Lightning's layout)."""
    pytest.importorskip("deepspeed")
    script = tmp_path / "write_ds.py"
    script.write_text(_DS_SCRIPT)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), "29581"], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = _run_json([str(tmp_path / "ds")], tmp_path, capsys)
    assert r["format"] == "deepspeed" and r["tag"] == "global_step1" and r["global_step"] == 1
    assert r["state_dict"]["num_elements"] == 4 * 8 + 8 + 8 * 2 + 2
    (skipped,) = r["skipped_files"]
    assert any(g.startswith("deepspeed.") for g in skipped["needs_globals"])
    r = _run_json([str(tmp_path / "lightning.ckpt")], tmp_path, capsys)
    assert r["format"] == "lightning_deepspeed" and r["tag"] == "checkpoint"
    assert r["state_dict"]["numel_by_prefix_depth1"] == {"weight": 8, "bias": 2}
