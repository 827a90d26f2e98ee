"""Batch collators (dataclasses, as in TRL): lists of dataset rows -> model inputs."""

from __future__ import annotations

import copy
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .images import load_chat_image
from .roadscene import ANNOTATION_PROMPT, DEFAULT_CAPTION_PROMPT

logger = logging.getLogger(__name__)


@dataclass
class WaypointCollator:
    """Collate waypoint rows for [`WaypointVLMModel`].

    Input keys per row: `image` (a PIL image, or a `datasets.Image(decode=False)` dict) or `images` (a
    list of those, one per camera, when `multi_camera`), or `image_features` (precomputed pooled
    features); `past_states` (16x6); `intent` (int); optionally `future_waypoints` (20x2).
    Output keys: `pixel_values` (B, 3, S, S) or (B, N, 3, S, S) — or, with a `feature_cache` that holds
    every image of the batch, `image_features` (B, N*D) (pooled entries) or `vision_hidden_states`
    (B, N, L, D) (token entries) — `past_states` (B, 16, 6) float32, `intent` (B,) int64, and `labels`
    (B, 20, 2) float32 when the rows carry `future_waypoints`.

    With a `feature_cache` ([`hf_vlmdrive.features.FeatureCache`]) a batch whose images are all cached is
    served from the cache without decoding a single image; if any image is missing the whole batch falls
    back to pixels (the model then runs its tower), so a deleted or corrupt entry costs time, not data.

    All preprocessing is the model's processor's ([`WaypointVLMProcessor`]); a bare image processor is
    accepted and wrapped in one.
    """

    processor: Any
    multi_camera: bool = False
    feature_cache: Any = None

    def __post_init__(self):
        from ..models.waypoint_vlm.processing_waypoint_vlm import WaypointVLMProcessor

        if not isinstance(self.processor, WaypointVLMProcessor):
            self.processor = WaypointVLMProcessor(self.processor)
        self.cache_batches = 0
        self.pixel_batches = 0

    @property
    def image_processor(self):
        """The image processor inside the processor (what the feature cache's identity is computed from)."""
        return self.processor.image_processor

    def _images(self, rows: list[dict]) -> tuple[list, int]:
        """All images of the batch, row-major, and the number of cameras per row."""
        if not self.multi_camera:
            return [r["image"] for r in rows], 1
        per_row = [r["images"] for r in rows]
        cams = {len(images) for images in per_row}
        if len(cams) != 1:
            raise UserError(f"rows have different numbers of camera images: {sorted(cams)}")
        return [img for images in per_row for img in images], cams.pop()

    def _from_cache(self, images: list, batch_size: int, cams: int) -> dict[str, torch.Tensor] | None:
        from ..features.cache import image_digest

        found = []
        for image in images:
            value = self.feature_cache.get(image_digest(image))
            if value is None:
                return None
            found.append(value)
        stacked = torch.stack(found).to(torch.float32)  # (B*N, D) or (B*N, L, D)
        if stacked.ndim == 2:
            return {"image_features": stacked.reshape(batch_size, -1)}  # (B, N*D)
        return {"vision_hidden_states": stacked.reshape(batch_size, cams, *stacked.shape[1:])}  # (B, N, L, D)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if "image_features" in rows[0]:
            batch["image_features"] = torch.as_tensor(np.stack([np.asarray(r["image_features"]) for r in rows]), dtype=torch.float32)
        else:
            images, cams = self._images(rows)
            cached = self._from_cache(images, len(rows), cams) if self.feature_cache is not None else None
            if cached is not None:
                batch.update(cached)
                self.cache_batches += 1
            else:
                pixels = self.processor.preprocess_images(images)  # (B*N, 3, S, S)
                if self.multi_camera:
                    pixels = pixels.reshape(len(rows), cams, *pixels.shape[1:])
                batch["pixel_values"] = pixels
                self.pixel_batches += 1
        labels = [r["future_waypoints"] for r in rows] if rows[0].get("future_waypoints") is not None else None
        batch.update(self.processor(past_states=[r["past_states"] for r in rows], intent=[r["intent"] for r in rows],
                                    future_waypoints=labels))
        return dict(batch)


@dataclass
class GeoVLACollator:
    """Collate [`LeRobotDataset`] samples into [`GeoVLAForActionPrediction`] inputs with the model's
    [`GeoVLAProcessor`] (which holds all the preprocessing).

    Input keys per sample: `images` (list of (H, W, 3) uint8, one per camera), `language`, `state` (S,),
    `actions` (T, A), `action_is_pad` (T,).
    Output keys: `input_ids`, `attention_mask`, `pixel_values`, `image_grid_thw` (one image placeholder per
    camera followed by the instruction), `geometry_pixel_values` (B, V, 3, S, S), `state` (B, S),
    `actions` (B, T, A), `action_is_pad` (B, T). State and actions stay in dataset units: the model
    normalises them with its own statistics.

    Args:
        processor: a [`GeoVLAProcessor`], or a plain `Qwen2_5_VLProcessor` (wrapped in one with
            `geometry_image_size`, `use_chat_template` and `prompt`).
        cache_keys: also emit `geometry_cache_keys`, each sample's geometry-cache key (`content_key` of its
            `geometry_pixel_values`), so the hashing runs here, in the DataLoader workers and before the batch
            goes to the accelerator, instead of inside the training step (the GeoVLA recipe turns it on when a
            geometry cache is attached).
    """

    processor: Any
    geometry_image_size: int | None = None
    use_chat_template: bool = True
    prompt: str | None = None
    cache_keys: bool = False

    def __post_init__(self):
        from ..models.geovla.processing_geovla import DEFAULT_PROMPT, GeoVLAProcessor

        if not isinstance(self.processor, GeoVLAProcessor):
            if self.geometry_image_size is None:
                raise UserError("GeoVLACollator around a plain Qwen2.5-VL processor needs geometry_image_size")
            self.processor = GeoVLAProcessor.from_vlm_processor(
                self.processor, geometry_image_size=self.geometry_image_size,
                use_chat_template=self.use_chat_template, prompt=self.prompt or DEFAULT_PROMPT,
            )

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = dict(self.processor.prepare_inputs(
            [s["images"] for s in samples], [s["language"] for s in samples],
            state=[s["state"] for s in samples], actions=[s["actions"] for s in samples],
            action_is_pad=[s["action_is_pad"] for s in samples],
        ))
        if self.cache_keys:
            from ..features.geometry_cache import content_key

            batch["geometry_cache_keys"] = [content_key(p) for p in batch["geometry_pixel_values"]]
        return batch


@dataclass
class SimLingoCollator:
    """Stack [`CarlaRouteDataset`] samples into a SimLingo batch.

    Input keys (per sample, numpy): `pixel_values` (T,N,3,H,W) uint8, `speed` (1,), `target_point` (2,),
    `target_point_next` (2,), `route_coords` (K,2), optional `route_image` (3,RH,RW) uint8, `intrinsics` (N,3,3), `extrinsics`
    (N,4,4), `speed_wps_labels` (10,2), `speed_wps_mask` (10,), `route_labels` (20,2), `route_mask` (20,),
    plus `command`, `route_name`, `frame` (dropped unless `keep_meta`). The samples were preprocessed by the
    dataset with [`SimLingoProcessor`]'s functions (the same ones the processor applies to raw inputs).

    Output keys: the same names as tensors with a batch dimension (uint8 images, float32 values, bool
    masks), which are exactly [`SimLingoForWaypointPrediction.forward`]'s arguments; with `keep_meta`
    also `command` (B,) long and the lists `route_name`, `frame`.
    """

    keep_meta: bool = False
    tensor_keys: tuple[str, ...] = field(default=(
        "pixel_values", "speed", "target_point", "target_point_next", "route_coords", "route_image", "intrinsics",
        "extrinsics", "speed_wps_labels", "speed_wps_mask", "route_labels", "route_mask",
    ))

    def __call__(self, samples: list[dict]) -> dict:
        batch: dict = {}
        for key in self.tensor_keys:
            if key in samples[0]:
                batch[key] = torch.from_numpy(np.stack([s[key] for s in samples]))
        if self.keep_meta:
            batch["command"] = torch.tensor([s["command"] for s in samples], dtype=torch.long)
            batch["route_name"] = [s["route_name"] for s in samples]
            batch["frame"] = [s["frame"] for s in samples]
        return batch




# ---------------------------------------------------------------------------------------- road-scene SFT
# Why a collator of our own: TRL 1.16's `DataCollatorForVisionLanguageModeling` masks non-assistant tokens
# only when the chat template carries `{% generation %}` markers, which the SmolVLM2 / Idefics3 Hub
# templates do not. `AssistantOnlyVLMCollator` works with any template: it renders the conversation up to
# each assistant turn (with the generation prompt) and through it, and keeps the labels of the tokens in
# between; everything else (system/user text, the expanded image tokens, padding) is -100.

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
    answers on the right (logged); an example whose prompt with its image tokens does not fit (nothing left
    to train on, or image tokens cut) is an error naming the example: `prompt_length` measures it, and
    `train_roadscene` checks every example before training (`skip_long_examples` drops and counts them).
    """

    processor: Any
    max_length: int | None = None

    def prompt_length(self, example: dict[str, Any], whole: bool = False) -> int:
        """Tokens before the first assistant answer (of the whole conversation with `whole`), image tokens
        included."""
        messages = _clean_messages(example["messages"])
        imgs = [load_chat_image(im) for im in (example.get("images") or [])]
        if whole:
            return self._length(self._render(messages), imgs)[0]
        first = next((k for k, m in enumerate(messages) if m["role"] == "assistant"), None)
        if first is None:
            raise UserError(f"example {example.get('id', '?')} has no assistant turn to train on")
        return self._length(self._render(messages[:first], add_generation_prompt=True), imgs)[0]

    def _render(self, messages, add_generation_prompt=False) -> str:
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        texts, images, span_texts = [], [], []
        for ex in examples:
            messages = _clean_messages(ex["messages"])
            imgs = [load_chat_image(im) for im in (ex.get("images") or [])]
            texts.append(self._render(messages))
            images.append(imgs)
            spans = []
            for k, m in enumerate(messages):
                if m["role"] == "assistant":
                    spans.append((self._render(messages[:k], add_generation_prompt=True), self._render(messages[: k + 1])))
            if not spans:
                raise UserError(f"example {ex.get('id', '?')} has no assistant turn to train on")
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
                    raise UserError(
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
            kept = labels[:, : self.max_length]
            for row, ex in enumerate(examples):
                cut_images = image_token_id is not None and bool((input_ids[row, self.max_length:] == image_token_id).any())
                if cut_images or not bool((kept[row] != -100).any()):
                    why = "cuts its image tokens" if cut_images else "leaves no answer token to train on"
                    raise UserError(
                        f"example {ex.get('id', row)}: max_length={self.max_length} {why} (the conversation has "
                        f"{int(batch['attention_mask'][row].sum())} tokens); raise max_length or drop the example "
                        "(--skip_long_examples)"
                    )
            logger.info("truncating a batch of length %d to max_length=%d (answers cut)", input_ids.shape[1],
                        self.max_length)
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


# ---------------------------------------------------------------------------------------- Flamingo SFT
_before, _after = ANNOTATION_PROMPT.split("{annotations}")
ANNOTATION_RE = re.compile(rf"^{re.escape(_before)}.*{re.escape(_after)}$", re.DOTALL)


@dataclass
class FlamingoSFTCollator:
    """Text dropout on visual descriptions, then `AssistantOnlyVLMCollator`.

    Input: examples with `messages` and `images` (as the road-scene data module builds them). With
    probability `text_dropout`, a user text part that carries the annotations ("Using road annotations:
    {...}, generate caption and cue.") is replaced by the plain caption prompt, so the answer must come from
    the image. Output keys: `input_ids`, `attention_mask`, `pixel_values` (B, T_img, 1, 3, H, W), `labels`.

    The dropout draws come from `random.Random(seed)`; under N processes pass `process_index` so that each rank
    draws its own (rank 0 keeps the one-process draws).
    """

    base: AssistantOnlyVLMCollator
    text_dropout: float = 0.0
    seed: int = 0
    process_index: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self):
        self._rng = random.Random(self.seed if self.process_index == 0 else f"{self.seed}/rank{self.process_index}")

    def prompt_length(self, example: dict[str, Any], whole: bool = False) -> int:
        """See `AssistantOnlyVLMCollator.prompt_length` (measured without dropout: the longer prompt)."""
        return self.base.prompt_length(example, whole=whole)

    def drop_descriptions(self, example: dict[str, Any]) -> dict[str, Any]:
        """A copy of `example` with each annotation prompt dropped with probability `text_dropout`."""
        example = dict(example)
        messages = copy.deepcopy(example["messages"])
        for message in messages:
            if message["role"] != "user" or not isinstance(message["content"], list):
                continue
            for part in message["content"]:
                text = part.get("text")
                if part.get("type") == "text" and text and ANNOTATION_RE.match(text):
                    if self._rng.random() < self.text_dropout:
                        part["text"] = DEFAULT_CAPTION_PROMPT
        example["messages"] = messages
        return example

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.text_dropout > 0:
            examples = [self.drop_descriptions(ex) for ex in examples]
        return self.base(examples)


# ---------------------------------------------------------------------------------------- RoboVLM windows
@dataclass
class RoboVLMCollator:
    """Batches windows with a [`RoboVLMProcessor`].

    Input keys per item: `frames` (L, H, W, 3), `actions` (L, chunk, A), `action_mask` (L, chunk), `task`.
    Output keys: `pixel_values` (B, L, 3, S, S), `input_ids` / `attention_mask` (B, T), `actions`, `action_mask`.
    """

    processor: Any

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.processor(images=[list(it["frames"]) for it in items], text=[it["task"] for it in items],
                               actions=np.stack([it["actions"] for it in items]),
                               action_mask=np.stack([it["action_mask"] for it in items]))
        return dict(batch)


__all__ = ["FlamingoSFTCollator", "RoboVLMCollator", "AssistantOnlyVLMCollator", "GeoVLACollator", "SimLingoCollator", "WaypointCollator"]
