"""RoboVLM recipe: `hf-vlmdrive train robovlm` on synthetic episodes, resume, frozen backbone / LoRA, model card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("h5py")

from hf_vlmdrive.cli import main as cli_main  # noqa: E402

TINY = ["--synthetic_episodes", "6", "--synthetic_eval_episodes", "2", "--per_device_train_batch_size", "4",
        "--model_config", json.dumps({"head_hidden_size": 32, "head_num_layers": 2, "head_mlp_sizes": [32],
                                      "window_size": 3, "backbone_config": {"text_config": {"embed_dim": 32,
                                      "ffn_dim": 64}, "vision_config": {"hidden_size": 32, "intermediate_size": 64}}}),
        "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true"]


def _run(out, *extra):
    return cli_main(["train", "robovlm", "--output_dir", str(out), *TINY, *extra])


def test_train_resume_and_reload(tmp_path):
    from transformers import AutoModel, AutoProcessor

    import hf_vlmdrive  # noqa: F401

    out = tmp_path / "run"
    assert _run(out, "--max_steps", "4", "--save_steps", "2") == 0
    assert (out / "checkpoint-2").is_dir() and (out / "checkpoint-4").is_dir()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["global_step"] == 4 and np.isfinite(metrics["model"]["mse"])
    card = (out / "README.md").read_text()
    assert "robovlm" in card and "action_mse" in card and "kosmos-2" in card
    # resume from the last checkpoint and continue to step 6
    assert _run(out, "--max_steps", "6", "--save_steps", "2", "--resume_from_checkpoint", "last") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["global_step"] == 6
    assert len(metrics["train"]["logged_losses"]) >= 2  # steps 5 and 6 (the log history is restored)
    model = AutoModel.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    frames = [np.zeros((32, 32, 3), np.uint8)] * 3
    inputs = processor(images=[frames], text=["horizontal left"])
    with torch.no_grad():
        assert model(**inputs).actions.shape == (1, 3, 1, 2)


def test_frozen_backbone_and_lora(tmp_path):
    from transformers import AutoModel

    import hf_vlmdrive  # noqa: F401

    out = tmp_path / "frozen"
    assert _run(out, "--max_steps", "3", "--save_strategy", "no", "--model_config.freeze_backbone", "true") == 0
    model = AutoModel.from_pretrained(out)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.policy_head.parameters())
    out = tmp_path / "lora"
    assert _run(out, "--max_steps", "3", "--save_strategy", "no", "--model_config.lora.r", "4") == 0
    model = AutoModel.from_pretrained(out)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    assert trainable and all("lora_" in n for n in trainable)
    assert "LoRA r=4" in (out / "README.md").read_text()


def test_bad_data_dir_is_a_user_error(tmp_path, capsys):
    assert cli_main(["train", "robovlm", "--output_dir", str(tmp_path / "x"), "--data_dir", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_model_config_fails_before_writing_data(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["train", "robovlm", "--output_dir", str(out), "--model_config.head_type", "rnn"]) == 2
    assert "head_type" in capsys.readouterr().err and not out.exists()
