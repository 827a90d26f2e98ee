"""The road-scene quick path that learns: synthetic scenes -> tiny SmolVLM2 SFT (captions + BVPI) -> held-out
BVPI and caption metrics side by side with trivial baselines -> a figure and a model card.

    python examples/sft_roadscene.py --demo --output_dir demo_output/roadscene

Steps (`run_roadscene_demo`):
1. `write_synthetic_roadscene` writes a training set and a held-out set (another seed). Every BVPI field and
   every caption is determined by the rendered scene (each object kind has its own colour and slot). The SFT
   answers are compact (objects that are not present left out: ~70 instead of ~190 tokens).
2. A tiny SmolVLM2-shaped model (`testing.tiny_smolvlm`), its tokenizer trained on the training answers so
   their JSON keys and words are single tokens. It is random, so it is trained in full (LoRA adapts pretrained
   weights; with a real SmolVLM2 use the default QLoRA path of `hf-vlmdrive sft roadscene`).
3. `train_roadscene` (TRL SFTTrainer, loss on assistant tokens only) on the mixed SFT file: one BVPI record and
   one caption record per scene.
4. `generate_predictions` (beam search) on the held-out BVPI prompts and caption prompts.
5. Metrics on the held-out scenes: BVPI (`bvpi_metrics`) for the model and for the *majority baseline* (every
   answer = the per-field majority value of the training annotations); COCO caption metrics
   (`caption_metrics`, pycocoevalcap; needs Java) for the model and for the *constant-caption baseline* (the
   template caption of that majority annotation, the same for every image).
6. `roadscene_predictions.png` (image | reference | prediction per held-out scene), `results.json`, and the
   model card (README.md) with the side-by-side table.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
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
    side_by_side,
    torch_threads,
)

logger = logging.getLogger(__name__)

BVPI_ROWS = ("accuracy/sidewalk_pos", "accuracy/road_pos", "accuracy/road_vs_sidewalk", "accuracy/object_present",
             "accuracy/object_present_outside", "presence/sidewalk_pos", "presence/road_pos",
             "presence/road_vs_sidewalk", "recall/person", "recall/car", "recall/bicycle", "recall/obstacle",
             "recall/traffic_sign", "recall/traffic_light")
MAJORITY = "majority answer per field (train set)"


@dataclass
class RoadSceneDemoConfig:
    """Size of the demo run (the defaults take a few minutes on 2 CPU cores).

    Args:
        num_train (`int`, defaults to 1200): training scenes (each gives a BVPI and a caption record).
        num_eval (`int`, defaults to 48): held-out scenes (seed `seed + 1`).
        image_size (`int`, defaults to 48): scene size in pixels (= the tiny model's image size: 36 patches of
            8 px, 9 image tokens after the pixel shuffle).
        hidden_size (`int`, defaults to 64): width of the tiny vision tower and language model.
        vocab_size (`int`, defaults to 600): tokenizer vocabulary.
        max_steps (`int`, defaults to 600): optimiser steps.
        batch_size (`int`, defaults to 16): per-device train batch size.
        learning_rate (`float`, defaults to 1e-3): AdamW learning rate (cosine decay, 5 % warm-up). At 3e-3
            `object_present_outside` stayed at the majority answer on seeds 0-2 on one machine (+2 to +4
            points) and reached +17 on another; 1e-3 gave +27, +23 and +10 on seeds 0, 1 and 2 there.
        num_beams (`int`, defaults to 1): beams for generation (the reference uses 3; 1 is faster and as good
            on this data).
        seed (`int`, defaults to 0): data, model and training seed.
        caption_metrics (`bool`, defaults to True): compute COCO caption metrics (needs Java).
        num_threads (`int`, defaults to 1): torch CPU threads during the run (restored afterwards). The tiny
            model's matrices are too small to gain from more; on a loaded 2-core machine two OpenMP threads per
            process made a training step 20x slower (4.8 s vs 0.22 s measured).
    """

    num_train: int = 1200
    num_eval: int = 48
    image_size: int = 48
    hidden_size: int = 64
    vocab_size: int = 600
    max_steps: int = 600
    batch_size: int = 16
    learning_rate: float = 1e-3
    num_beams: int = 1
    seed: int = 0
    caption_metrics: bool = True
    num_threads: int = 1


def majority_annotation(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-field majority answer of `annotations` (ties: the first value seen), as a BVPI annotation."""
    from ..data.roadscene import OBJECT_GROUPS, OBJECT_NAMES

    def vote(values):
        return Counter(values).most_common(1)[0][0]

    out: dict[str, Any] = {"image": "majority"}
    for field in ("sidewalk_pos", "road_pos", "object_present", "object_present_outside"):
        out[field] = vote([a[field] for a in annotations])
    for group in OBJECT_GROUPS:
        if group == "objects_on_sidewalk" and out["object_present"] == "No":
            continue
        out[group] = {o: vote([str((a.get(group) or {}).get(o, "not present")) for a in annotations])
                      for o in OBJECT_NAMES}
    return out


def majority_bvpi_answer(annotations: list[dict[str, Any]]) -> str:
    """The majority baseline's answer: per-field majorities, and the majority `road_vs_sidewalk` of the data."""
    from ..data.roadscene import road_vs_sidewalk

    answer = {k: v for k, v in majority_annotation(annotations).items() if k != "image"}
    answer["road_vs_sidewalk"] = Counter(road_vs_sidewalk(a) for a in annotations).most_common(1)[0][0]
    return json.dumps(answer)


def format_demo_tables(results: dict) -> str:
    """Markdown: BVPI (%) and caption metrics, model vs. its baseline, with the protocol lines."""
    bvpi = results["bvpi"]
    text = [f"BVPI on {bvpi['model']['num_samples']} held-out scenes (%; unparseable outputs: model "
            f"{bvpi['model']['num_unparseable']}, baseline {bvpi['baseline']['num_unparseable']}; baseline = "
            f"{MAJORITY}):", "", side_by_side(bvpi["model"], bvpi["baseline"], BVPI_ROWS, MAJORITY, pct=True),
            f"\nparse rate: model {100 * results['bvpi']['parse_rate']:.1f} %"]
    if results.get("captions"):
        text += ["", caption_table(results["captions"])]
    return "\n".join(text)


def run_roadscene_demo(output_dir: str | Path, config: RoadSceneDemoConfig | None = None) -> dict:
    """Run the whole demo in `output_dir` (see the module docstring); returns the results dict.

    The results hold `bvpi` {model, baseline, parse_rate}, `captions` {model, baseline, constant_caption} (or
    {skipped}), `train` (loss curve), `timings` (seconds per stage) and `config`.
    """
    from ..log import quiet_trl_renames

    with torch_threads(config.num_threads if config else RoadSceneDemoConfig.num_threads), quiet_trl_renames():
        return _run(output_dir, config)


def _run(output_dir: str | Path, config: RoadSceneDemoConfig | None) -> dict:
    from trl import SFTConfig

    from ..data.roadscene import annotation_answer, load_bvpi_annotations
    from ..data.synthetic.roadscene import caption_from_annotation, synthetic_roadscene_paths
    from ..distributed import broadcast_from_main, is_local_main_process, is_main_process, prepare_once
    from ..trainers.roadscene_config import RoadSceneSFTArguments
    from ..trainers.roadscene_recipe import train_roadscene

    cfg = config or RoadSceneDemoConfig()
    out = Path(output_dir)
    model_dir = out / "tiny-smolvlm2"
    train_paths = synthetic_roadscene_paths(out / "data" / "train")
    eval_paths = synthetic_roadscene_paths(out / "data" / "heldout")
    args = RoadSceneSFTArguments(model_name_or_path=str(model_dir), train_file=str(train_paths["roadscene_sft"]),
                                 use_peft=False, load_in_4bit=False)
    sft = SFTConfig(output_dir=str(out / "roadscene-tiny"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
                    learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_steps=max(1, cfg.max_steps // 20),
                    weight_decay=0.0, logging_steps=max(1, cfg.max_steps // 20), save_strategy="no", report_to=[],
                    gradient_checkpointing=False, use_cpu=True, seed=cfg.seed, max_length=None,
                    dataloader_num_workers=0)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # Under `accelerate launch` the (local) main process writes the scenes and the tiny model; the others wait and
    # read them (every rank trains on the same files; `per_device_train_batch_size` is per process).
    with prepare_once(sft, "writing the demo's scenes and tiny model"):
        if is_local_main_process(sft):
            _write_data_and_model(out, cfg)
    train_anns, _ = load_bvpi_annotations(train_paths["annotations_json"])
    eval_anns, _ = load_bvpi_annotations(eval_paths["annotations_json"])
    corpus = [annotation_answer(a, compact=True) for a in train_anns] + [caption_from_annotation(a) for a in train_anns]
    timings["data_and_model"] = time.perf_counter() - t0

    t = time.perf_counter()
    trainer = train_roadscene(args, sft)
    timings["train"] = time.perf_counter() - t
    results = None
    if is_main_process(sft):  # generation, metrics, figure, card and results.json: once, on the main process
        results = _evaluate(out, cfg, args, trainer, train_anns, eval_anns, eval_paths, corpus, timings)
    return broadcast_from_main(sft, results)  # the other ranks wait for it and return the same results


def _write_data_and_model(out: Path, cfg: RoadSceneDemoConfig) -> None:
    """The demo's training and held-out scenes, and the tiny SmolVLM2 whose tokenizer knows their answers."""
    from ..data.roadscene import annotation_answer, load_bvpi_annotations
    from ..data.synthetic.roadscene import caption_from_annotation, write_synthetic_roadscene
    from ..testing.tiny_smolvlm import build_tiny_smolvlm

    train_paths = write_synthetic_roadscene(out / "data" / "train", num_samples=cfg.num_train,
                                            image_size=cfg.image_size, seed=cfg.seed, compact_answers=True)
    write_synthetic_roadscene(out / "data" / "heldout", num_samples=cfg.num_eval, image_size=cfg.image_size,
                              seed=cfg.seed + 1, compact_answers=True)
    train_anns, _ = load_bvpi_annotations(train_paths["annotations_json"])
    corpus = [annotation_answer(a, compact=True) for a in train_anns] + [caption_from_annotation(a) for a in train_anns]
    model_dir = out / "tiny-smolvlm2"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    build_tiny_smolvlm(model_dir, image_size=cfg.image_size, hidden_size=cfg.hidden_size, vocab_size=cfg.vocab_size,
                       seed=cfg.seed, extra_text=corpus)


def _evaluate(out: Path, cfg: RoadSceneDemoConfig, args, trainer, train_anns, eval_anns, eval_paths, corpus,
              timings: dict[str, float]) -> dict:
    """Steps 4-6 of the module docstring: generate on the held-out prompts, score model and baselines, write the
    figure, the card and results.json."""
    import torch

    from ..data.roadscene import DEFAULT_CAPTION_PROMPT, annotation_answer
    from ..data.synthetic.roadscene import caption_from_annotation
    from ..generation import generate_predictions
    from ..metrics.bvpi.bvpi import bvpi_metrics, parse_bvpi_output
    from ..trainers.roadscene_recipe import write_roadscene_card

    losses = loss_curve(trainer.state.log_history)
    t = time.perf_counter()
    model = trainer.model.eval()
    processor = trainer.processing_class
    tokenizer = processor.tokenizer
    longest = max(len(tokenizer(text)["input_ids"]) for text in corpus)
    bvpi_preds = out / "bvpi_predictions.jsonl"
    caption_preds = out / "caption_predictions.jsonl"
    for p in (bvpi_preds, caption_preds):
        p.unlink(missing_ok=True)
    with torch.no_grad():
        generate_predictions(str(out / "roadscene-tiny"), eval_paths["bvpi_sft"], bvpi_preds, num_beams=cfg.num_beams,
                             max_new_tokens=longest + 8, batch_size=16, model=model, processor=processor)
        generate_predictions(str(out / "roadscene-tiny"), eval_paths["captions"], caption_preds, num_beams=cfg.num_beams,
                             max_new_tokens=longest + 8, batch_size=16, task="caption", prompt=DEFAULT_CAPTION_PROMPT,
                             model=model, processor=processor)
    timings["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    ids = [f"scene_{i:05d}" for i in range(len(eval_anns))]
    predictions = read_predictions(bvpi_preds, ids)
    majority = majority_bvpi_answer(train_anns)
    results: dict[str, Any] = {
        "bvpi": {
            "model": bvpi_metrics(predictions, eval_anns),
            "baseline": bvpi_metrics([majority] * len(eval_anns), eval_anns),
            "baseline_answer": majority,
            "parse_rate": sum(parse_bvpi_output(p) is not None for p in predictions) / len(predictions),
        }
    }
    cap_preds = read_predictions(caption_preds, ids)
    cap_refs = [json.loads(line)["captions"] for line in eval_paths["captions"].open(encoding="utf-8")]
    constant = caption_from_annotation(majority_annotation(train_anns))
    results["captions"] = {"constant_caption": constant, "predictions": cap_preds[:8],
                           **caption_scores(cap_preds, cap_refs, constant, enabled=cfg.caption_metrics)}
    timings["metrics"] = time.perf_counter() - t

    from PIL import Image

    from ..visualization import plot_roadscene_predictions

    shown = min(6, len(eval_anns))
    figure = plot_roadscene_predictions(
        [Image.open(eval_paths["images"].parent / a["image"]).convert("RGB") for a in eval_anns[:shown]],
        predictions[:shown], [annotation_answer(a, compact=True) for a in eval_anns[:shown]], out / "roadscene_predictions.png",
        caption_predictions=cap_preds[:shown], caption_references=[r[0] for r in cap_refs[:shown]],
        titles=ids[:shown])
    tables = format_demo_tables(results)
    card_metrics = {k: results["bvpi"]["model"][k] for k in BVPI_ROWS[:5]}
    card_base = {MAJORITY: {k: results["bvpi"]["baseline"][k] for k in BVPI_ROWS[:5]}}
    if "model" in results["captions"]:
        card_metrics.update({k: results["captions"]["model"][k] for k in CAPTION_ROWS})
        card_base[CONSTANT] = {k: results["captions"]["baseline"][k] for k in CAPTION_ROWS}
    write_roadscene_card(
        out / "roadscene-tiny", trainer.model, args, trainer.state.log_history, len(trainer.train_dataset),
        metrics=card_metrics, baselines=card_base, metrics_table=tables, eval_data=f"{cfg.num_eval} held-out synthetic scenes (seed {cfg.seed + 1})",
        protocol=(f"{cfg.num_eval} held-out synthetic scenes (seed {cfg.seed + 1}); BVPI exact-match accuracy on "
                  "parsed outputs (unparseable = wrong); COCO caption metrics (pycocoevalcap) against 2 references; "
                  f"generation with {cfg.num_beams} beam(s), greedy"))
    return finish_demo(out, results, tables, train={"loss_curve": losses, "num_train_records": len(trainer.train_dataset)},
                       timings=timings, config=cfg.__dict__, figure=str(figure))


__all__ = ["RoadSceneDemoConfig", "format_demo_tables", "majority_annotation", "majority_bvpi_answer",
           "run_roadscene_demo"]
