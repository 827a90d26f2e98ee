"""A tiny, randomly initialised Kosmos-2 (and its processor) built locally, for RoboVLM tests and examples.

The real transformers classes (`Kosmos2Config` / `Kosmos2ForConditionalGeneration`, `CLIPImageProcessor`, a
`PreTrainedTokenizerFast` with Kosmos-2's special tokens `<s>`=0 `<pad>`=1 `</s>`=2 `<unk>`=3 and `<grounding>`)
so the code path under test is the one users run with `microsoft/kosmos-2-patch14-224`.
"""

from __future__ import annotations

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<grounding>"]
_CORPUS = [
    "an image of a robot horizontal left", "an image of a robot horizontal right", "move the robot forward",
    "turn left", "turn right", "go straight to the red box", "stop", "An image of a robot",
]


def build_tiny_kosmos2_tokenizer(vocab_size: int = 64):
    """Word-level tokenizer with Kosmos-2's special-token ids; adds `<s>` ... `</s>` like XLM-R."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(_CORPUS * 4, trainer=trainers.WordLevelTrainer(vocab_size=vocab_size,
                                                                          special_tokens=SPECIAL))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=["<grounding>"])
    fast.padding_side = "right"
    return fast


def tiny_kosmos2_config(hidden_size: int = 32, image_size: int = 32, patch_size: int = 8, latent_queries: int = 4,
                        vocab_size: int = 64) -> dict:
    """A Kosmos-2 config dict: 2-layer vision tower and 2-layer text model of width `hidden_size`."""
    return {
        "model_type": "kosmos-2",
        "latent_query_num": latent_queries,
        "text_config": {"vocab_size": vocab_size, "embed_dim": hidden_size, "layers": 2, "attention_heads": 2,
                        "ffn_dim": 2 * hidden_size, "max_position_embeddings": 256, "dropout": 0.0,
                        "attention_dropout": 0.0, "activation_dropout": 0.0, "layerdrop": 0.0},
        "vision_config": {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "num_hidden_layers": 2,
                          "num_attention_heads": 2, "image_size": image_size, "patch_size": patch_size},
    }


def build_tiny_robovlm_processor(image_size: int = 32, prompt_template: str | None = None):
    """A [`RoboVLMProcessor`] with Kosmos-2's image processor settings at `image_size` and the tiny tokenizer."""
    from transformers import CLIPImageProcessor

    from ..models.robovlm.processing_robovlm import DEFAULT_PROMPT_TEMPLATE, RoboVLMProcessor

    image_processor = CLIPImageProcessor(size={"height": image_size, "width": image_size}, do_center_crop=False,
                                         resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    return RoboVLMProcessor(image_processor, build_tiny_kosmos2_tokenizer(),
                            prompt_template=prompt_template or DEFAULT_PROMPT_TEMPLATE)


def save_tiny_kosmos2(directory, hidden_size: int = 32, image_size: int = 32, seed: int = 0):
    """Write a tiny random `Kosmos2ForConditionalGeneration` + `Kosmos2`-style processor parts to `directory` (a
    stand-in for `microsoft/kosmos-2-patch14-224` that `from_backbone` can load). Returns the directory."""
    import torch
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = tiny_kosmos2_config(hidden_size, image_size)
    cfg.pop("model_type")
    model = Kosmos2ForConditionalGeneration(Kosmos2Config(**cfg))
    model.save_pretrained(directory)
    proc = build_tiny_robovlm_processor(image_size)
    proc.image_processor.save_pretrained(directory)
    proc.tokenizer.save_pretrained(directory)
    return directory


__all__ = ["build_tiny_kosmos2_tokenizer", "build_tiny_robovlm_processor", "save_tiny_kosmos2", "tiny_kosmos2_config"]
