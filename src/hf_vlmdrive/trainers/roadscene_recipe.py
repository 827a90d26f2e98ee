"""SFT of SmolVLM2 / Idefics3-family models for road-scene captions and BVPI cues, with TRL's SFTTrainer.

Reads top to bottom: arguments (`roadscene_config.py`) -> data (`hf_vlmdrive.data.roadscene`) -> model
(4-bit nf4 + double quant QLoRA by default, plain LoRA with `--load_in_4bit false`) ->
`AssistantOnlyVLMCollator` (`data/collators.py`: loss only on assistant tokens) ->
`SFTTrainer.train(resume_from_checkpoint=...)`. Entry point: `train_roadscene(script_args, training_args)
-> SFTTrainer`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..data.collators import AssistantOnlyVLMCollator
from ..distributed import barrier, is_main_process, seed_everything_for_init
from ..errors import UserError
from ..hub import check_model_source, generates_text
from ..interrupt import train_interruptibly
from .roadscene_config import RoadSceneSFTArguments

logger = logging.getLogger(__name__)

__all__ = ["RoadSceneSFTArguments", "build_model", "load_processor", "train_roadscene",
           "write_roadscene_card"]


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
        raise UserError(f"no trainable parameters: lora_target_modules={args.target_modules} matched nothing")
    return model


def train_roadscene(script_args: RoadSceneSFTArguments, training_args):
    """Train with TRL's `SFTTrainer`; saves the adapter/model and processor to `training_args.output_dir`.

    `training_args` is TRL's `SFTConfig`. Returns the trainer; `trainer.sft_metrics` holds the train metrics
    (plus `num_train_records`, `num_skipped_records`).
    """
    args, sft_config = script_args, training_args
    from trl import SFTTrainer

    from ..data.roadscene import load_sft_dataset

    if not args.model_name_or_path:
        raise UserError("--model_name_or_path is required (a Hub id or a local model directory)")
    if not args.train_file:
        raise UserError("--train_file is required")
    check_model_source(args.model_name_or_path, "--model_name_or_path", families=generates_text,
                       command="`hf-vlmdrive sft roadscene`", wanted="an image-text-to-text model (SmolVLM2 / Idefics3)")
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
    seed_everything_for_init(sft_config)  # --seed fixes the new LoRA adapters' initial weights (the same on every rank)
    model = build_model(args, device_map=_kbit_device_map(args, sft_config))
    collator = AssistantOnlyVLMCollator(processor, max_length=sft_config.max_length)
    train_ds, num_too_long = _check_lengths(train_ds, collator, sft_config.max_length, args.skip_long_examples, "train")
    if eval_ds is not None:
        eval_ds, _ = _check_lengths(eval_ds, collator, sft_config.max_length, args.skip_long_examples, "eval")
    # Our collator consumes `messages` + `images` directly; TRL must not tokenize the dataset itself.
    sft_config.dataset_kwargs = {**(sft_config.dataset_kwargs or {}), "skip_prepare_dataset": True}
    sft_config.remove_unused_columns = False
    trainer = SFTTrainer(
        model=model,
        args=sft_config,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=processor,
        data_collator=collator,
    )
    result = train_interruptibly(trainer, sft_config.resume_from_checkpoint)
    trainer.save_model(sft_config.output_dir)
    metrics = dict(result.metrics)
    metrics["num_train_records"] = len(train_ds)
    metrics["num_skipped_records"] = report.num_skipped
    metrics["num_too_long_examples"] = num_too_long
    trainer.sft_metrics = metrics
    if is_main_process(sft_config):  # processor and card: written once
        processor.save_pretrained(sft_config.output_dir)
        write_roadscene_card(sft_config.output_dir, model, args, trainer.state.log_history, len(train_ds))
    barrier(sft_config)  # every rank returns once the output folder is complete
    return trainer


def write_roadscene_card(output_dir, model, args: RoadSceneSFTArguments, log_history, num_train: int,
                         metrics: dict | None = None, baselines: dict | None = None, protocol: str | None = None,
                         metrics_table: str | None = None, eval_data: str | None = None):
    """README.md model card of a road-scene SFT run (train loss, or the held-out metrics given)."""
    from pathlib import Path

    from ..model_card import display_name, last_logged_metrics, train_loss_metrics, write_model_card

    if metrics is None:
        metrics = {**train_loss_metrics(log_history), **last_logged_metrics(log_history)}
        protocol = protocol or ("token cross-entropy on the assistant answers (prompt and image tokens masked): "
                                "first logged training step and mean of the last 10 logged"
                                + ("; eval_loss on --eval_file" if args.eval_file else "; no held-out evaluation"))
    adapter = None
    if args.use_peft:
        adapter = f"r={args.lora_r}, alpha={args.lora_alpha} on {', '.join(args.target_modules)}"
        if args.load_in_4bit:
            adapter += "; QLoRA: 4-bit nf4 base weights with double quantisation"
    return write_model_card(
        output_dir, model, family="roadscene", metrics=metrics, baselines=baselines, protocol=protocol,
        metrics_table=metrics_table,
        train_data=f"{Path(args.train_file).name} ({num_train} records, task {args.task})",
        eval_data=eval_data or (Path(args.eval_file).name if args.eval_file else None),
        base_model=args.model_name_or_path, datasets=[display_name(args.train_file)], adapter=adapter,
        base_model_ref=display_name(args.model_name_or_path),
        task_text={"caption": "road-scene captions", "bvpi": "BVPI navigation answers"}.get(args.task),
    )


def _kbit_device_map(args: RoadSceneSFTArguments, sft_config):
    """Where a 4-bit model is loaded: under N GPU processes each rank puts the whole model on its own GPU (TRL's
    `get_kbit_device_map`); `"auto"` would spread every rank's copy over all GPUs. None: `build_model`'s default."""
    if args.load_in_4bit and torch.cuda.is_available() and sft_config.world_size > 1:
        return {"": sft_config.local_process_index}
    return None


def _check_lengths(dataset, collator, max_length: int | None, skip: bool, split: str):
    """Refuse (or with `skip`, drop and count) examples whose prompt leaves no answer token within max_length."""
    if not max_length:
        return dataset, 0
    too_long = []  # (row, example id, prompt tokens)
    for i, example in enumerate(dataset):
        start = collator.prompt_length(example)
        if start >= max_length:
            too_long.append((i, example.get("id", i), start))
    if not too_long:
        return dataset, 0
    i, ex_id, start = too_long[0]
    if not skip:
        total = collator.prompt_length(dataset[i], whole=True)
        raise UserError(
            f"{split} example {ex_id} (row {i}): its prompt with image tokens is {start} tokens (the whole "
            f"conversation {total}) but max_length={max_length}, so nothing of the answer would be trained on"
            f"{f'; {len(too_long)} examples are too long' if len(too_long) > 1 else ''}; raise --max_length "
            "or pass --skip_long_examples to drop them"
        )
    if len(too_long) == len(dataset):
        raise UserError(
            f"no example of the {split} data fits max_length={max_length}: all {len(too_long)} prompts are longer "
            f"(the first, {ex_id}, has {start} tokens with its image tokens); raise --max_length"
        )
    logger.warning("%s: dropping %d example(s) whose prompt does not fit max_length=%d (first: %s, %d tokens)",
                   split, len(too_long), max_length, ex_id, start)
    drop = {j for j, *_ in too_long}
    return dataset.select([j for j in range(len(dataset)) if j not in drop]), len(too_long)


