"""Write the OpenFlamingo + MosaicGPT (MPT-1B architecture) reference fixture with the ORIGINAL code.

It runs in a separate venv holding open-flamingo 2.0.1, the versions it pins (torch 2.0.1, transformers 4.33.3,
open_clip_torch 2.20.0) and MosaicML's composer 0.14.0 (PyPI `mosaicml`, for its `LPLayerNorm`; it needs
torch < 2.1):

    python3.11 -m venv /tmp/of_mpt_venv
    /tmp/of_mpt_venv/bin/pip install 'torch==2.0.1' 'torchvision==0.15.2' 'mosaicml==0.14.0' \
        'transformers==4.33.3' 'open_clip_torch==2.20.0' einops einops-exts 'numpy<1.25' omegaconf
    /tmp/of_mpt_venv/bin/pip install --no-deps open-flamingo==2.0.1

The MosaicGPT source is MosaicML's own, at the tag the model card names (github mosaicml/examples v0.0.4, commit
52cd4fef69497f225a034fcd10692f8613732d10); nothing of it is copied into this repository:

    git clone https://github.com/mosaicml/examples /tmp/mosaicml-examples
    git -C /tmp/mosaicml-examples checkout 52cd4fef69497f225a034fcd10692f8613732d10
    HF_HUB_OFFLINE=1 /tmp/of_mpt_venv/bin/python scripts/make_open_flamingo_mpt_fixture.py \
        --mosaicgpt-src /tmp/mosaicml-examples [--hub-copy OTTER/flamingo/mpt_redpajama]

`--mosaicgpt-src` is the root of that checkout (it holds `examples/llm/src/models/`). Its modules
`mosaic_gpt/`, `layers/` and `utils/` are imported unchanged as the package `examples.llm.src.models` (only the
parents `examples`, `examples.llm`, `examples.llm.src`, `examples.llm.src.models` are bare namespace packages: their
real `__init__` files import the training stack, datasets and the HF wrappers, none of which MosaicGPT needs).
`--hub-copy` (optional) is the Hub's six remote-code files as vendored in github Luodian/Otter commit b569f85
(`flamingo/mpt_redpajama/`); when given, the fixture's `lm/` is also loaded through transformers'
`trust_remote_code` with those files and its logits are compared with the v0.0.4 source's (recorded in
versions.json).

Shims (also recorded in versions.json):
- `wandb` is a stub module (open_flamingo's train utils import it).
- OpenFlamingo's `Flamingo.forward` passes `labels=` to the language model, which MosaicML's MosaicGPT.forward
  does not accept; the released OpenFlamingo-3B loads `anas-awadalla/mpt-1b-redpajama-200b`, a copy whose forward
  accepts `labels`. Here a subclass `MosaicGPT(original MosaicGPT)` adds that argument (loss = next-token
  cross-entropy when labels are given; the fixture only calls it with labels=None) and is registered with
  `AutoModelForCausalLM` for `mosaic_gpt`, so OpenFlamingo's `AutoModelForCausalLM.from_pretrained` builds it.
- OpenFlamingo adds `get_input_embeddings` to the LM only when the LM path contains "mpt-1b-redpajama-200b" (the
  original MosaicGPT has none, so `resize_token_embeddings` fails otherwise): the LM is handed to
  `create_model_and_transforms` from a scratch copy of `lm/` in a folder named `mpt-1b-redpajama-200b`, whose
  config.json drops `auto_map` (the remote-code files are not there; the class comes from the registration).

It writes `tests/fixtures/open_flamingo_mpt/` (see its README.md for every file and key layout).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import types
from argparse import Namespace
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "open_flamingo_mpt"
MOSAICGPT_COMMIT = "52cd4fef69497f225a034fcd10692f8613732d10"
HUB_COPY_COMMIT = "b569f85de0f078b7829b6aad2d19f652e5e3878c"
SEEDS = {"clip": 0, "lm": 1, "lm_switches": 2, "flamingo": 4, "flamingo_perceiver_and_new_rows": 3, "inputs": 5}
SOURCE_FILES = [
    "mosaic_gpt/__init__.py", "mosaic_gpt/mosaic_gpt.py", "mosaic_gpt/configuration_mosaic_gpt.py",
    "layers/__init__.py", "layers/attention.py", "layers/gpt_blocks.py",
    "utils/__init__.py", "utils/param_init_fns.py", "utils/adapt_tokenizer.py", "utils/hf_prefixlm_converter.py",
    "utils/meta_init_context.py",
]
# The keys of mosaicml/mpt-1b-redpajama-200b's config.json (as HF writes them, sorted), values for the tiny models.
RELEASED_KEYS = [
    "_name_or_path", "alibi", "alibi_bias_max", "architectures", "attn_clip_qkv", "attn_impl", "attn_pdrop",
    "attn_qk_ln", "attn_uses_sequence_id", "auto_map", "d_model", "emb_init_std", "emb_init_uniform_lim",
    "emb_pdrop", "embedding_fraction", "fan_mode", "init_device", "init_div_is_residual", "init_gain",
    "init_nonlinearity", "init_std", "logit_scale", "low_precision_layernorm", "max_seq_len", "mlp_ratio",
    "model_type", "n_heads", "n_layers", "no_bias", "param_init_fn", "prefix_lm", "resid_pdrop", "softmax_scale",
    "tokenizer_name", "torch_dtype", "transformers_version", "use_cache", "verbose", "vocab_size",
]
META_KEYS = {"_name_or_path", "architectures", "auto_map", "model_type", "tokenizer_name", "torch_dtype",
             "transformers_version"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_mosaicgpt(src_root: Path, scratch: Path):
    """Import the original modules unchanged as `examples.llm.src.models.*` (bare namespace parents)."""
    models = src_root / "examples" / "llm" / "src" / "models"
    dest = scratch / "mosaicgpt_src" / "examples" / "llm" / "src" / "models"
    hashes = {}
    for rel in SOURCE_FILES:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(models / rel, dest / rel)
        hashes[f"examples/llm/src/models/{rel}"] = sha256(models / rel)
    sys.path.insert(0, str(scratch / "mosaicgpt_src"))
    mg = importlib.import_module("examples.llm.src.models.mosaic_gpt.mosaic_gpt")
    cfg = importlib.import_module("examples.llm.src.models.mosaic_gpt.configuration_mosaic_gpt")
    attn = importlib.import_module("examples.llm.src.models.layers.attention")
    commit = None
    if (src_root / ".git").exists():
        commit = subprocess.run(["git", "-C", str(src_root), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or None
    return mg, cfg, attn, hashes, commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mosaicgpt-src", required=True, type=Path,
                        help=f"root of a mosaicml/examples checkout at v0.0.4 (commit {MOSAICGPT_COMMIT})")
    parser.add_argument("--hub-copy", type=Path, default=None,
                        help="optional: Luodian/Otter's flamingo/mpt_redpajama (the Hub's remote-code files)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    sys.modules.setdefault("wandb", types.ModuleType("wandb"))  # open_flamingo's train utils import wandb
    import composer
    import open_clip
    import open_flamingo
    import tokenizers
    import torch
    import torch.distributed as dist
    import transformers
    from composer.algorithms.low_precision_layernorm.low_precision_layernorm import LPLayerNorm
    from open_flamingo import create_model_and_transforms
    from open_flamingo.src.helpers import PerceiverResampler
    from open_flamingo.train.train_utils import filter_state_dict_to_trainable, save_checkpoint
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from torch.nn.parallel import DistributedDataParallel as DDP
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        PreTrainedTokenizerFast,
        get_constant_schedule_with_warmup,
    )
    from transformers.modeling_outputs import CausalLMOutputWithPast

    torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="of_mpt_fixture_"))
    mg, cfg_mod, attn_mod, src_hashes, src_commit = import_mosaicgpt(args.mosaicgpt_src.resolve(), scratch)
    assert mg.LPLayerNorm is LPLayerNorm  # composer's own class
    OrigMosaicGPT, MosaicGPTConfig = mg.MosaicGPT, cfg_mod.MosaicGPTConfig

    class MosaicGPT(OrigMosaicGPT):
        """Shim: the original MosaicGPT plus a `labels` argument, as the anas-awadalla copy OpenFlamingo loads."""

        def forward(self, input_ids, past_key_values=None, attention_mask=None, prefix_mask=None,
                    sequence_id=None, labels=None, return_dict=None, output_attentions=None,
                    output_hidden_states=None, use_cache=None):
            out = super().forward(input_ids=input_ids, past_key_values=past_key_values,
                                  attention_mask=attention_mask, prefix_mask=prefix_mask, sequence_id=sequence_id,
                                  return_dict=return_dict, output_attentions=output_attentions,
                                  output_hidden_states=output_hidden_states, use_cache=use_cache)
            if labels is None:
                return out
            logits = out.logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100)
            return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                          hidden_states=out.hidden_states)

    AutoConfig.register("mosaic_gpt", MosaicGPTConfig)
    AutoModelForCausalLM.register(MosaicGPTConfig, MosaicGPT)

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    notes: dict = {}

    # --- tiny open_clip vision tower (width 8 keeps the perceiver / cross-attention key projections small) ---
    clip_cfg = {"embed_dim": 8, "quick_gelu": True,
                "vision_cfg": {"image_size": 16, "layers": 2, "width": 8, "head_width": 8, "patch_size": 8},
                "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 8, "heads": 1, "layers": 1}}
    (out / "tiny-vit-of-mpt.json").write_text(json.dumps(clip_cfg, indent=1) + "\n")
    open_clip.add_model_config(out / "tiny-vit-of-mpt.json")
    torch.manual_seed(SEEDS["clip"])
    clip = open_clip.create_model("tiny-vit-of-mpt")
    with torch.no_grad():
        for n, p in clip.visual.named_parameters():
            if "ln_" in n:
                p.add_(0.1 * torch.randn_like(p))
    torch.save(clip.state_dict(), out / "clip.pt")

    # --- tiny byte-level BPE tokenizer (as tests/test_flamingo_openflamingo_package.py's MAKE_REFERENCE) ---
    corpus = ["User: Assistant: Describe the road scene.", "A pedestrian walks on the sidewalk to the left of the road.",
              "The sidewalk is on the right, a bicycle and a person are on the sidewalk. 0 1 2 3 4 5 6 7 8 9 , . : ;"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus * 4, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                     unk_token="<|endoftext|>")
    n_tok = len(hf_tok)
    # MPT-1B's embedding (50432 rows) is larger than its tokenizer (50277): OpenFlamingo's resize SHRINKS it to
    # len(tokenizer) + 3. The tiny LM keeps that: vocab_size is len(tokenizer) rounded up past +3 to 64.
    lm_vocab = 64 * math.ceil((n_tok + 4) / 64)

    def mosaic_config(**over):
        c = dict(d_model=32, n_heads=4, n_layers=2, mlp_ratio=4, max_seq_len=64, vocab_size=lm_vocab,
                 attn_pdrop=0.0, resid_pdrop=0.0, emb_pdrop=0.0, attn_impl="torch", attn_qk_ln=True,
                 attn_clip_qkv=None, softmax_scale=None, prefix_lm=False, attn_uses_sequence_id=False,
                 alibi=True, alibi_bias_max=8, init_device="cpu", logit_scale=None, no_bias=True, verbose=0,
                 param_init_fn="kaiming_normal_", init_div_is_residual=True, init_std=0.02, emb_init_std=None,
                 emb_init_uniform_lim=None, init_gain=0, fan_mode="fan_in", init_nonlinearity="relu",
                 embedding_fraction=1.0, low_precision_layernorm=True, use_cache=False)
        c.update(over)
        return c

    def build(c, seed):
        torch.manual_seed(seed)
        m = MosaicGPT(MosaicGPTConfig(**c))
        with torch.no_grad():  # LayerNorm weights (norm_1/2, q_ln, k_ln, ln_f) away from 1 so they matter
            for n, p in m.named_parameters():
                if "ln" in n:
                    p.add_(0.3 * torch.randn_like(p))
        return m.eval()

    def save_hub_layout(m, c, d: Path):
        m.save_pretrained(d, safe_serialization=False)  # pytorch_model.bin, as the Hub repo ships
        (d / "generation_config.json").unlink(missing_ok=True)  # the Hub repo has none
        full = {"_name_or_path": "mosaicml/mpt-1b-redpajama-200b", "architectures": ["MosaicGPT"],
                "auto_map": {"AutoConfig": "configuration_mosaic_gpt.MosaicGPTConfig",
                             "AutoModelForCausalLM": "mosaic_gpt.MosaicGPT"},
                "model_type": "mosaic_gpt", "tokenizer_name": "EleutherAI/gpt-neox-20b", "torch_dtype": "float32",
                "transformers_version": transformers.__version__, **c}
        assert set(full) == set(RELEASED_KEYS), set(full) ^ set(RELEASED_KEYS)
        (d / "config.json").write_text(json.dumps({k: full[k] for k in RELEASED_KEYS}, indent=2) + "\n")
        back = MosaicGPT.from_pretrained(d).eval()  # the original reads it back
        sd, sd2 = m.state_dict(), back.state_dict()
        assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)

    # --- lm/: every switch MPT-1B uses ---
    lm_dir = out / "lm"
    lm_cfg = mosaic_config()
    lm = build(lm_cfg, SEEDS["lm"])
    save_hub_layout(lm, lm_cfg, lm_dir)
    hf_tok.save_pretrained(lm_dir)

    # --- lm_switches/: the other switches (3 heads: ALiBi slopes differ from transformers'), tokenizer of lm/ ---
    sw_cfg = mosaic_config(d_model=24, n_heads=3, alibi_bias_max=6, attn_clip_qkv=0.6, softmax_scale=0.3,
                           logit_scale="inv_sqrt_d_model", embedding_fraction=0.5)
    sw = build(sw_cfg, SEEDS["lm_switches"])
    save_hub_layout(sw, sw_cfg, out / "lm_switches")

    # --- LM-only references ---
    ref: dict = {}
    g = torch.Generator().manual_seed(SEEDS["inputs"])
    lm_ids = torch.randint(1, 250, (2, 12), generator=g)
    lm_mask = torch.ones(2, 12, dtype=torch.bool)
    lm_mask[1, :3] = False  # left padding in row 1
    lm_ids[1, :3] = 0
    with torch.no_grad():
        ref["lm_input_ids"], ref["lm_attention_mask"] = lm_ids, lm_mask
        ref["lm_logits"] = lm(lm_ids, attention_mask=lm_mask).logits
        ref["lm_logits_no_mask"] = lm(lm_ids).logits
        try:
            lm(lm_ids, attention_mask=lm_mask.long())
            notes["int64_attention_mask"] = "accepted"
        except Exception as e:  # the original needs a bool mask
            notes["int64_attention_mask"] = f"{type(e).__name__}: {e}"
        ref["lm_greedy"] = lm.generate(lm_ids[:, :8], attention_mask=lm_mask[:, :8].long(), max_new_tokens=6,
                                       do_sample=False, num_beams=1, pad_token_id=0, eos_token_id=None)
        ref["lm_beams"] = lm.generate(lm_ids[:, :8], attention_mask=lm_mask[:, :8].long(), max_new_tokens=6,
                                      do_sample=False, num_beams=3, pad_token_id=0, eos_token_id=None)
        # the same weights with QK LayerNorm switched off in the original
        noqk = MosaicGPT(MosaicGPTConfig(**mosaic_config(attn_qk_ln=False))).eval()
        missing, unexpected = noqk.load_state_dict(lm.state_dict(), strict=False)
        assert not missing and sorted(unexpected) == sorted(k for k in lm.state_dict() if "q_ln" in k or "k_ln" in k)
        ref["lm_logits_no_qk_ln"] = noqk(lm_ids, attention_mask=lm_mask).logits
        keep = lm_mask[..., None]
        drop = (ref["lm_logits_no_qk_ln"] - ref["lm_logits"]).abs().masked_select(keep).max().item()
        notes["qk_ln_drop_max_abs_logit_diff"] = drop
        notes["lm_logits_abs_max"] = ref["lm_logits"].abs().masked_select(keep).max().item()
        notes["qk_ln_drop_argmax_agreement"] = (ref["lm_logits_no_qk_ln"].argmax(-1) == ref["lm_logits"].argmax(-1)
                                                ).masked_select(lm_mask).float().mean().item()
        sw_ids = torch.randint(1, 250, (2, 10), generator=g)
        sw_mask = torch.ones(2, 10, dtype=torch.bool)
        sw_mask[0, :2] = False
        sw_ids[0, :2] = 0
        clipped = []
        hook = sw.transformer.blocks[0].attn.Wqkv.register_forward_hook(
            lambda mod, i, o: clipped.append((o.abs() > sw_cfg["attn_clip_qkv"]).float().mean().item()))
        ref["switches_input_ids"], ref["switches_attention_mask"] = sw_ids, sw_mask
        ref["switches_logits"] = sw(sw_ids, attention_mask=sw_mask).logits
        hook.remove()
        notes["switches_share_of_block0_qkv_clipped"] = clipped[0]
    # embedding_fraction changes only the backward pass (x*f + x.detach()*(1-f) equals x in value)
    sw.zero_grad()
    sw(sw_ids, attention_mask=sw_mask).logits.pow(2).mean().backward()
    ref["switches_wte_grad"] = sw.transformer.wte.weight.grad.detach().clone()
    sw.zero_grad()
    for n_heads, bias_max, key in ((4, 8, "alibi_slopes_lm"), (3, 6, "alibi_slopes_switches"), (16, 8, None)):
        b = attn_mod.alibi_bias(n_heads, 2, full=False, alibi_bias_max=bias_max, dtype=torch.float64)
        slopes = (-b[0, :, 0, 0]).float()  # bias at key j is slope * (j - (S_k - 1))
        if key:
            ref[key] = slopes
        else:
            notes["alibi_slopes_16_heads"] = slopes.tolist()

    # --- Hub remote-code copy (optional): the same lm/ through trust_remote_code ---
    hub_check = None
    if args.hub_copy is not None:
        hub_dir = scratch / "hub" / "mpt-1b-redpajama-200b"
        shutil.copytree(lm_dir, hub_dir)
        for f in sorted(args.hub_copy.glob("*.py")):
            shutil.copyfile(f, hub_dir / f.name)
        os.environ["HF_MODULES_CACHE"] = str(scratch / "hf_modules")
        hub_lm = transformers.AutoModelForCausalLM.from_pretrained(hub_dir, trust_remote_code=True).eval()
        with torch.no_grad():
            hl = hub_lm(lm_ids, attention_mask=lm_mask).logits
        hub_check = {"source": "github Luodian/Otter " + HUB_COPY_COMMIT + " flamingo/mpt_redpajama/",
                     "class": type(hub_lm).__module__ + "." + type(hub_lm).__name__,
                     "state_dict_keys_equal": sorted(hub_lm.state_dict()) == sorted(lm.state_dict()),
                     "max_abs_logit_diff_vs_v0.0.4": (hl - ref["lm_logits"]).abs().max().item(),
                     "files_sha256": {f.name: sha256(f) for f in sorted(args.hub_copy.glob("*.py"))}}

    # --- OpenFlamingo around lm/ ---
    of_lm = scratch / "of" / "mpt-1b-redpajama-200b"  # the name OpenFlamingo's get_input_embeddings hack keys on
    shutil.copytree(lm_dir, of_lm)
    c = json.loads((of_lm / "config.json").read_text())
    del c["auto_map"]
    (of_lm / "config.json").write_text(json.dumps(c, indent=2))
    torch.manual_seed(SEEDS["flamingo"])  # the gated cross-attention layers are initialised in there
    model, _, tokenizer = create_model_and_transforms(
        clip_vision_encoder_path="tiny-vit-of-mpt", clip_vision_encoder_pretrained=str(out / "clip.pt"),
        lang_encoder_path=str(of_lm), tokenizer_path=str(of_lm), cross_attn_every_n_layers=1)
    mro = type(model.lang_encoder).__mro__  # FlamingoLMMixin, OpenFlamingo's EmbeddingFnMixin hack, MosaicGPT
    assert isinstance(model.lang_encoder, MosaicGPT) and "EmbeddingFnMixin" in [k.__name__ for k in mro]
    # open_flamingo's own PerceiverResampler, shallower than the factory's (depth 6, 64 latents) to keep the
    # fixture small; heads 8 x dim_head 64 and ff_mult 4 stay the defaults (the converter reads depth / latents)
    torch.manual_seed(SEEDS["flamingo_perceiver_and_new_rows"])
    model.perceiver = PerceiverResampler(dim=clip_cfg["vision_cfg"]["width"], depth=2, num_latents=8)
    model.perceiver.requires_grad_(True)
    with torch.no_grad():
        for layer in model.lang_encoder.gated_cross_attn_layers:
            if layer is not None:
                layer.attn_gate.fill_(0.6)
                layer.ff_gate.fill_(-0.4)
        wte = model.lang_encoder.get_input_embeddings().weight
        # new token rows (<|endofchunk|>, <image>, <PAD>) at the scale of the others: the output is tied to wte,
        # so rows of a larger norm would win every argmax and make the generations degenerate
        wte[-3:].normal_(std=wte[:-3].std().item())
        assert model.lang_encoder.get_output_embeddings() is None  # logits use wte (tied)
    model.eval()
    n_rows = model.lang_encoder.get_input_embeddings().weight.shape[0]
    assert n_rows == len(tokenizer) == n_tok + 3

    # --- checkpoints, each written by the original code ---
    torch.save(filter_state_dict_to_trainable(model, model.state_dict()), out / "checkpoint_trainable.pt")
    torch.save(model.state_dict(), out / "checkpoint_full.pt")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("gloo", rank=0, world_size=1)
    ddp_model = DDP(model)
    torch.save(ddp_model.state_dict(), out / "checkpoint_ddp.pt")
    params = [(n, p) for n, p in ddp_model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(  # as open_flamingo/train/train.py groups them (no step taken)
        [{"params": [p for n, p in params if "gated_cross_attn" in n], "weight_decay": 0.1},
         {"params": [p for n, p in params if "gated_cross_attn" not in n], "weight_decay": 0.0}], lr=1e-4)
    lr_scheduler = get_constant_schedule_with_warmup(optimizer, num_warmup_steps=10)
    run = scratch / "run"
    save_checkpoint(ddp_model, optimizer, lr_scheduler, 0,
                    Namespace(fsdp=False, rank=0, run_name=str(run), report_to_wandb=False,
                              save_checkpoints_to_wandb=False, delete_previous_checkpoint=False))
    shutil.copyfile(run / "checkpoint_0.pt", out / "checkpoint_nested.pt")
    dist.destroy_process_group()
    model = ddp_model.module

    # --- OpenFlamingo references ---
    media = tokenizer.encode("<image>")[-1]
    eoc = tokenizer.encode("<|endofchunk|>")[-1]
    pad = tokenizer.pad_token_id
    ids = torch.randint(1, 250, (2, 14), generator=g)
    ids[:, 2] = media
    ids[:, 9] = media
    ids[0, 8] = eoc
    vision_x = torch.randn(2, 2, 1, 3, 16, 16, generator=g)
    # a left-padded batch: row 0 has 3 pad tokens, then 11 tokens with two images; row 1 is unpadded
    p_ids = torch.randint(1, 250, (2, 14), generator=g)
    p_ids[0, :3] = pad
    p_ids[0, [3, 9]] = media
    p_ids[0, 8] = eoc
    p_ids[1, [1, 7]] = media
    p_mask = torch.ones(2, 14, dtype=torch.bool)
    p_mask[0, :3] = False
    p_vision_x = torch.randn(2, 2, 1, 3, 16, 16, generator=g)
    with torch.no_grad():
        mask = torch.ones_like(ids, dtype=torch.bool)
        logits = model(vision_x=vision_x, lang_x=ids, attention_mask=mask).logits
        gen_kw = dict(max_new_tokens=6, pad_token_id=pad)
        greedy = model.generate(vision_x=vision_x, lang_x=ids[:, :10], attention_mask=mask[:, :10].long(),
                                num_beams=1, **gen_kw)
        beams = model.generate(vision_x=vision_x, lang_x=ids[:, :10], attention_mask=mask[:, :10].long(),
                               num_beams=3, **gen_kw)
        p_logits = model(vision_x=p_vision_x, lang_x=p_ids, attention_mask=p_mask).logits
        p_greedy = model.generate(vision_x=p_vision_x, lang_x=p_ids[:, :11], attention_mask=p_mask[:, :11].long(),
                                  num_beams=1, **gen_kw)
        p_beams = model.generate(vision_x=p_vision_x, lang_x=p_ids[:, :11], attention_mask=p_mask[:, :11].long(),
                                 num_beams=3, **gen_kw)
    ref.update({"input_ids": ids, "attention_mask": mask, "vision_x": vision_x, "logits": logits,
                "greedy": greedy, "beams": beams, "padded_input_ids": p_ids, "padded_attention_mask": p_mask,
                "padded_vision_x": p_vision_x, "padded_logits": p_logits, "padded_greedy": p_greedy,
                "padded_beams": p_beams, "media": media, "eoc": eoc, "pad": pad,
                "generate_prompt_len": 10, "padded_generate_prompt_len": 11, "max_new_tokens": 6})
    torch.save(ref, out / "reference_outputs.pt")

    # --- every file loads with weights_only=True ---
    for f in ["clip.pt", "checkpoint_trainable.pt", "checkpoint_full.pt", "checkpoint_ddp.pt",
              "checkpoint_nested.pt", "reference_outputs.pt", "lm/pytorch_model.bin",
              "lm_switches/pytorch_model.bin"]:
        torch.load(out / f, weights_only=True)

    versions = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__, "open_clip": open_clip.version.__version__,
        "open_flamingo": open_flamingo.__version__ if hasattr(open_flamingo, "__version__") else
        importlib.metadata.version("open_flamingo"),
        "mosaicml_composer": composer.__version__ + " (LPLayerNorm: composer.algorithms.low_precision_layernorm)",
        "numpy": importlib.metadata.version("numpy"),
        "mosaicgpt_source": {"repo": "github.com/mosaicml/examples", "tag": "v0.0.4", "commit": MOSAICGPT_COMMIT,
                             "checkout_head": src_commit, "files_sha256": src_hashes},
        "hub_copy_check": hub_check,
        "seeds": SEEDS,
        "shims": [
            "wandb: empty stub module (open_flamingo.train.train_utils imports it)",
            "parent packages examples, examples.llm, examples.llm.src, examples.llm.src.models: bare namespace "
            "packages (their __init__ files import the training stack); the mosaic_gpt/, layers/, utils/ "
            "modules and their __init__ files are the originals",
            "MosaicGPT subclass adding forward(labels=...) as the anas-awadalla copy that OpenFlamingo-3B loads "
            "(only labels=None is used here), registered with AutoModelForCausalLM for model_type mosaic_gpt",
            "OpenFlamingo gets a scratch copy of lm/ in a folder named mpt-1b-redpajama-200b (its "
            "get_input_embeddings hack keys on that name), config.json there without auto_map",
        ],
        "tokenizer_len": n_tok, "lm_vocab_size": lm_vocab, "flamingo_vocab_rows": n_rows,
        "observations": notes,
    }
    (out / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(notes, indent=1))
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f"{f.stat().st_size:>9}  {f.relative_to(out)}")


if __name__ == "__main__":
    main()
