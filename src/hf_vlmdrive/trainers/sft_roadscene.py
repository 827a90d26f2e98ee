"""SFT of SmolVLM2 / Idefics3-family models for road-scene captions and BVPI cues, with TRL's SFTTrainer.

Reads top to bottom: arguments -> data (`hf_vlmdrive.data.roadscene`) -> model (4-bit nf4 + double quant
QLoRA by default, plain LoRA with `--load_in_4bit false`) -> `AssistantOnlyVLMCollator` (loss only on
assistant tokens) -> `SFTTrainer.train(resume_from_checkpoint=...)`.

Why a collator of our own: TRL 1.16's `DataCollatorForVisionLanguageModeling` masks non-assistant tokens
only when the chat template carries `{% generation %}` markers, which the SmolVLM2 / Idefics3 Hub
templates do not (TRL then swaps in a training template it knows, or fails). `AssistantOnlyVLMCollator`
works with any template: it renders the conversation up to each assistant turn (with the generation
prompt) and through it, and keeps the labels of the tokens in between; everything else (system/user
text, the expanded image tokens, padding) is -100. It checks that the rendered prefixes tokenize as true
prefixes of the full conversation and fails loudly otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["AssistantOnlyVLMCollator", "RoadSceneSFTArguments", "build_model", "load_processor", "run_sft"]


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

    def __post_init__(self):
        if self.task not in ("auto", "sft", "caption", "bvpi"):
            raise ValueError(f"task must be auto, sft, caption or bvpi, got {self.task!r}")
        if self.lora_r <= 0:
            raise ValueError(f"lora_r must be positive, got {self.lora_r}")
        if self.load_in_4bit and not self.use_peft:
            raise ValueError("load_in_4bit=True needs use_peft=True (4-bit weights cannot be trained directly)")

    @property
    def target_modules(self) -> list[str]:
        """`lora_target_modules` as a list."""
        return [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]


def _load_image(image: Any):
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return im.convert("RGB")
    if isinstance(image, dict) and ("bytes" in image or "path" in image):  # undecoded datasets.Image
        import io

        src = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
        with Image.open(src) as im:
            return im.convert("RGB")
    return image.convert("RGB") if hasattr(image, "convert") else image


def _clean_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the `None` fields Arrow adds to structured parts (`{"type": "image", "text": None}`)."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [{k: v for k, v in part.items() if v is not None} for part in content]
        out.append({"role": m["role"], "content": content})
    return out


@dataclass
class AssistantOnlyVLMCollator:
    """Batch chat examples for a vision-language processor with labels only on assistant turns.

    Input: a list of examples with `messages` (structured chat content; image parts `{"type": "image"}`)
    and `images` (PIL images, paths or undecoded `datasets.Image` dicts), in the order of the image parts.

    Output keys: everything the processor returns (`input_ids`, `attention_mask`, `pixel_values`,
    `pixel_attention_mask`, ...) plus `labels` (`input_ids` with -100 everywhere except the tokens of the
    assistant turns, their end-of-turn token included). Padding is on the right. `max_length` truncates
    on the right (a warning is logged when that happens).
    """

    processor: Any
    max_length: int | None = None

    def _render(self, messages, add_generation_prompt=False) -> str:
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        texts, images, span_texts = [], [], []
        for ex in examples:
            messages = _clean_messages(ex["messages"])
            imgs = [_load_image(im) for im in (ex.get("images") or [])]
            texts.append(self._render(messages))
            images.append(imgs)
            spans = []
            for k, m in enumerate(messages):
                if m["role"] == "assistant":
                    spans.append((self._render(messages[:k], add_generation_prompt=True), self._render(messages[: k + 1])))
            if not spans:
                raise ValueError(f"example {ex.get('id', '?')} has no assistant turn to train on")
            span_texts.append(spans)
        has_images = any(images)
        batch = self.processor(
            text=texts, images=images if has_images else None, padding=True, return_tensors="pt",
            padding_side="right", add_special_tokens=False,
        )
        input_ids = batch["input_ids"]
        labels = torch.full_like(input_ids, -100)
        for row, (spans, imgs) in enumerate(zip(span_texts, images)):
            full_len = int(batch["attention_mask"][row].sum())
            for start_text, end_text in spans:
                start, start_ids = self._length(start_text, imgs)
                end, _ = self._length(end_text, imgs)
                if not torch.equal(input_ids[row, :start], start_ids):
                    raise ValueError(
                        "the chat template's prompt does not tokenize as a prefix of the conversation; "
                        "assistant-only masking needs a template where the generation prompt ends on a "
                        "token boundary (e.g. 'Assistant:' before the answer's leading space)"
                    )
                end = min(end, full_len)
                labels[row, start:end] = input_ids[row, start:end]
        image_token_id = getattr(self.processor, "image_token_id", None)
        if image_token_id is not None:
            labels[input_ids == image_token_id] = -100
        labels[batch["attention_mask"] == 0] = -100
        batch["labels"] = labels
        if self.max_length is not None and input_ids.shape[1] > self.max_length:
            logger.warning("truncating a batch of length %d to max_length=%d", input_ids.shape[1], self.max_length)
            for key in ("input_ids", "attention_mask", "labels"):
                batch[key] = batch[key][:, : self.max_length]
        del tokenizer
        return batch

    def _length(self, text: str, all_images: list) -> tuple[int, torch.Tensor]:
        """Token count (with expanded image tokens) of a rendered prefix; images = those it mentions."""
        image_marker = getattr(self.processor, "image_token", "<image>")
        n = text.count(image_marker)
        imgs = all_images[:n]
        out = self.processor(
            text=[text], images=[imgs] if imgs else None, return_tensors="pt", add_special_tokens=False
        )
        ids = out["input_ids"][0]
        return int(ids.shape[0]), ids


def load_processor(model_name_or_path: str):
    """`AutoProcessor.from_pretrained` with a pad token ensured (needed for batched training)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_name_or_path)
    tok = processor.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return processor


def build_model(args: RoadSceneSFTArguments, device_map: Any = None):
    """Load the VLM (`AutoModelForImageTextToText`), 4-bit quantised when `load_in_4bit`, with LoRA.

    Returns a `peft.PeftModel` (only the adapters trainable) when `use_peft`, else the full model.
    """
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if args.load_in_4bit:
        compute_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
        kwargs["device_map"] = device_map if device_map is not None else ("auto" if torch.cuda.is_available() else "cpu")
    model = AutoModelForImageTextToText.from_pretrained(args.model_name_or_path, **kwargs)
    if not args.use_peft:
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if args.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.target_modules,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"no trainable parameters: lora_target_modules={args.target_modules} matched nothing")
    return model


def _resolve_resume(resume: Any, output_dir: str) -> Any:
    """`True`/`"last"` -> the newest `checkpoint-*` in `output_dir` (None when there is none)."""
    if resume in (None, False, "", "false", "False", "no"):
        return None
    if resume in (True, "true", "True", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            logger.info("no checkpoint in %s: starting from scratch", output_dir)
        return last
    if not Path(resume).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint={resume!r} is not a checkpoint directory")
    return resume


def run_sft(args: RoadSceneSFTArguments, sft_config) -> dict[str, Any]:
    """Train with TRL's `SFTTrainer`; saves the adapter/model and processor to `sft_config.output_dir`.

    Returns the train metrics (plus `num_train_records`, `num_skipped_records`).
    """
    from trl import SFTTrainer

    from ..data.roadscene import load_sft_dataset

    if not args.model_name_or_path:
        raise ValueError("--model_name_or_path is required (a Hub id or a local model directory)")
    if not args.train_file:
        raise ValueError("--train_file is required")
    train_ds, report = load_sft_dataset(
        args.train_file, task=args.task, image_root=args.image_root, prompt=args.prompt,
        annotations_path=args.annotations_file,
    )
    logger.info(report.summary())
    if args.max_train_samples is not None:
        train_ds = train_ds.select(range(min(args.max_train_samples, len(train_ds))))
    eval_ds = None
    if args.eval_file:
        eval_ds, eval_report = load_sft_dataset(
            args.eval_file, task=args.task, image_root=args.image_root, prompt=args.prompt,
            annotations_path=args.annotations_file,
        )
        logger.info(eval_report.summary())
    processor = load_processor(args.model_name_or_path)
    model = build_model(args)
    # Our collator consumes `messages` + `images` directly; TRL must not tokenize the dataset itself.
    sft_config.dataset_kwargs = {**(sft_config.dataset_kwargs or {}), "skip_prepare_dataset": True}
    sft_config.remove_unused_columns = False
    trainer = SFTTrainer(
        model=model,
        args=sft_config,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=processor,
        data_collator=AssistantOnlyVLMCollator(processor, max_length=sft_config.max_length),
    )
    resume = _resolve_resume(sft_config.resume_from_checkpoint, sft_config.output_dir)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(sft_config.output_dir)
    processor.save_pretrained(sft_config.output_dir)
    metrics = dict(result.metrics)
    metrics["num_train_records"] = len(train_ds)
    metrics["num_skipped_records"] = report.num_skipped
    return metrics
