"""Convert a RoboVLMs checkpoint (github:Robot-VLAs/RoboVLMs) into a `RoboVLMForActionPrediction` directory.

Accepted inputs: everything `hf_vlmdrive.analysis.checkpoint` reads safely (`weights_only=True` only): a Lightning
`.ckpt` (RoboVLMs' `BaseTrainer` is a LightningModule holding the policy as `self.model`), a `torch.save` file with
`state_dict` / `model_state_dict` (RoboVLMs' `model_load_path` convention), a DeepSpeed directory or a
Lightning-DeepSpeed directory (`latest` + `<tag>/mp_rank_00_model_states.pt`), or safetensors.

Key mapping (RoboVLMs -> hf_vlmdrive), applied in order:

| RoboVLMs key                                   | hf_vlmdrive key                       |
|------------------------------------------------|---------------------------------------|
| `module.` / `_forward_module.` prefixes        | removed (DDP, DeepSpeed, Lightning)   |
| `model.` prefix (the LightningModule's policy) | removed                               |
| `backbone.<Kosmos2ForConditionalGeneration>`   | `backbone.<same>`                     |
| `act_head.<name>`                              | `policy_head.<name>` (same names: `rnn.*`, `actions.mlp.*`, `gripper.mlp.*`, `mlp.*`, `gpt.*`, `fc.*`) |
| `action_token` (D,)                            | `action_token` (1, D)                 |
| anything else (`fwd_head`, `vision_resampler`, `clip_norm_head`, `embed_*state*`, GPT `attn.bias` buffers) | reported as unexpected, dropped |

The head's sizes are read from the weights (LSTM hidden size and layers, MLP widths, gripper or not, action
dimension) and, when the checkpoint carries RoboVLMs' `hyper_parameters`, from its `act_head`, `window_size` and
`fwd_pred_next_n`. RoboVLMs saves only trainable parameters (`get_checkpoint` drops frozen ones), so missing backbone
weights are taken from `--backbone` (the pretrained Kosmos-2) and listed as filled.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError

logger = logging.getLogger(__name__)

HEAD_TYPES = {"LSTMDecoder": "lstm", "FCDecoder": "mlp", "GPTDecoder": "gpt"}
_UNUSED_MISSING = ("policy_head.gpt.wte.weight",)  # our GPT-2 head has a 1-token embedding RoboVLMs' lacks


def map_robovlms_key(key: str) -> str | None:
    """The hf_vlmdrive name of a RoboVLMs state-dict key (see the table in the module docstring), None to drop it."""
    from ...analysis.checkpoint import strip_wrapper_prefix

    k = strip_wrapper_prefix(key)
    if k.startswith("model."):
        k = k[len("model."):]
    if k.startswith("backbone.") or k == "action_token":
        return k
    if k.startswith("act_head."):
        return "policy_head." + k[len("act_head."):]
    return None


def map_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(mapped state dict, RoboVLMs keys without a counterpart)."""
    mapped, dropped = {}, []
    for key, value in state_dict.items():
        new = map_robovlms_key(key)
        if new is None or re.search(r"\.attn\.(masked_)?bias$", new):
            dropped.append(key)
            continue
        if new == "action_token" and value.ndim == 1:
            value = value[None]  # (D,) -> (latent=1, D)
        mapped[new] = value
    return mapped, dropped


def _linear_widths(sd: dict, prefix: str) -> list[tuple[int, int]]:
    idx = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", k)))
    return [tuple(sd[f"{prefix}{i}.weight"].shape) for i in idx]  # (out, in) per Linear


def infer_head_config(sd: dict[str, torch.Tensor], hparams: dict | None = None) -> dict[str, Any]:
    """RoboVLMConfig head fields from a mapped state dict (and RoboVLMs' hyper_parameters when given)."""
    configs = (hparams or {}).get("configs", hparams or {}) if isinstance(hparams, dict) else {}
    act = configs.get("act_head") or {}
    head_type = HEAD_TYPES.get(act.get("type", ""))
    if head_type is None:
        head_type = ("lstm" if any(k.startswith("policy_head.rnn.") for k in sd) else
                     "gpt" if any(k.startswith("policy_head.gpt.") for k in sd) else "mlp")
    out: dict[str, Any] = {"head_type": head_type}
    chunk = int(act.get("fwd_pred_next_n", configs.get("fwd_pred_next_n", 1)) or 1)
    out["action_chunk_size"] = chunk
    if "window_size" in configs:
        out["window_size"] = int(configs["window_size"])
    widths = _linear_widths(sd, "policy_head.actions.mlp.")
    if not widths:
        raise UserError("the checkpoint has no act_head.actions.mlp.* weights: not a RoboVLMs continuous policy")
    out["head_mlp_sizes"] = [w[0] for w in widths[:-1]]
    use_gripper = any(k.startswith("policy_head.gripper.") for k in sd)
    out["use_gripper"] = use_gripper
    out["action_dim"] = widths[-1][0] // chunk + (1 if use_gripper else 0)
    if head_type == "lstm":
        out["head_hidden_size"] = int(sd["policy_head.rnn.weight_hh_l0"].shape[1])
        out["head_num_layers"] = len([k for k in sd if re.fullmatch(r"policy_head\.rnn\.weight_ih_l\d+", k)])
    elif head_type == "gpt":
        out["head_hidden_size"] = int(widths[0][1])
        out["gpt_num_layers"] = len({k.split(".")[3] for k in sd if k.startswith("policy_head.gpt.h.")})
        out["window_size"] = int(sd["policy_head.gpt.wpe.weight"].shape[0])
        if "n_head" in act or "gpt_num_heads" in act:
            out["gpt_num_heads"] = int(act.get("n_head", act.get("gpt_num_heads")))
    else:
        out["head_hidden_size"] = int(sd["policy_head.mlp.2.weight"].shape[0])
    if "action_token" in sd:
        out["num_action_tokens"] = int(sd["action_token"].shape[0])
    return out


def convert_robovlms_checkpoint(checkpoint: str | Path, backbone: str, output_dir: str | Path,
                                config_overrides: dict | None = None, save_processor: bool = True) -> dict:
    """Load a RoboVLMs checkpoint safely, map it onto the family, fill missing backbone weights from `backbone`,
    and `save_pretrained` to `output_dir`. Returns the report (also written as `conversion_report.json`)."""
    from ...analysis.checkpoint import load_state_dict
    from ...hub import check_model_source
    from .modeling_robovlm import RoboVLMForActionPrediction

    raw, meta = load_state_dict(checkpoint)
    mapped, dropped = map_state_dict(raw)
    head = infer_head_config(mapped, meta.get("hyper_parameters"))
    head.update(config_overrides or {})
    source = check_model_source(backbone, "--backbone")
    model = RoboVLMForActionPrediction.from_backbone(source, **head)
    own = model.state_dict()
    shape_mismatch = [k for k, v in mapped.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if shape_mismatch:
        raise UserError(f"{checkpoint}: tensors do not fit the model built from {backbone} and the inferred head "
                        f"{head}: " + ", ".join(f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}"
                                                for k in shape_mismatch[:5]))
    result = model.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if k not in _UNUSED_MISSING]
    filled = [k for k in missing if k.startswith("backbone.")]
    not_filled = [k for k in missing if not k.startswith("backbone.")]
    if not_filled:
        raise UserError(f"{checkpoint}: the policy's own weights {not_filled[:8]} are missing; is this a RoboVLMs "
                        "checkpoint of a continuous-action policy?")
    out = Path(output_dir)
    model.save_pretrained(out)
    processor_saved = False
    if save_processor:
        try:
            from .processing_robovlm import RoboVLMProcessor

            RoboVLMProcessor.from_backbone(source).save_pretrained(out)
            processor_saved = True
        except (OSError, ValueError, TypeError) as err:
            logger.warning("no processor saved (the backbone %s has none loadable: %s)", backbone, err)
    report = {
        "checkpoint": str(checkpoint), "format": meta.get("format"), "backbone": str(backbone),
        "output_dir": str(out), "head_config": head, "loaded_tensors": len(mapped) - len(result.unexpected_keys),
        "unexpected_keys": sorted(dropped + list(result.unexpected_keys)),
        "missing_keys_filled_from_backbone": len(filled), "missing_keys_filled_examples": filled[:10],
        "processor_saved": processor_saved, "epoch": meta.get("epoch"), "global_step": meta.get("global_step"),
    }
    (out / "conversion_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    """`hf-vlmdrive convert robovlms CHECKPOINT --backbone DIR_OR_ID --output_dir OUT`."""
    from ...arguments import ArgumentParser

    p = ArgumentParser(prog="hf-vlmdrive convert robovlms",
                                description="Convert a RoboVLMs checkpoint (.ckpt, .pt, DeepSpeed dir, safetensors) "
                                            "into a save_pretrained directory (loaded with weights_only=True).")
    p.add_argument("checkpoint")
    p.add_argument("--backbone", default="microsoft/kosmos-2-patch14-224",
                   help="the Kosmos-2 the policy was trained from (Hub id or directory)")
    p.add_argument("--output_dir", "--output-dir", dest="output_dir", required=True)
    p.add_argument("--config", default=None,
                   help="JSON of RoboVLMConfig overrides (e.g. '{\"window_size\": 16, \"action_low\": -0.65}')")
    a = p.parse_args(argv)
    overrides = None
    if a.config:
        try:
            overrides = json.loads(a.config)
        except ValueError as err:
            raise UserError(f"--config must be a JSON object of RoboVLMConfig fields, got {a.config!r}: {err}") from None
    report = convert_robovlms_checkpoint(a.checkpoint, a.backbone, a.output_dir, overrides)
    print(json.dumps({k: report[k] for k in ("output_dir", "format", "head_config", "loaded_tensors",
                                             "missing_keys_filled_from_backbone", "unexpected_keys")}))
    return 0


__all__ = ["convert_robovlms_checkpoint", "infer_head_config", "main", "map_robovlms_key", "map_state_dict"]
