"""Batched, resumable caption / BVPI generation with a vision-language model (never reads stdin).

`generate_predictions(model_dir, input_path, output_path)` reads any road-scene file the data module
reads (captions JSON/JSONL, BVPI SFT JSONL, annotations), builds the user prompt of each record (the
assistant turn, if any, is the reference and is not shown to the model), generates with beam search, and
appends `{"id", "image", "prediction"}` lines to the output JSONL. Ids already in the output are
skipped, so an interrupted run continues where it stopped; a torn last line is ignored and rewritten.
A LoRA adapter directory (from `hf-vlmdrive sft roadscene`) is loaded with its base model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .errors import UserFileNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["done_ids", "generate_predictions", "load_generation_model"]


def done_ids(output_path: str | Path) -> set[str]:
    """Ids already written to `output_path` (a torn or malformed line is dropped from the file)."""
    path = Path(output_path)
    if not path.is_file():
        return set()
    ids, good_lines, dropped = set(), [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            ids.add(str(rec["id"]))
            good_lines.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            dropped += 1
    if dropped:
        logger.warning("%s: dropped %d malformed line(s) left by an interrupted run", path, dropped)
        path.write_text("".join(f"{line}\n" for line in good_lines), encoding="utf-8")
    return ids


def load_generation_model(model_name_or_path: str, device: str | None = None):
    """`(model, processor)` from a model directory / Hub id or a PEFT adapter directory."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = Path(model_name_or_path)
    if (path / "adapter_config.json").is_file():
        from peft import PeftConfig, PeftModel

        base = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        processor_src = str(path) if (path / "processor_config.json").is_file() or (path / "tokenizer_config.json").is_file() else base
    else:
        model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, dtype=torch.float32)
        processor_src = model_name_or_path
    processor = AutoProcessor.from_pretrained(processor_src)
    return model.to(device).eval(), processor


def _prompt_records(input_path: Path, task: str, image_root: str | None, prompt: str | None) -> list[dict[str, Any]]:
    from .data.roadscene import load_sft_dataset

    dataset, report = load_sft_dataset(input_path, task=task, image_root=image_root, prompt=prompt)
    if report.num_skipped:
        logger.warning(report.summary())
    import datasets

    # Keep paths (decode=False): images are opened per batch, not all at once.
    dataset = dataset.cast_column("images", datasets.Sequence(datasets.Image(decode=False)))
    out = []
    for row in dataset:
        messages = []
        for m in row["messages"]:
            if m["role"] == "assistant":
                break
            messages.append({"role": m["role"], "content": [{k: v for k, v in p.items() if v is not None} for p in m["content"]]})
        out.append({"id": row["id"], "images": [im["path"] for im in row["images"]], "messages": messages})
    return out


@torch.no_grad()
def generate_predictions(
    model_name_or_path: str,
    input_path: str | Path,
    output_path: str | Path,
    num_beams: int = 3,
    max_new_tokens: int = 128,
    batch_size: int = 4,
    task: str = "auto",
    image_root: str | None = None,
    prompt: str | None = None,
    model=None,
    processor=None,
) -> dict[str, int]:
    """Generate a prediction for every record of `input_path` not yet in `output_path` (JSONL).

    Returns counts: `num_records`, `num_skipped_done` (already in the output), `num_generated`.
    """
    from .data.images import load_chat_image as _load_image

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise UserFileNotFoundError(f"input file {input_path} does not exist")
    records = _prompt_records(input_path, task, image_root, prompt)
    already = done_ids(output_path)
    todo = [r for r in records if r["id"] not in already]
    if not todo:
        logger.info("%s already holds all %d predictions", output_path, len(records))
        return {"num_records": len(records), "num_skipped_done": len(records), "num_generated": 0}
    if model is None or processor is None:
        model, processor = load_generation_model(model_name_or_path)
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("a", encoding="utf-8") as fh, tqdm(total=len(todo), desc="generate", unit="sample") as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            texts = [processor.apply_chat_template(r["messages"], add_generation_prompt=True) for r in batch]
            images = [[_load_image(p) for p in r["images"]] for r in batch]
            inputs = processor(
                text=texts, images=images if any(images) else None, padding=True, padding_side="left",
                return_tensors="pt", add_special_tokens=False,
            ).to(model.device)
            generated = model.generate(
                **inputs, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id
            )
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            texts_out = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for rec, text in zip(batch, texts_out):
                image = rec["images"][0] if rec["images"] else None
                fh.write(json.dumps({"id": rec["id"], "image": image, "prediction": text.strip()}) + "\n")
            fh.flush()
            bar.update(len(batch))
    return {"num_records": len(records), "num_skipped_done": len(records) - len(todo), "num_generated": len(todo)}
