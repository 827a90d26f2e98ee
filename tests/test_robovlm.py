"""RoboVLM family: parity with an independent port of RoboVLMs' forward, heads and reset() (the shared contract
runs in test_family_contract.py)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

import hf_vlmdrive  # noqa: F401  (registers the Auto classes)
from hf_vlmdrive.models.robovlm import RoboVLMForActionPrediction
from hf_vlmdrive.testing.tiny_kosmos2 import build_tiny_robovlm_processor
from hf_vlmdrive.testing.tiny_models import TINY_ROBOVLM_HEAD as TINY_HEAD
from hf_vlmdrive.testing.tiny_models import tiny_robovlm_config as _tiny


def _frames(batch: int, window: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(window)] for _ in range(batch)]


def _inputs(batch=2, window=3, action_dim=2, gripper=False, seed=0, texts=None):
    proc = build_tiny_robovlm_processor()
    rng = np.random.default_rng(seed + 1)
    actions = rng.uniform(-0.9, 0.9, size=(batch, window, 1, action_dim)).astype(np.float32)
    if gripper:
        actions[..., -1] = rng.integers(0, 2, size=(batch, window, 1))
    texts = texts or ["horizontal left", "horizontal right"][:batch]
    return dict(proc(images=_frames(batch, window, seed), text=texts, actions=actions))


# ------------------------------------------------------------------------------------------ RoboVLMs port
def _ref_mlp(seq: torch.nn.Sequential, x):
    """RoboVLMs MLPTanhHead / MLPSigmoidHead, layer by layer from the weights."""
    for layer in seq:
        if isinstance(layer, torch.nn.Linear):
            x = x @ layer.weight.T + layer.bias
        elif isinstance(layer, torch.nn.ReLU):
            x = x.clamp_min(0)
        elif isinstance(layer, torch.nn.Tanh):
            x = torch.tanh(x)
    return x


def _ref_lstm(rnn: torch.nn.LSTM, x):
    """A unidirectional batch-first LSTM written from its equations (gate order i, f, g, o), zero initial state."""
    b, t, _ = x.shape
    for layer in range(rnn.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
        h = x.new_zeros(b, rnn.hidden_size)
        c = x.new_zeros(b, rnn.hidden_size)
        outs = []
        for step in range(t):
            gates = x[:, step] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        x = torch.stack(outs, dim=1)
    return x


def _ref_context(model, vision_x, lang_x, attention_mask):
    """RoboVLMs `forward_continuous` up to `action_hs` (history "post", latent 1, unpadded prompts): image tokens
    after <s> (`merge_multi_modal_input(insert_idx=bos_offset)`), the action token at `shape[1] - eos_offset`,
    the backbone's last hidden state (`hidden_states[-1]`) at the action token."""
    kosmos = model.backbone
    bs, seq_len = vision_x.shape[:2]
    vision_x = vision_x.reshape(bs * seq_len, *vision_x.shape[2:])
    lang_x = lang_x.unsqueeze(1).repeat(1, seq_len, 1).flatten(0, 1)
    attention_mask = attention_mask.unsqueeze(1).repeat(1, seq_len, 1).flatten(0, 1).bool()
    # RoboKosMos.model_encode_images
    out = kosmos.vision_model(pixel_values=vision_x)
    image_embeds = kosmos.vision_model.model.post_layernorm(out[0])
    image_embeds = F.normalize(image_embeds, dim=-1)
    image_embeds, _ = kosmos.image_to_text_projection(image_embeds)
    input_embeds = kosmos.text_model.model.embed_tokens(lang_x)
    mm = torch.cat([input_embeds[:, :1], image_embeds, input_embeds[:, 1:]], dim=1)
    mask = torch.cat([attention_mask[:, :1], torch.ones(mm.shape[0], image_embeds.shape[1], dtype=torch.bool),
                      attention_mask[:, 1:]], dim=1)
    idx = mm.shape[1] - 1
    tok = model.action_token[0].expand(mm.shape[0], 1, -1)
    mm = torch.cat([mm[:, :idx], tok, mm[:, idx:]], dim=1)
    mask = torch.cat([mask[:, :idx], torch.ones(mm.shape[0], 1, dtype=torch.bool), mask[:, idx:]], dim=1)
    hs = kosmos.text_model(inputs_embeds=mm, attention_mask=mask.long(), output_hidden_states=True).hidden_states[-1]
    return hs[:, idx].reshape(bs, seq_len, 1, -1)


@pytest.fixture(scope="module")
def gripper_model():
    torch.manual_seed(0)
    model = RoboVLMForActionPrediction(_tiny(action_dim=7, use_gripper=True)).eval()
    with torch.no_grad():
        model.action_token.normal_(0, 0.5)
    return model


def test_matches_robovlms_forward_and_loss(gripper_model):
    """Context vector, LSTM head, tanh arm, gripper logit and Huber + 0.01 * BCE equal the independent port."""
    model = gripper_model
    inputs = _inputs(window=3, action_dim=7, gripper=True, texts=["horizontal left", "horizontal right"])
    assert inputs["attention_mask"].all(), "the parity case uses unpadded prompts"
    with torch.no_grad():
        out = model(**inputs)
        ctx = _ref_context(model, inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
        feats = _ref_lstm(model.policy_head.rnn, ctx.flatten(2))
        arm = _ref_mlp(model.policy_head.actions.mlp, feats)[:, :, None]  # (B, L, 1, 6)
        grip = _ref_mlp(model.policy_head.gripper.mlp, feats)  # (B, L, 1)
        labels = inputs["actions"]
        ref_loss = F.huber_loss(arm, labels[..., :6]) + 0.01 * F.binary_cross_entropy_with_logits(
            grip, labels[..., 6])
    torch.testing.assert_close(out.context_vectors, ctx, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.actions[..., :6], arm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.gripper_logits, grip, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.actions[..., 6], torch.sigmoid(grip), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref_loss, atol=1e-6, rtol=1e-5)


def test_streaming_history_and_reset(gripper_model):
    """predict_action remembers frames like RoboVLMs' LSTMDecoder: carried state up to window_size frames, then
    the last window_size frames from a zero state; reset() starts a new episode."""
    model = gripper_model
    w = model.config.window_size
    steps = w + 2
    inputs = _inputs(batch=1, window=steps, action_dim=7, gripper=True, texts=["horizontal left"])
    pv, ids, mask = inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        ctx = _ref_context(model, pv, ids, mask).flatten(2)  # (1, steps, D)
        model.reset()
        got = [model.predict_action(pv[:, t], ids, mask) for t in range(steps)]
        for t in range(steps):
            feats = _ref_lstm(model.policy_head.rnn, ctx[:, max(0, t + 1 - w): t + 1])[:, -1]
            expected = _ref_mlp(model.policy_head.actions.mlp, feats)
            torch.testing.assert_close(got[t][:, 0, :6], expected, atol=1e-5, rtol=1e-5)
        assert len(model.policy_head.history) == w
        # Without reset the next call continues the old episode; after reset it equals the first step.
        continued = model.predict_action(pv[:, 0], ids, mask)
        model.reset()
        assert model.policy_head.history == [] and model.policy_head.hidden_state is None
        fresh = model.predict_action(pv[:, 0], ids, mask)
    torch.testing.assert_close(fresh, got[0])
    assert not torch.allclose(continued, got[0])


@pytest.mark.parametrize("head_type", ["lstm", "mlp", "gpt"])
def test_head_shapes_and_bounds(head_type):
    """Every head: (B, L, chunk, A) actions inside [action_low, action_high]; context vectors (B, L, 1, D)."""
    torch.manual_seed(0)
    low, high = [-0.5, -2.0], [0.5, 2.0]
    model = RoboVLMForActionPrediction(_tiny(head_type=head_type, action_chunk_size=2, action_low=low,
                                             action_high=high)).eval()
    inputs = _inputs(window=3)
    inputs.pop("actions")
    with torch.no_grad():
        out = model(**inputs)
        model.reset()
        step = model.predict_action(inputs["pixel_values"][:, 0], inputs["input_ids"], inputs["attention_mask"])
    assert out.actions.shape == (2, 3, 2, 2)
    assert out.context_vectors.shape == (2, 3, 1, 32)
    assert step.shape == (2, 2, 2)
    for i in range(2):
        assert (out.actions[..., i] >= low[i]).all() and (out.actions[..., i] <= high[i]).all()
    # The first streamed step sees one frame, like the first frame of a window (causal heads / per-frame MLP).
    torch.testing.assert_close(step, out.actions[:, 0], atol=1e-5, rtol=1e-5)


def test_padded_prompts_put_the_action_token_before_each_eos():
    """With prompts of different lengths, the action token of each row sits right before its own </s>."""
    torch.manual_seed(0)
    model = RoboVLMForActionPrediction(_tiny()).eval()
    inputs = _inputs(window=1, texts=["left", "go straight to the red box"])
    assert not inputs["attention_mask"].all()
    with torch.no_grad():
        pv, mask = model._check_inputs(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
        embeds, seq_mask, act = model.build_sequence(pv, inputs["input_ids"], mask)
    n_img = model.config.backbone_config.latent_query_num
    for row in range(2):
        length = int(inputs["attention_mask"][row].sum())
        pos = int(act[row].nonzero()[0])
        assert pos == n_img + length - 1  # bos + image + text (without </s>) before it
        assert int(seq_mask[row].sum()) == length + n_img + 1
        eos = model.get_input_embeddings()(torch.tensor(2))
        torch.testing.assert_close(embeds[row, pos + 1], eos)


def test_mse_loss_in_normalised_space():
    """loss_type=mse: MSE between tanh outputs and labels mapped from [low, high] to [-1, 1] (clipped)."""
    torch.manual_seed(0)
    model = RoboVLMForActionPrediction(_tiny(loss_type="mse", action_low=[0.0, -2.0], action_high=[1.0, 2.0])).eval()
    inputs = _inputs(window=2)
    inputs["actions"] = torch.tensor([[[[0.25, 3.0]], [[1.0, -1.0]]], [[[0.5, 0.0]], [[-1.0, 1.0]]]])
    with torch.no_grad():
        out = model(**inputs)
    low, high = torch.tensor([0.0, -2.0]), torch.tensor([1.0, 2.0])
    pred_norm = (out.actions - low) / (high - low) * 2 - 1
    target = (inputs["actions"].clamp(low, high) - low) / (high - low) * 2 - 1
    torch.testing.assert_close(out.loss, F.mse_loss(pred_norm, target), atol=1e-5, rtol=1e-5)


def test_lora_on_the_language_model(tmp_path):
    """LoRA: only adapters, the action token and the head train; round trip through AutoModel is exact."""
    torch.manual_seed(0)
    model = RoboVLMForActionPrediction(_tiny(lora={"r": 4}))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert all(n.startswith(("policy_head.", "action_token")) or "lora_" in n for n in trainable)
    inputs = _inputs()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
        expected = model.eval()(**copy.deepcopy(inputs)).actions
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        got = loaded(**copy.deepcopy(inputs)).actions
    assert torch.equal(expected, got)
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == trainable


def test_from_backbone_loads_a_saved_kosmos2(tmp_path):
    """from_backbone(dir) loads the Kosmos-2 weights into the backbone; the head is new."""
    from transformers import Kosmos2ForConditionalGeneration

    from hf_vlmdrive.testing.tiny_kosmos2 import save_tiny_kosmos2

    save_tiny_kosmos2(tmp_path / "kosmos", seed=3)
    model = RoboVLMForActionPrediction.from_backbone(str(tmp_path / "kosmos"), **TINY_HEAD)
    ref = Kosmos2ForConditionalGeneration.from_pretrained(tmp_path / "kosmos")
    for name, tensor in ref.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name
    assert model.config.backbone_name_or_path == str(tmp_path / "kosmos")
    with pytest.raises(ValueError, match="no such directory"):
        RoboVLMForActionPrediction.from_backbone(str(tmp_path / "missing" / "x" / "y"))


# ------------------------------------------------------------------------------------------ conversion
def _as_robovlms(state: dict) -> dict:
    """Our state dict under RoboVLMs' names (the policy as `model.` of the LightningModule)."""
    out = {}
    for k, v in state.items():
        if k == "action_token":
            out["model.action_token"] = v[0]  # RoboVLMs: (hidden,)
        elif k.startswith("policy_head."):
            out["model.act_head." + k[len("policy_head."):]] = v
        else:
            out["model." + k] = v
    return out


@pytest.mark.parametrize("layout", ["lightning", "deepspeed"])
def test_convert_robovlms_checkpoint(tmp_path, layout, capsys):
    """A RoboVLMs-layout checkpoint (frozen vision weights left out, as RoboVLMs' get_checkpoint does) converts into
    a directory whose model predicts exactly what the original did."""
    from hf_vlmdrive.cli import main as cli_main
    from hf_vlmdrive.testing.tiny_kosmos2 import save_tiny_kosmos2

    kosmos = save_tiny_kosmos2(tmp_path / "kosmos", seed=5)
    torch.manual_seed(0)
    original = RoboVLMForActionPrediction.from_backbone(str(kosmos), **{**TINY_HEAD, "action_dim": 7,
                                                                        "use_gripper": True}).eval()
    with torch.no_grad():
        original.action_token.normal_()
        for p in original.backbone.text_model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # fine-tuned LM, unlike the pretrained one
    sd = {k: v for k, v in _as_robovlms(original.state_dict()).items() if ".vision_model." not in k}
    sd["model.fwd_head.proj.weight"] = torch.zeros(2, 2)  # a RoboVLMs part without a counterpart
    hp = {"configs": {"act_head": {"type": "LSTMDecoder", "fwd_pred_next_n": 1}, "window_size": 3}}
    if layout == "lightning":
        ckpt = tmp_path / "epoch=1.ckpt"
        torch.save({"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.0.0", "state_dict": sd,
                    "hyper_parameters": hp}, ckpt)
    else:
        ckpt = tmp_path / "ds"
        (ckpt / "global_step10").mkdir(parents=True)
        torch.save({"module": {"module." + k: v for k, v in sd.items()}, "global_steps": 10, "ds_version": "0.19.8"},
                   ckpt / "global_step10" / "mp_rank_00_model_states.pt")
        (ckpt / "latest").write_text("global_step10")
    out = tmp_path / "converted"
    assert cli_main(["convert", "robovlms", str(ckpt), "--backbone", str(kosmos), "--output_dir", str(out)]) == 0
    report = json.loads((out / "conversion_report.json").read_text())
    assert any("fwd_head" in k for k in report["unexpected_keys"])
    assert report["missing_keys_filled_from_backbone"] == sum(".vision_model." in k for k in original.state_dict())
    assert report["head_config"]["use_gripper"] and report["head_config"]["action_dim"] == 7
    loaded = AutoModel.from_pretrained(out).eval()
    inputs = _inputs(window=3, action_dim=7, gripper=True)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).actions, original(**inputs).actions)
    from transformers import AutoProcessor

    assert type(AutoProcessor.from_pretrained(out)).__name__ == "RoboVLMProcessor"


@pytest.mark.parametrize("head_type", ["mlp", "gpt"])
def test_convert_other_heads(tmp_path, head_type):
    """FCDecoder / GPTDecoder checkpoints: the head type and sizes are inferred from the weights alone."""
    from hf_vlmdrive.models.robovlm.convert_robovlms import convert_robovlms_checkpoint
    from hf_vlmdrive.testing.tiny_kosmos2 import save_tiny_kosmos2

    kosmos = save_tiny_kosmos2(tmp_path / "kosmos", seed=1)
    torch.manual_seed(0)
    original = RoboVLMForActionPrediction.from_backbone(str(kosmos), **{**TINY_HEAD, "head_type": head_type,
                                                                        "gpt_num_heads": 8}).eval()
    sd = {k: v for k, v in _as_robovlms(original.state_dict()).items() if not k.endswith("gpt.wte.weight")}
    torch.save({"state_dict": sd}, tmp_path / "policy.pt")  # no hyper_parameters
    report = convert_robovlms_checkpoint(tmp_path / "policy.pt", str(kosmos), tmp_path / "out")
    assert report["head_config"]["head_type"] == head_type and report["head_config"]["head_hidden_size"] == 32
    loaded = AutoModel.from_pretrained(tmp_path / "out").eval()
    inputs = _inputs(window=3)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).actions, original(**inputs).actions)
