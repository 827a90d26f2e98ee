"""The Flamingo quick path that learns: synthetic road scenes -> tiny Flamingo caption SFT -> held-out caption
metrics side by side with a constant caption -> a figure and a model card.

    python examples/sft_flamingo.py --demo --output_dir demo_output/flamingo

Steps (`run_flamingo_demo`):
1. `write_synthetic_roadscene` writes a training set and a held-out set (another seed); every caption is
   determined by the rendered scene (the road-scene quick path's data, docs/roadscene.md).
2. A tiny Flamingo (`testing.tiny_flamingo` configs: CLIP tower, Perceiver resampler, a gated cross-attention
   block before every layer of a 2-layer Llama), its byte-level BPE trained on the training captions so that
   their words are single tokens; gates start at 0 as in OpenFlamingo (the untrained model is the LM).
3. `train_flamingo` (the `hf-vlmdrive sft flamingo` recipe: gate lr multiplier, gate regularisation, loss on
   the answers only) on the caption file, with `train_language_model=True`: the tiny LM is random, and a
   random frozen LM cannot be steered into sentences through cross-attention alone (the earlier tiny run
   only repeated "on the"). A converted OpenFlamingo keeps its pretrained LM frozen (the recipe's default).
4. `generate_predictions` (greedy or beam search) on the held-out caption prompts.
5. COCO caption metrics (`caption_metrics`, pycocoevalcap; needs Java) for the model and for the
   *constant-caption baseline*: the caption of the training set's per-field majority scene, the same for
   every image (`demos.roadscene.majority_annotation`, as the road-scene quick path).
6. `flamingo_predictions.png` (image | reference | prediction per held-out scene), `results.json`, and the
   model card (README.md) with the side-by-side table.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    CAPTION_ROWS,
    CONSTANT,
    caption_scores,
    caption_table,
    finish_demo,
    loss_curve,
    read_predictions,
    torch_threads,
)

logger = logging.getLogger(__name__)


__all__ = ["FlamingoDemoConfig", "build_demo_flamingo", "format_caption_table", "run_flamingo_demo"]


@dataclass
class FlamingoDemoConfig:
    """Size of the demo run (the defaults take a few minutes on 2 CPU cores).

    Args:
        num_train (`int`, defaults to 1200): training scenes (one caption record each, two references).
        num_eval (`int`, defaults to 48): held-out scenes (seed `seed + 1`).
        image_size (`int`, defaults to 48): scene size in pixels (= the CLIP tower's image size, 8 px patches).
        hidden_size (`int`, defaults to 64): width of the vision tower and of the language model.
        num_latents (`int`, defaults to 16): Perceiver resampler latents per image.
        vocab_size (`int`, defaults to 400): tokenizer vocabulary (before the three Flamingo tokens).
        max_steps (`int`, defaults to 500): optimiser steps.
        batch_size (`int`, defaults to 16): per-device train batch size.
        learning_rate (`float`, defaults to 2e-3): base learning rate (constant after `warmup_steps`).
        warmup_steps (`int`, defaults to 25): linear warm-up steps.
        gate_lr_multiplier (`float`, defaults to 5.0): gate learning rate relative to `learning_rate` (the
            recipe's 50 is sized for lr 3e-5).
        gate_regularization (`float`, defaults to 0.2): the recipe's weight of mean(tanh(gate)^2).
        num_beams (`int`, defaults to 1): beams for generation.
        seed (`int`, defaults to 0): data, model and training seed.
        caption_metrics (`bool`, defaults to True): compute COCO caption metrics (needs Java).
        num_threads (`int`, defaults to 1): torch CPU threads during the run (restored afterwards; on the shared
            2-core machine two threads per process were measured much slower).
    """

    num_train: int = 1200
    num_eval: int = 48
    image_size: int = 48
    hidden_size: int = 64
    num_latents: int = 16
    vocab_size: int = 400
    max_steps: int = 500
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 25
    gate_lr_multiplier: float = 5.0
    gate_regularization: float = 0.2
    num_beams: int = 1
    seed: int = 0
    caption_metrics: bool = True
    num_threads: int = 1


def _caption_tokenizer(texts: list[str], vocab_size: int):
    """A base-LM-style byte-level BPE (`<|endoftext|>` as bos / eos, no pad, no Flamingo tokens) trained on
    `texts` plus the chat template's words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ..data.roadscene import DEFAULT_CAPTION_PROMPT

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([f"User: {DEFAULT_CAPTION_PROMPT}\nAssistant: "] * 50 + list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", model_max_length=2048)


def build_demo_flamingo(output_dir: str | Path, texts: list[str], config: FlamingoDemoConfig):
    """Save a tiny random Flamingo (gates 0) + processor whose tokenizer was trained on `texts`; returns the dir."""
    import torch

    from ..models.flamingo import FlamingoForConditionalGeneration, FlamingoProcessor
    from ..models.flamingo.processing_flamingo import add_flamingo_special_tokens
    from ..testing.tiny_flamingo import (
        tiny_flamingo_config,
        tiny_image_processor,
        tiny_text_config,
        tiny_vision_config,
    )

    tokenizer = _caption_tokenizer(texts, config.vocab_size)
    ids = add_flamingo_special_tokens(tokenizer)
    processor = FlamingoProcessor(image_processor=tiny_image_processor(config.image_size), tokenizer=tokenizer)
    text = tiny_text_config("llama", vocab_size=len(tokenizer), hidden_size=config.hidden_size)
    text["intermediate_size"] = 2 * config.hidden_size
    flamingo = tiny_flamingo_config(
        vocab_size=len(tokenizer), vision_config=tiny_vision_config(config.image_size, 8, config.hidden_size),
        text_config=text, perceiver_num_latents=config.num_latents, perceiver_dim_head=16, cross_attn_heads=2,
        cross_attn_dim_head=16, **ids)
    flamingo.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(config.seed)
    model = FlamingoForConditionalGeneration(flamingo)  # gates 0: OpenFlamingo's initialisation
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(output_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def format_caption_table(results: dict) -> str:
    """Markdown: caption metrics of the model vs. the constant caption, with the protocol line."""
    return caption_table(results["captions"])


def run_flamingo_demo(output_dir: str | Path, config: FlamingoDemoConfig | None = None) -> dict:
    """Run the whole demo in `output_dir` (see the module docstring); returns the results dict.

    The results hold `captions` {model, baseline, constant_caption, predictions} (or {skipped}), `train`
    (loss curve), `timings` (seconds per stage), `config`, `figure` and `tables` (markdown).

    Under N processes (`accelerate launch examples/sft_flamingo.py --demo`) the main process writes the data and
    the base model while the others wait, every rank trains its shard, and the main process alone generates,
    scores and writes the figure, the card and results.json; the other ranks return an empty dict.
    """
    cfg = config or FlamingoDemoConfig()
    with torch_threads(cfg.num_threads):
        return _run(Path(output_dir), cfg)


def _read_captions(path: Path) -> list[list[str]]:
    return [json.loads(line)["captions"] for line in path.open(encoding="utf-8")]


def _run(out: Path, cfg: FlamingoDemoConfig) -> dict:
    import shutil

    import torch

    from ..data.roadscene import DEFAULT_CAPTION_PROMPT, load_bvpi_annotations
    from ..data.synthetic.roadscene import (
        caption_from_annotation,
        synthetic_roadscene_paths,
        write_synthetic_roadscene,
    )
    from ..distributed import is_main_process, prepare_once
    from ..generation import generate_predictions
    from ..trainers.flamingo_config import FlamingoSFTArguments, FlamingoTrainingArguments
    from ..trainers.flamingo_recipe import train_flamingo
    from .roadscene import majority_annotation

    timings: dict[str, float] = {}
    model_dir = out / "flamingo-tiny"
    training = FlamingoTrainingArguments(
        output_dir=str(model_dir), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, weight_decay=0.0,
        logging_steps=max(1, cfg.max_steps // 20), save_strategy="no", report_to=[], use_cpu=True, seed=cfg.seed,
        max_length=256, dataloader_num_workers=0)
    t0 = time.perf_counter()
    base_dir = out / "tiny-flamingo-random"
    train_paths = synthetic_roadscene_paths(out / "data" / "train")
    eval_paths = synthetic_roadscene_paths(out / "data" / "heldout")
    with prepare_once(training, "Flamingo demo: synthetic scenes and the base model"):
        if training.local_process_index == 0:  # fresh data and model each run; the other ranks wait, then read
            write_synthetic_roadscene(out / "data" / "train", num_samples=cfg.num_train, image_size=cfg.image_size,
                                      seed=cfg.seed)
            write_synthetic_roadscene(out / "data" / "heldout", num_samples=cfg.num_eval, image_size=cfg.image_size,
                                      seed=cfg.seed + 1)
            if base_dir.exists():
                shutil.rmtree(base_dir)
            build_demo_flamingo(base_dir, [c for caps in _read_captions(train_paths["captions"]) for c in caps], cfg)
    train_caps = _read_captions(train_paths["captions"])
    train_anns, _ = load_bvpi_annotations(train_paths["annotations_json"])
    eval_anns, _ = load_bvpi_annotations(eval_paths["annotations_json"])
    timings["data_and_model"] = time.perf_counter() - t0

    t = time.perf_counter()
    args = FlamingoSFTArguments(model_name_or_path=str(base_dir), train_file=str(train_paths["captions"]),
                                task="caption", train_language_model=True, gate_lr_multiplier=cfg.gate_lr_multiplier,
                                gate_regularization=cfg.gate_regularization)
    trainer = train_flamingo(args, training)
    timings["train"] = time.perf_counter() - t
    if not is_main_process(training):
        return {}
    losses = loss_curve(trainer.state.log_history)

    t = time.perf_counter()
    model = trainer.model.eval()
    processor = trainer.processing_class
    longest = max(len(processor.tokenizer(c)["input_ids"]) for caps in train_caps for c in caps)
    preds_path = out / "caption_predictions.jsonl"
    preds_path.unlink(missing_ok=True)
    with torch.no_grad():
        generate_predictions(str(model_dir), eval_paths["captions"], preds_path, num_beams=cfg.num_beams,
                             max_new_tokens=longest + 8, batch_size=16, task="caption", prompt=DEFAULT_CAPTION_PROMPT,
                             model=model, processor=processor)
    timings["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    ids = [f"scene_{i:05d}" for i in range(len(eval_anns))]
    predictions = read_predictions(preds_path, ids)
    refs = [json.loads(line)["captions"] for line in eval_paths["captions"].open(encoding="utf-8")]
    constant = caption_from_annotation(majority_annotation(train_anns))
    results: dict[str, Any] = {"captions": {"constant_caption": constant, "predictions": predictions[:8],
                                            "exact_match": sum(p in r for p, r in zip(predictions, refs)) / len(refs)}}
    results["captions"].update(caption_scores(predictions, refs, constant, enabled=cfg.caption_metrics))
    timings["metrics"] = time.perf_counter() - t

    from PIL import Image

    from ..visualization import plot_caption_predictions

    shown = min(6, len(eval_anns))
    figure = plot_caption_predictions(
        [Image.open(eval_paths["images"].parent / a["image"]).convert("RGB") for a in eval_anns[:shown]],
        predictions[:shown], [r[0] for r in refs[:shown]], out / "flamingo_predictions.png", titles=ids[:shown],
        title="Flamingo captions on held-out scenes (green: equal to a reference, orange: different)",
        alternatives=[r for r in refs[:shown]], baseline=constant)
    tables = format_caption_table(results)
    _write_card(model_dir, model, args, cfg, results, tables, len(trainer.train_dataset))
    return finish_demo(out, results, tables, train={"loss_curve": losses, "num_train_records": len(trainer.train_dataset)},
                       timings=timings, config=cfg.__dict__, figure=str(figure))


def _write_card(model_dir: Path, model, args, cfg: FlamingoDemoConfig, results: dict, tables: str,
                num_train: int) -> None:
    """The model card with the held-out caption metrics next to the constant caption's."""
    from ..model_card import write_model_card

    caps = results["captions"]
    metrics = {k: caps["model"][k] for k in CAPTION_ROWS} if "model" in caps else {}
    baselines = {CONSTANT: {k: caps["baseline"][k] for k in CAPTION_ROWS}} if "model" in caps else None
    write_model_card(
        model_dir, model, family="flamingo", metrics=metrics, baselines=baselines, metrics_table=tables,
        protocol=(f"{cfg.num_eval} held-out synthetic road scenes (seed {cfg.seed + 1}); COCO caption metrics "
                  "(pycocoevalcap, PTB tokenizer) against 2 references per scene; generation with "
                  f"{cfg.num_beams} beam(s); baseline: one constant caption (the training set's majority scene)"),
        train_data=f"synthetic road-scene captions ({num_train} scenes, seed {cfg.seed})",
        eval_data=f"{cfg.num_eval} held-out synthetic road scenes (seed {cfg.seed + 1})",
        base_model=[], datasets=["synthetic-roadscene"],
        gate_lr_multiplier=args.gate_lr_multiplier, gate_regularization=args.gate_regularization,
        text_dropout=args.text_dropout, lora=args.lora_cross_attention, train_lm_embeddings=args.train_lm_embeddings,
        train_language_model=args.train_language_model,
    )
