"""Model cards for every family, from one mechanism: `write_model_card` renders `templates/<family>.md`.

    from hf_vlmdrive.model_card import write_model_card

    write_model_card(
        output_dir, model, family="simlingo",
        metrics={"route_ade": 0.81}, baselines={"straight line": {"route_ade": 0.97}},
        protocol="ADE in m over 20 route points, 64 held-out frames, seed 0",
        train_data="synthetic CARLA layout, 48 routes", eval_data="synthetic CARLA layout, 16 routes (seed 7919)",
        base_model="llava-hf/llava-v1.6-mistral-7b-hf", datasets=["my-org/carla-routes"],
    )  # -> <output_dir>/README.md

The README starts with YAML metadata (huggingface_hub `ModelCardData`): `library_name: hf_vlmdrive`, `license`,
`tags` (hf_vlmdrive, the family, the family's task tags), `datasets`, `metrics` (the metric names), a
`model-index` with the model's values, `metrics_protocol` (how they were measured), and `base_model` when it
is a Hub id. Links are never made up: the usage snippet names `repo_id` when one is given (e.g. by
`hf-vlmdrive push`), else the output directory's name; a local base model or dataset is named by its
directory name in the text, not linked and not put into `base_model`.

Templates are Jinja files in `hf_vlmdrive/templates/`. `_base.md` holds the common layout (metadata, summary,
use, training data, evaluation table, limitations); a family template `{% extends "_base.md" %}` and fills
the blocks `description` and `usage`. A family without a template gets `_base.md` as it is. Every template
sees: `model_name`, `family`, `repo_or_dir`, `config` (the model's config, or None), `model_type`,
`trainable_params`, `total_params`, `base_model_text`, `train_data`, `eval_data`, `metrics_table`, `protocol`,
`limitations`, `extra` (the `template_vars` given) and each template variable by its own name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATES = Path(__file__).parent / "templates"
CARD_NAME = "README.md"

# Per family: (pipeline_tag, task tags, model-index task type). A family not listed gets "robotics" / no tags.
FAMILY_TAGS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "waypoint_vlm": ("robotics", ("autonomous-driving", "trajectory-prediction"), "trajectory-prediction"),
    "simlingo": ("robotics", ("autonomous-driving", "trajectory-prediction", "carla"), "trajectory-prediction"),
    "geovla": ("robotics", ("vision-language-action", "flow-matching", "libero"), "robotics"),
    "roadscene": ("image-text-to-text", ("road-scene", "captioning", "bvpi", "smolvlm"), "image-text-to-text"),
    "flamingo": ("image-text-to-text", ("road-scene", "captioning", "flamingo"), "image-text-to-text"),
    "robovlm": ("robotics", ("vision-language-action", "mobile-robot", "kosmos-2"), "robotics"),
}
DEFAULT_LIMITATIONS = (
    "Trained and evaluated on the data named above only; the figures say nothing about other data. "
    "Not a driving or robot policy for real vehicles or robots."
)


def is_hub_id(value: str | None) -> bool:
    """True when `value` is a valid Hub repo id ('name' or 'org/name') and not an existing local path."""
    if not value or os.path.exists(os.path.expanduser(str(value))):
        return False
    value = str(value)
    if value.startswith((".", "/", "~")) or value.count("/") > 1 or ":" in value:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def display_name(value: str | Path) -> str:
    """How a card names a model or data source: a Hub id as it is; a local path by its last component; anything else (e.g. 'synthetic:200:1') as it is."""
    value = str(value)
    if is_hub_id(value):
        return value
    path = Path(value.rstrip("/\\"))
    return path.name if (os.sep in value or "/" in value or path.exists()) and path.name else value


def _numbers(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The finite numeric entries of `metrics` (bools, strings, nested dicts and NaN dropped)."""
    out = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def metrics_markdown(metrics: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]] | None = None,
                     protocol: str | None = None) -> str:
    """A markdown table: one row per numeric metric, a column for the model and one per baseline."""
    model = _numbers(metrics)
    base = {name: _numbers(vals) for name, vals in (baselines or {}).items()}
    if not model:
        return "No evaluation was run for this model."
    header = "| metric | model |" + "".join(f" {name} |" for name in base)
    lines = [header, "|---|---:|" + "---:|" * len(base)]
    for key, value in model.items():
        lines.append(f"| {key} | {_fmt(value)} |" + "".join(f" {_fmt(b.get(key))} |" for b in base.values()))
    if protocol:
        lines += ["", f"Protocol: {protocol}."]
    return "\n".join(lines)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def render_model_card(
    model=None,
    *,
    family: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    protocol: str | None = None,
    metrics_table: str | None = None,
    train_data: str | None = None,
    eval_data: str | None = None,
    base_model: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    output_dir: str | Path | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
    pipeline_tag: str | None = None,
    limitations: str | None = None,
    template: str | Path | None = None,
    **template_vars: Any,
) -> ModelCard:
    """A `ModelCard` for `model` (a `PreTrainedModel` or a PEFT model; None for a card without parameter counts).

    Args:
        model: the trained model; its config is available to the template as `config`.
        family (`str`, *optional*): template name and tag; defaults to `model.config.model_type`.
        metrics (`dict`, *optional*): the model's held-out (or training) figures {name: value}; non-numeric
            entries are ignored, except `"protocol"`, used when `protocol` is not given.
        baselines (`dict`, *optional*): {baseline name: {name: value}}, shown as columns next to the model.
        protocol (`str`, *optional*): how the figures were measured (metric convention, split, samples, seed).
        metrics_table (`str`, *optional*): a markdown table to show instead of the one built from `metrics`.
        train_data / eval_data (`str`, *optional*): what the model was trained / evaluated on, in words.
        base_model (`str` or list, *optional*): the pretrained model(s) it starts from; Hub ids go into the
            `base_model` metadata, local directories are named in the text only.
        datasets (`str` or list, *optional*): dataset Hub ids or names for the `datasets` metadata.
        repo_id (`str`, *optional*): the Hub repo the model is (or will be) published as; the usage snippet
            loads from it. Without it the snippet names the output directory by its name (`hf-vlmdrive push`
            puts the repo id in its place).
        model_name (`str`, *optional*): title; defaults to the repo id's name or the output directory's name.
        output_dir: where the model is saved (for the default name); `write_model_card` passes it.
        license, tags, pipeline_tag: metadata; tags are added to hf_vlmdrive, the family and its task tags.
        limitations (`str`, *optional*): the card's limitations paragraph.
        template (`str` or `Path`, *optional*): a template file to use instead of `templates/<family>.md`.
        **template_vars: extra variables for the family template.
    """
    import jinja2

    config = getattr(model, "config", None)
    family = family or getattr(config, "model_type", None) or "model"
    pipeline_default, family_tags, task_type = FAMILY_TAGS.get(family, ("robotics", (), "robotics"))
    metrics = dict(metrics or {})
    if protocol is None and isinstance(metrics.get("protocol"), str):
        protocol = metrics["protocol"]
    values = _numbers(metrics)
    if repo_id is not None and not is_hub_id(repo_id):
        raise ValueError(f"repo_id {repo_id!r} is not a valid Hub repo id ('org/name')")
    # A local directory is named by its last component: absolute paths of this machine mean nothing on the Hub.
    repo_or_dir = repo_id or (Path(str(output_dir)).name if output_dir is not None else (model_name or family))
    name = model_name or (repo_id.split("/")[-1] if repo_id else Path(str(repo_or_dir)).name) or family
    bases = _as_list(base_model)
    hub_bases = [b for b in bases if is_hub_id(b)]
    base_model_text = ", ".join(
        f"[{b}](https://huggingface.co/{b})" if is_hub_id(b) else f"`{display_name(b)}` (a local model directory)"
        for b in bases
    ) or "none (weights initialised from the config)"
    dataset_names = [display_name(d) for d in _as_list(datasets)]
    eval_name = display_name(eval_data) if eval_data else (dataset_names[0] if dataset_names else "held-out data")
    eval_results = None
    if values:
        eval_results = [
            EvalResult(task_type=task_type, dataset_type=eval_name, dataset_name=eval_name, metric_type=key,
                       metric_value=value, metric_name=key, dataset_split="held-out" if eval_data else "train",
                       metric_args={"protocol": protocol} if protocol else None)
            for key, value in values.items()
        ]
    card_kwargs: dict[str, Any] = {}
    if protocol:
        card_kwargs["metrics_protocol"] = protocol
    card_data = ModelCardData(
        library_name="hf_vlmdrive",
        license=license,
        tags=list(dict.fromkeys(["hf_vlmdrive", family, *family_tags, *tags])),
        pipeline_tag=pipeline_tag or pipeline_default,
        model_name=name,
        base_model=(hub_bases[0] if len(hub_bases) == 1 else hub_bases) or None,
        datasets=dataset_names or None,
        metrics=sorted(values) or None,
        eval_results=eval_results,
        **card_kwargs,
    )
    trainable = total = None
    if model is not None and hasattr(model, "parameters"):
        params = list(model.parameters())
        # `ds_numel`: the full size of a parameter that DeepSpeed ZeRO-3 partitioned (its local tensor is empty)
        trainable = f"{sum(getattr(p, 'ds_numel', p.numel()) for p in params if p.requires_grad):,}"
        total = f"{sum(getattr(p, 'ds_numel', p.numel()) for p in params):,}"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(TEMPLATES)]), keep_trailing_newline=True)
    if template is not None:
        tmpl = env.from_string(Path(template).read_text(encoding="utf-8"))
    else:
        tmpl = env.get_template(f"{family}.md" if (TEMPLATES / f"{family}.md").is_file() else "_base.md")
    context = dict(
        card_data=card_data.to_yaml(),
        model_name=name,
        family=family,
        repo_or_dir=repo_or_dir,
        config=config,
        model_type=getattr(config, "model_type", family),
        trainable_params=trainable,
        total_params=total,
        base_model_text=base_model_text,
        train_data=train_data or "not recorded",
        eval_data=eval_data,
        metrics_table=metrics_table if metrics_table is not None else metrics_markdown(values, baselines, protocol),
        protocol=protocol,
        limitations=limitations or DEFAULT_LIMITATIONS,
        extra=template_vars,
        **template_vars,
    )
    return ModelCard(tmpl.render(**context))


def write_model_card(output_dir: str | Path, model=None, *, family: str | None = None, **kwargs: Any) -> Path:
    """Render the card (see `render_model_card` for every argument) and save it as `<output_dir>/README.md`.

    Returns the path written. This is what every `train` / `sft` command calls at the end of training:

        write_model_card(training_args.output_dir, model, family="geovla", metrics={"train_loss": 0.12},
                         protocol="flow-matching MSE, mean of the last 10 logged steps", train_data="...")
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = render_model_card(model, family=family, output_dir=kwargs.pop("output_dir", out), **kwargs)
    path = out / CARD_NAME
    card.save(path)
    return path


def last_logged_metrics(log_history: Sequence[Mapping[str, Any]], prefix: str = "eval_") -> dict[str, float]:
    """The newest Trainer log entry with `prefix` keys, with the prefix stripped (runtime figures dropped)."""
    skip = ("runtime", "samples_per_second", "steps_per_second", "epoch")
    for entry in reversed(list(log_history)):
        found = {k[len(prefix):]: v for k, v in entry.items()
                 if k.startswith(prefix) and not any(k.endswith(s) for s in skip)}
        if found:
            return _numbers(found)
    return {}


def train_loss_metrics(log_history: Sequence[Mapping[str, Any]], last: int = 10) -> dict[str, float]:
    """{'train_loss_first', 'train_loss_last'}: the first logged loss and the mean of the last `last` logged."""
    losses = [float(h["loss"]) for h in log_history if "loss" in h]
    if not losses:
        return {}
    tail = losses[-last:]
    return {"train_loss_first": losses[0], "train_loss_last": sum(tail) / len(tail)}


def _vision_state(cfg) -> str:
    """How the tower was trained: frozen, frozen with LoRA adapters (rank, targets), or fine-tuned."""
    lora = getattr(cfg, "lora", None)
    if lora:
        targets = "/".join(lora["target_modules"])
        return f"frozen, with LoRA adapters r={lora['r']} alpha={lora['lora_alpha']:g} on {targets}"
    return "frozen" if cfg.freeze_vision else "fine-tuned"


def render_waypoint_card(
    model,
    metrics_table: str,
    train_data: str,
    eval_data: str,
    repo_or_dir: str,
    metrics: dict | None = None,
    limitations: str = "Trained on procedural synthetic scenes; not a driving policy for real vehicles.",
    **kwargs: Any,
) -> ModelCard:
    """A `ModelCard` for a waypoint model (save it with `card.save(dir / "README.md")`); `render_model_card`
    with the waypoint_vlm template. `repo_or_dir` is a Hub id (used as `repo_id`) or the model's directory."""
    cfg = model.config
    where = {"repo_id": repo_or_dir} if is_hub_id(repo_or_dir) else {"output_dir": repo_or_dir}
    if cfg.backbone_name_or_path and "base_model" not in kwargs:
        kwargs["base_model"] = cfg.backbone_name_or_path
    return render_model_card(
        model, family="waypoint_vlm", metrics=metrics, metrics_table=metrics_table, train_data=train_data,
        eval_data=eval_data, limitations=limitations, vision_state=_vision_state(cfg), **where, **kwargs,
    )


__all__ = [
    "CARD_NAME",
    "FAMILY_TAGS",
    "display_name",
    "is_hub_id",
    "last_logged_metrics",
    "metrics_markdown",
    "render_model_card",
    "render_waypoint_card",
    "train_loss_metrics",
    "write_model_card",
]
