"""Arguments of road-scene SFT (SmolVLM2 / Idefics3 with TRL): `RoadSceneSFTArguments`; the training
hyperparameters are TRL's `SFTConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError


@dataclass
class RoadSceneSFTArguments:
    """Road-scene SFT arguments (the training hyperparameters are TRL's `SFTConfig`).

    Args:
        model_name_or_path (`str`): Hub id (e.g. `HuggingFaceTB/SmolVLM2-2.2B-Instruct`) or local directory.
        train_file (`str`): captions JSON/JSONL, BVPI SFT JSONL or BVPI annotations CSV/JSON.
        eval_file (`str`, *optional*): same formats, for evaluation during training.
        image_root (`str`, *optional*): folder image paths are relative to (default: the data file's folder).
        task (`str`, *optional*, defaults to `"auto"`): `auto`, `sft`, `caption` or `bvpi`.
        annotations_file (`str`, *optional*): BVPI annotations put into caption prompts as JSON.
        prompt (`str`, *optional*): user prompt for caption / bvpi tasks (defaults in `data.roadscene`).
        use_peft (`bool`, *optional*, defaults to `True`): train LoRA adapters instead of all weights.
        lora_r (`int`, *optional*, defaults to 16): LoRA rank.
        lora_alpha (`int`, *optional*, defaults to 32): LoRA scaling numerator.
        lora_dropout (`float`, *optional*, defaults to 0.05): dropout on the LoRA path.
        lora_target_modules (`str`, *optional*, defaults to `"q_proj,v_proj"`): comma-separated module names.
        load_in_4bit (`bool`, *optional*, defaults to `True`): QLoRA: bitsandbytes nf4 with double quant.
        max_train_samples (`int`, *optional*): keep only the first N training records.
        skip_long_examples (`bool`, *optional*, defaults to `False`): drop and count examples whose prompt
            (image tokens included) leaves no answer token within `max_length`; by default they are an error.
    """

    model_name_or_path: str = field(default="", metadata={"help": "Hub id or local model directory."})
    train_file: str = field(default="", metadata={"help": "Training data file."})
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation data file."})
    image_root: str | None = field(default=None, metadata={"help": "Folder image paths are relative to."})
    task: str = field(default="auto", metadata={"help": "auto, sft, caption or bvpi."})
    annotations_file: str | None = field(default=None, metadata={"help": "Annotations for caption prompts."})
    prompt: str | None = field(default=None, metadata={"help": "User prompt override."})
    use_peft: bool = field(default=True, metadata={"help": "Train LoRA adapters."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default="q_proj,v_proj", metadata={"help": "Comma-separated LoRA targets."})
    load_in_4bit: bool = field(default=True, metadata={"help": "4-bit nf4 double-quant QLoRA (false: plain LoRA)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N records."})
    skip_long_examples: bool = field(
        default=False,
        metadata={"help": "Drop (and count) examples whose prompt with its image tokens does not fit max_length, "
                          "instead of refusing to train."},
    )

    def __post_init__(self):
        if self.task not in ("auto", "sft", "caption", "bvpi"):
            raise UserError(f"task must be auto, sft, caption or bvpi, got {self.task!r}")
        if self.lora_r <= 0:
            raise UserError(f"lora_r must be positive, got {self.lora_r}")
        if self.load_in_4bit and not self.use_peft:
            raise UserError("load_in_4bit=True needs use_peft=True (4-bit weights cannot be trained directly)")

    @property
    def target_modules(self) -> list[str]:
        """`lora_target_modules` as a list."""
        return [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]


__all__ = ["RoadSceneSFTArguments"]
