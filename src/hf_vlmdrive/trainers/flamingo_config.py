"""Arguments of Flamingo SFT (SPEC 1.3): `FlamingoSFTArguments` (data, model, what trains) and
`FlamingoTrainingArguments` (Trainer's, with the reference recipe as defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..errors import UserError

TINY = "tiny-random"


@dataclass
class FlamingoSFTArguments:
    """Flamingo SFT arguments.

    Args:
        model_name_or_path (`str`): a Flamingo directory (e.g. from `hf-vlmdrive convert open-flamingo`), or
            `tiny-random` to build a tiny random model under `<output_dir>/tiny-flamingo` (offline demos).
        train_file (`str`): captions JSON/JSONL, BVPI SFT JSONL or BVPI annotations CSV/JSON.
        eval_file (`str`, *optional*): same formats, evaluated each epoch.
        image_root (`str`, *optional*): folder image paths are relative to (default: the data file's folder).
        task (`str`, *optional*, defaults to `"auto"`): `auto`, `sft`, `caption` or `bvpi`.
        annotations_file (`str`, *optional*): BVPI annotations put into caption prompts as JSON (the "visual
            descriptions" that `text_dropout` drops).
        prompt (`str`, *optional*): user prompt for caption / bvpi tasks.
        max_train_samples (`int`, *optional*): keep only the first N training records.
        skip_long_examples (`bool`, *optional*, defaults to `False`): drop examples whose prompt does not fit.
        train_lm_embeddings (`bool`, *optional*, defaults to `False`): train the LM input embeddings too.
        train_language_model (`bool`, *optional*, defaults to `False`): train the whole language model too (its
            embeddings and decoder layers, at `learning_rate`); for an LM that has not learnt the answers' text
            yet, e.g. the tiny random one of the quick path. OpenFlamingo keeps the LM frozen.
        embedding_grad_new_tokens_only (`bool`, *optional*, defaults to `True`): with `train_lm_embeddings`, only
            the `<image>` and `<|endofchunk|>` rows get gradients (OpenFlamingo's train_utils.py).
        gate_lr_multiplier (`float`, *optional*, defaults to 50.0): learning rate of `attn_gate` / `ff_gate`
            relative to `learning_rate`.
        gate_regularization (`float`, *optional*, defaults to 0.2): weight of `mean(tanh(gate)^2)` over all gates,
            added to the loss.
        text_dropout (`float`, *optional*, defaults to 0.25): probability that a prompt's annotation JSON ("Using
            road annotations: {...}") is replaced by the plain caption prompt, so the image must carry it.
        lora_cross_attention (`bool`, *optional*, defaults to `False`): train LoRA adapters on the gated
            cross-attention projections (`to_q`, `to_kv`, `to_out`) instead of those projections in full.
        lora_r, lora_alpha, lora_dropout: LoRA settings.
    """

    model_name_or_path: str = field(default="", metadata={"help": "Flamingo directory, or tiny-random."})
    train_file: str = field(default="", metadata={"help": "Training data file."})
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation data file."})
    image_root: str | None = field(default=None, metadata={"help": "Folder image paths are relative to."})
    task: str = field(default="auto", metadata={"help": "auto, sft, caption or bvpi."})
    annotations_file: str | None = field(default=None, metadata={"help": "Annotations for caption prompts."})
    prompt: str | None = field(default=None, metadata={"help": "User prompt override."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N records."})
    skip_long_examples: bool = field(default=False, metadata={"help": "Drop examples that do not fit max_length."})
    train_lm_embeddings: bool = field(default=False, metadata={"help": "Train the LM input embeddings."})
    train_language_model: bool = field(
        default=False, metadata={"help": "Train the whole LM too (OpenFlamingo keeps it frozen); for a random LM."})
    embedding_grad_new_tokens_only: bool = field(
        default=True, metadata={"help": "Embedding gradients only on the <image> / <|endofchunk|> rows."})
    gate_lr_multiplier: float = field(default=50.0, metadata={"help": "Gate lr = learning_rate x this."})
    gate_regularization: float = field(default=0.2, metadata={"help": "Weight of mean(tanh(gate)^2) in the loss."})
    text_dropout: float = field(default=0.25, metadata={"help": "Probability of dropping the annotation JSON."})
    lora_cross_attention: bool = field(default=False, metadata={"help": "LoRA on the gated cross-attention."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})

    def __post_init__(self):
        if self.task not in ("auto", "sft", "caption", "bvpi"):
            raise UserError(f"task must be auto, sft, caption or bvpi, got {self.task!r}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise UserError(f"text_dropout must be in [0, 1), got {self.text_dropout!r}")
        if self.gate_lr_multiplier <= 0:
            raise UserError(f"gate_lr_multiplier must be positive, got {self.gate_lr_multiplier!r}")
        if self.gate_regularization < 0:
            raise UserError(f"gate_regularization must be >= 0, got {self.gate_regularization!r}")
        if self.lora_r <= 0:
            raise UserError(f"lora_r must be positive, got {self.lora_r!r}")


@dataclass
class FlamingoTrainingArguments(TrainingArguments):
    """`TrainingArguments` with SPEC 1.3's Flamingo recipe as defaults: lr 3e-5, 100 warm-up steps then constant,
    batch 2, a checkpoint per epoch, max length 384."""

    learning_rate: float = field(default=3e-5, metadata={"help": "Base learning rate (gates: x gate_lr_multiplier)."})
    lr_scheduler_type: str = field(default="constant_with_warmup", metadata={"help": "Warm-up then constant."})
    warmup_steps: float = field(default=100, metadata={"help": "Linear warm-up steps."})
    per_device_train_batch_size: int = field(default=2, metadata={"help": "Batch size per device."})
    save_strategy: str = field(default="epoch", metadata={"help": "A checkpoint per epoch."})
    eval_strategy: str = field(default="no", metadata={"help": "'epoch' with an eval_file."})
    max_length: int = field(default=384, metadata={"help": "Tokens per example (answers truncated on the right)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep messages / images for the collator."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Trainer's report_to."})


__all__ = ["TINY", "FlamingoSFTArguments", "FlamingoTrainingArguments"]
