"""The Flamingo SFT recipe (SPEC 1.3): road-scene data -> Flamingo model -> `FlamingoTrainer`.

Reads top to bottom: arguments (`flamingo_config.py`) -> data (`hf_vlmdrive.data.roadscene`, the same files
as the SmolVLM2 recipe) -> model (`FlamingoForConditionalGeneration.from_pretrained`; trainable: Perceiver
resampler + gated cross-attention, optionally the LM input embeddings with gradients on the new token rows
only, optionally LoRA on the cross-attention) -> `FlamingoSFTCollator` (text dropout of the annotation
JSON, then `AssistantOnlyVLMCollator`: loss on the answers and their `<|endofchunk|>`) ->
`FlamingoTrainer` (gate lr multiplier, gate regularisation; 100 warm-up steps then constant lr, a checkpoint
per epoch) under `train_interruptibly` (Ctrl-C -> checkpoint; `--resume_from_checkpoint true` continues).
At the end: LoRA merged, model + processor + generation config saved, `loss_curve.json`, model card.

Entry points: `train_flamingo(script_args, training_args) -> FlamingoTrainer` and `main(argv)` (used by
`hf-vlmdrive sft flamingo` and `examples/sft_flamingo.py`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..data.collators import AssistantOnlyVLMCollator, FlamingoSFTCollator
from ..distributed import atomic_directory, is_main_process, prepare_once, seed_everything_for_init
from ..errors import UserError
from ..hub import check_model_source
from ..interrupt import train_interruptibly
from .flamingo_config import TINY, FlamingoSFTArguments, FlamingoTrainingArguments
from .flamingo_trainer import FlamingoTrainer

logger = logging.getLogger(__name__)

__all__ = ["build_model", "main", "merge_cross_attention_lora", "parse_flamingo_args", "train_flamingo"]

LORA_TARGETS = r".*\.gated_cross_attn_layer\.attn\.(to_q|to_kv|to_out)"


def _new_token_rows_only(model, processor) -> None:
    """OpenFlamingo's embedding-gradient mask: only the `<image>` and `<|endofchunk|>` rows are updated."""
    weight = model.get_input_embeddings().weight
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    mask[[processor.image_token_id, processor.end_of_chunk_token_id]] = 1.0
    weight.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))


def _tiny_flamingo(output_dir: str | Path) -> Path:
    """`<output_dir>/tiny-flamingo`, built once (seed 0, gates 0) and moved into place whole."""
    from ..testing.tiny_flamingo import build_tiny_flamingo

    tiny = Path(output_dir) / "tiny-flamingo"
    if not (tiny / "config.json").is_file():
        with atomic_directory(tiny) as tmp:
            build_tiny_flamingo(tmp, gate_value=0.0)
    return tiny


def build_model(args: FlamingoSFTArguments, output_dir: str | Path):
    """`(model, processor, source)`: the Flamingo model with the recipe's trainable parts set up."""
    from transformers import AutoProcessor

    from ..models.flamingo import FlamingoForConditionalGeneration

    source = args.model_name_or_path
    if not source:
        raise UserError("--model_name_or_path is required (a Flamingo directory, or tiny-random)")
    if source == TINY:
        source = str(_tiny_flamingo(output_dir))
    check_model_source(source, "--model_name_or_path", families=("flamingo",), command="`hf-vlmdrive sft flamingo`")
    model = FlamingoForConditionalGeneration.from_pretrained(source, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(source)
    if model.config.train_lm_embeddings != args.train_lm_embeddings:
        model.config.train_lm_embeddings = args.train_lm_embeddings
        model.unfreeze(["*"])
        model.apply_freezing()
    if args.train_language_model and model.config.freeze_language_model:
        model.config.freeze_language_model = False
        model.unfreeze(["*"])
        model.apply_freezing()
    if args.train_lm_embeddings and args.embedding_grad_new_tokens_only and not args.train_language_model:
        _new_token_rows_only(model, processor)
    if args.lora_cross_attention:
        from peft import LoraConfig, inject_adapter_in_model

        lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                          target_modules=LORA_TARGETS)
        inject_adapter_in_model(lora, model)  # (this freezes every non-adapter parameter: re-apply the recipe's)
        model.unfreeze(["*"])
        model.apply_freezing()
        model.freeze(["*.gated_cross_attn_layer.attn.to_*.base_layer.*"])  # the adapters train instead
    return model, processor, source


def merge_cross_attention_lora(model) -> int:
    """Merge injected LoRA adapters into their base layers and remove them; returns how many were merged."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.get_base_layer())
            merged += 1
    if merged:
        model.unfreeze(["*"])
        model.apply_freezing()
    return merged


def train_flamingo(script_args: FlamingoSFTArguments, training_args: FlamingoTrainingArguments) -> FlamingoTrainer:
    """Build everything and train; returns the trainer (`trainer.sft_metrics`, `state.log_history`).

    Under N processes (`accelerate launch`, `torchrun`): the main process builds the `tiny-random` model while the
    others wait (`prepare_once`), every rank seeds before building the model (LoRA adapters start alike, fixed by
    `--seed`), each rank draws its own text dropout, Trainer shards the batches (and the evaluation), and only the
    main process writes files (model, processor, generation config, loss_curve.json, card).
    """
    from ..data.roadscene import load_sft_dataset
    from .roadscene_recipe import _check_lengths

    args = script_args
    if not args.train_file:
        raise UserError("--train_file is required")
    if args.model_name_or_path and args.model_name_or_path != TINY:  # a wrong model is said before the data loads
        check_model_source(args.model_name_or_path, "--model_name_or_path", families=("flamingo",),
                           command="`hf-vlmdrive sft flamingo`")
    train_ds, report = load_sft_dataset(args.train_file, task=args.task, image_root=args.image_root,
                                        prompt=args.prompt, annotations_path=args.annotations_file)
    logger.info(report.summary())
    if args.max_train_samples is not None:
        train_ds = train_ds.select(range(min(args.max_train_samples, len(train_ds))))
    eval_ds = None
    if args.eval_file:
        eval_ds, eval_report = load_sft_dataset(args.eval_file, task=args.task, image_root=args.image_root,
                                                prompt=args.prompt, annotations_path=args.annotations_file)
        logger.info(eval_report.summary())
    if args.model_name_or_path == TINY:
        with prepare_once(training_args, "Flamingo: tiny model"):
            _tiny_flamingo(training_args.output_dir)
    seed_everything_for_init(training_args)
    model, processor, source = build_model(args, training_args.output_dir)
    base = AssistantOnlyVLMCollator(processor, max_length=training_args.max_length)
    collator = FlamingoSFTCollator(base, text_dropout=args.text_dropout, seed=training_args.seed,
                                   process_index=training_args.process_index)
    train_ds, num_too_long = _check_lengths(train_ds, base, training_args.max_length, args.skip_long_examples, "train")
    if eval_ds is not None:
        eval_ds, _ = _check_lengths(eval_ds, base, training_args.max_length, args.skip_long_examples, "eval")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("Flamingo SFT: %d examples, %.3fM / %.3fM parameters trainable", len(train_ds), trainable / 1e6,
                total / 1e6)
    trainer = FlamingoTrainer(
        model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
        processing_class=processor, gate_lr_multiplier=args.gate_lr_multiplier,
        gate_regularization=args.gate_regularization,
    )
    result = train_interruptibly(trainer, training_args.resume_from_checkpoint)
    if args.lora_cross_attention:
        logger.info("merged %d LoRA adapters into the cross-attention", merge_cross_attention_lora(model))
    trainer.save_model(training_args.output_dir)  # Trainer writes from the main process only
    metrics = dict(result.metrics)
    metrics.update(num_train_records=len(train_ds), num_skipped_records=report.num_skipped,
                   num_too_long_examples=num_too_long)
    trainer.sft_metrics = metrics
    if is_main_process(training_args):
        processor.save_pretrained(training_args.output_dir)
        losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
        Path(training_args.output_dir, "loss_curve.json").write_text(json.dumps(losses), encoding="utf-8")
        from ..model_card import display_name, train_loss_metrics, write_model_card

        write_model_card(
            training_args.output_dir, model, family="flamingo", metrics=train_loss_metrics(trainer.state.log_history),
            protocol="next-token cross-entropy on the answers (plus the gate regularisation), training data: first "
                     "logged step and mean of the last 10 logged steps; no held-out evaluation",
            train_data=f"{display_name(args.train_file)} ({len(train_ds)} examples)",
            base_model=[] if args.model_name_or_path == TINY else [args.model_name_or_path],
            datasets=[display_name(args.train_file)],
            gate_lr_multiplier=args.gate_lr_multiplier, gate_regularization=args.gate_regularization,
            text_dropout=args.text_dropout, lora=args.lora_cross_attention,
            train_lm_embeddings=args.train_lm_embeddings, train_language_model=args.train_language_model,
        )
    return trainer


def parse_flamingo_args(argv: list[str] | None = None) -> tuple[FlamingoSFTArguments, FlamingoTrainingArguments]:
    """(`FlamingoSFTArguments`, `FlamingoTrainingArguments`) from a YAML `--config` + flags (`--model` is an alias
    of `--model_name_or_path`)."""
    from ..arguments import parse_args

    argv = ["--model_name_or_path" if a == "--model" else a for a in (argv or [])]
    return parse_args([FlamingoSFTArguments, FlamingoTrainingArguments], argv, prog="hf-vlmdrive sft flamingo")


def main(argv: list[str] | None = None) -> int:
    """Parse (`FlamingoSFTArguments`, `FlamingoTrainingArguments`) from a YAML `--config` + flags and train."""
    script_args, training_args = parse_flamingo_args(argv)
    trainer = train_flamingo(script_args, training_args)
    if is_main_process(training_args):
        print(json.dumps(trainer.sft_metrics, indent=2))
    return 0
