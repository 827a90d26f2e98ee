"""Model cards rendered from the templates shipped in `hf_vlmdrive/templates/`."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

TEMPLATES = Path(__file__).parent / "templates"


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
) -> ModelCard:
    """A `ModelCard` for a waypoint model (save it with `card.save(dir / "README.md")`)."""
    cfg = model.config
    card_data = ModelCardData(
        library_name="hf_vlmdrive",
        license="apache-2.0",
        tags=["hf_vlmdrive", "waypoint_vlm", "autonomous-driving", "trajectory-prediction"],
        pipeline_tag="robotics",
        model_name=Path(repo_or_dir).name,
    )
    if metrics:
        card_data.metrics = sorted(k for k, v in metrics.items() if isinstance(v, float))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "waypoint_vlm.md"),
        model_name=Path(repo_or_dir).name,
        vision_type=cfg.vision_config.model_type,
        vision_state=_vision_state(cfg),
        pooling=cfg.pooling,
        num_past_states=cfg.num_past_states,
        past_state_dim=cfg.past_state_dim,
        num_intents=cfg.num_intents,
        head_hidden_sizes=" -> ".join(str(h) for h in cfg.head_hidden_sizes),
        num_waypoints=cfg.num_waypoints,
        trainable_params=f"{trainable:,}",
        total_params=f"{model.num_parameters():,}",
        backbone=cfg.backbone_name_or_path or "randomly initialised tower built from its config",
        train_data=train_data,
        eval_data=eval_data,
        repo_or_dir=repo_or_dir,
        metrics_table=metrics_table,
        limitations=limitations,
    )


__all__ = ["render_waypoint_card"]
