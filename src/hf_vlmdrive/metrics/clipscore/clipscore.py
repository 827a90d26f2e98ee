"""CLIPScore: image-caption compatibility from a CLIP model (open_clip or a transformers CLIPModel)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
CLIPScore = w * max(cos(E_image, E_text), 0), averaged over the samples.

- `scale=100` (default): the torchmetrics convention, range [0, 100] (reference numbers 29.9-31.6);
- `scale=2.5`: Hessel et al. (2021), range [0, 2.5].
The result states which (`clipscore_convention`). Models: an open_clip model name with a pretrained tag
(`model="ViT-B-32", pretrained="laion2b_s34b_b79k"`; `pretrained=None` gives random weights), or a
directory / Hub id holding a transformers `CLIPModel` with its tokenizer and image processor.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, captions.
    images: list of PIL images or image paths, one per caption.
    model: open_clip model name or transformers CLIPModel directory / Hub id.
    pretrained: open_clip pretrained tag (ignored for transformers models).
    scale: 100.0 (default, torchmetrics) or 2.5 (Hessel et al.).
    batch_size: images per forward pass (default 32).
Returns:
    dict: clipscore, clipscore_std, clipscore_scale, clipscore_convention, num_samples.
Examples:
    >>> from hf_vlmdrive.metrics import load_metric
    >>> metric = load_metric("clipscore")  # doctest: +SKIP
    >>> metric.compute(predictions=["a road"], images=[img], model="path/to/clip")  # doctest: +SKIP
"""

_CITATION = """
@inproceedings{hessel2021clipscore, title={CLIPScore: A Reference-free Evaluation Metric for Image Captioning}, year={2021}}
"""


def _to_pil(image: Any):
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return im.convert("RGB")
    return image.convert("RGB")


class ClipEncoder:
    """Embeds images and texts with open_clip or transformers' CLIPModel; outputs are L2-normalised."""

    def __init__(self, model: str, pretrained: str | None = None, device: str | None = None):
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = Path(model)
        if path.is_dir() and (path / "config.json").is_file() or "/" in model and not _is_open_clip_name(model):
            self.backend = "transformers"
            from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

            self.model = CLIPModel.from_pretrained(model).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.image_processor = AutoImageProcessor.from_pretrained(model)
            self.max_length = self.model.config.text_config.max_position_embeddings
        else:
            self.backend = "open_clip"
            try:
                import open_clip
            except ImportError as err:
                raise ImportError("open_clip backend needs `pip install hf_vlmdrive[captions]`") from err
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained)
            self.model = self.model.to(self.device).eval()
            self.tokenizer = open_clip.get_tokenizer(model)

    def encode(self, images: Sequence[Any], texts: Sequence[str]):
        """(N, D) normalised image and text embeddings as float64 numpy arrays."""
        import torch

        pil = [_to_pil(im) for im in images]
        with torch.no_grad():
            if self.backend == "transformers":
                pix = self.image_processor(images=pil, return_tensors="pt")["pixel_values"].to(self.device)
                tok = self.tokenizer(
                    list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.device)
                img = self.model.get_image_features(pixel_values=pix)
                txt = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
                # transformers 5 may return a ModelOutput; the embedding is its pooled output.
                img = getattr(img, "pooler_output", img)
                txt = getattr(txt, "pooler_output", txt)
            else:
                pix = torch.stack([self.preprocess(p) for p in pil]).to(self.device)
                img = self.model.encode_image(pix)
                txt = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))
        img = img.double().cpu().numpy()
        txt = txt.double().cpu().numpy()
        img /= np.linalg.norm(img, axis=-1, keepdims=True)
        txt /= np.linalg.norm(txt, axis=-1, keepdims=True)
        return img, txt


def _is_open_clip_name(name: str) -> bool:
    try:
        import open_clip
    except ImportError:
        return False
    return name in open_clip.list_models() or name.startswith("hf-hub:")


def clip_score(
    predictions: Sequence[str],
    images: Sequence[Any],
    model: str | ClipEncoder,
    pretrained: str | None = None,
    scale: float = 100.0,
    batch_size: int = 32,
) -> dict:
    """CLIPScore of each caption against its image (see `_DESCRIPTION`); plain function."""
    if len(predictions) != len(images):
        raise ValueError(f"{len(predictions)} captions but {len(images)} images")
    if not predictions:
        raise ValueError("no captions to score")
    if scale not in (100.0, 2.5):
        raise ValueError(f"scale must be 100 (torchmetrics) or 2.5 (Hessel et al.), got {scale}")
    encoder = model if isinstance(model, ClipEncoder) else ClipEncoder(model, pretrained=pretrained)
    scores = []
    for i in range(0, len(predictions), batch_size):
        img, txt = encoder.encode(images[i : i + batch_size], predictions[i : i + batch_size])
        cos = (img * txt).sum(-1)
        scores.append(scale * np.maximum(cos, 0.0))
    per_sample = np.concatenate(scores)
    convention = "100*max(cos,0) (torchmetrics)" if scale == 100.0 else "2.5*max(cos,0) (Hessel et al. 2021)"
    return {
        "clipscore": float(per_sample.mean()),
        "clipscore_std": float(per_sample.std()),
        "clipscore_scale": float(scale),
        "clipscore_convention": f"{convention}, {encoder.backend} model {model if isinstance(model, str) else ''}".strip(),
        "num_samples": int(per_sample.size),
        "per_sample": per_sample.tolist(),
    }


class Clipscore(evaluate.Metric):
    """CLIPScore (100*max(cos,0) by default, 2.5 scaling optional) with open_clip or transformers CLIP."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[datasets.Features({"predictions": datasets.Value("string")})],
        )

    def _compute(self, predictions, images=None, model=None, pretrained=None, scale=100.0, batch_size=32):
        if images is None or model is None:
            raise ValueError("clipscore needs images=[...] and model=<open_clip name or CLIPModel dir>")
        return clip_score(predictions, images, model, pretrained=pretrained, scale=scale, batch_size=batch_size)


__all__ = ["ClipEncoder", "Clipscore", "clip_score"]
