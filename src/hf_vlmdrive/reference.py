"""The seeds' reference systems, one argument away: `from_reference(name)` and `build_reference(name)`.

Every seed system and variant has a name here and a recipe config `examples/configs/reference/<name>.yaml` that
its training command reads (`hf-vlmdrive train geovla --config examples/configs/reference/geovla_libero_pool.yaml`).
The YAML names the real checkpoints (the recipe loads them from the Hub); this module holds each checkpoint's
public config.json values that size the model, typed in with the repo id cited, so that a reference builds on
the meta device without the Hub (in seconds, no weights):

```python
from hf_vlmdrive.reference import from_reference, build_reference, REFERENCES
config = from_reference("geovla_libero_pool")          # a GeoVLAConfig: Qwen2.5-VL-3B + MapAnything V1.1 + DiT-16
model = build_reference("geovla_libero_pool")          # on the meta device, frozen as the recipe freezes it
```

`hf-vlmdrive estimate NAME_OR_YAML` prints the memory plan of a reference (see `hf_vlmdrive.estimate`).
A test (tests/test_reference_configs.py) checks that every YAML parses with its recipe and names the same
checkpoints and model fields as its entry here, and that every parameter table equals the figures in
docs/reference_configs.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

# ------------------------------------------------------------------------------------------------ backbone configs
# microsoft/kosmos-2-patch14-224 config.json (the fields that size it; the rest are transformers' defaults, which
# equal the checkpoint's): 1,664,485,376 parameters as Kosmos2Model.
KOSMOS2_PATCH14_224_CONFIG = {
    "model_type": "kosmos-2", "latent_query_num": 64,
    "text_config": {"vocab_size": 65037, "embed_dim": 2048, "layers": 24, "ffn_dim": 8192, "attention_heads": 32,
                    "max_position_embeddings": 2048, "scale_embedding": True},
    "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                      "num_attention_heads": 16, "image_size": 224, "patch_size": 14},
}

# HuggingFaceTB/SmolVLM2-2.2B-Instruct config.json (the fields that size it): SigLIP so400m at 384 px (27 layers),
# pixel shuffle 3 (81 visual tokens per 384 px tile: 27 x 27 patches / 3^2), SmolLM2-1.7B (24 layers, 2048 wide, 32 heads, untied LM head, 49280 rows).
SMOLVLM2_2_2B_CONFIG = {
    "model_type": "smolvlm", "scale_factor": 3, "image_token_id": 49190, "tie_word_embeddings": False,
    "text_config": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
                    "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 49280,
                    "max_position_embeddings": 8192, "rope_theta": 130000.0, "rms_norm_eps": 1e-5,
                    "tie_word_embeddings": False},
    "vision_config": {"model_type": "smolvlm_vision", "hidden_size": 1152, "intermediate_size": 4304,
                      "num_hidden_layers": 27, "num_attention_heads": 16, "image_size": 384, "patch_size": 14},
}

# llava-hf/llava-v1.6-mistral-7b-hf config.json, `vision_config` (CLIP ViT-L/14 at 336 px) and the projector
# width (the Mistral-7B hidden size 4096): what SimLingo-base keeps of LLaVA-NeXT.
LLAVA_NEXT_MISTRAL_7B_VISION_CONFIG = {
    "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
    "num_attention_heads": 16, "image_size": 336, "patch_size": 14, "projection_dim": 768,
}


def _qwen_3b() -> dict:
    from .models.geovla.configuration_geovla import QWEN2_5_VL_3B_CONFIG

    return copy.deepcopy(QWEN2_5_VL_3B_CONFIG)


def _smolvlm_base_tower() -> dict:
    from .models.waypoint_vlm.configuration_waypoint_vlm import SMOLVLM_BASE_VISION_CONFIG

    return dict(SMOLVLM_BASE_VISION_CONFIG)


# ------------------------------------------------------------------------------------------------ the references
@dataclass(frozen=True)
class Reference:
    """One seed system: its recipe config, the checkpoints it starts from and the seed's own figures.

    `backbones`: the recipe fields that name checkpoints -> their Hub ids. `model_config`: the YAML's
    `model_config` (the family config's fields). `recipe`: other recipe fields that shape the model
    (LoRA, 4-bit, the LM preset, trainable embeddings). `seed`: the seed's figures, for the docs' tables.
    """

    name: str
    family: str
    command: str
    description: str
    backbones: dict[str, str]
    model_config: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    seed: dict[str, str] = field(default_factory=dict)
    cache: str | None = None  # "waypoint" | "geometry": the frozen-feature cache the recipe can use
    num_views: int = 1
    dataset_frames: int | None = None  # the seed's dataset size (frames), for the cache estimate

    @property
    def yaml_path(self) -> Path:
        """`examples/configs/reference/<name>.yaml` in a source checkout."""
        return Path(__file__).resolve().parents[2] / "examples" / "configs" / "reference" / f"{self.name}.yaml"


_GEOVLA_SEED = {"vlm": "3,754.62 M (Qwen2.5-VL-3B)", "geometry_encoder": "1,228.49 M (MapAnything V1.1, frozen)",
                "action_head": "977.75 M (16-layer DiT)", "memory": "~125 GB per run on a 144 GB GPU",
                "geometry cache": "~160 GB RAM for 273 k frames"}


_SIMLINGO_SEED = {"language_model": "~50 M", "speed_encoder": "132,096", "target_point_encoder": "132,352",
                  "queries": "15,360"}


def _geovla(name: str, compressor: str, seed_compressor: str) -> Reference:
    return Reference(
        name=name, family="geovla", command="train geovla",
        description=f"GeoVLA ({compressor} compressor): Qwen2.5-VL-3B + MapAnything V1.1 + 16-layer DiT, K = 16",
        backbones={"vlm_name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct", "geometry_name_or_path": "facebook/map-anything"},
        model_config={"compressor_type": compressor, "num_geometry_tokens": 16, "dit_num_layers": 16,
                      "action_chunk_size": 8, "geometry_config": {"feature_mode": "qwenmapanythingpi"}},
        seed={**_GEOVLA_SEED, "geometry_compressor": seed_compressor},
        cache="geometry", num_views=2, dataset_frames=273_000,
    )


REFERENCES: dict[str, Reference] = {r.name: r for r in [
    Reference(
        name="waypoint_smolvlm", family="waypoint_vlm", command="train waypoint",
        description="Waypoint predictor: SmolVLM-Base's SigLIP tower (frozen) + the seed's MLP head 512-512",
        backbones={"backbone": "HuggingFaceTB/SmolVLM-Base"},
        model_config={"pooling": "mean", "head_hidden_sizes": [512, 512]},
        seed={"vision_model": "2,145,603,440 (the whole SmolVLM-Base, no LM head, frozen)", "head": "926,248",
              "memory": "15-20 GB on an A30 (24 GB)"},
        cache="waypoint",
    ),
    Reference(
        name="simlingo_base", family="simlingo", command="train simlingo",
        description="SimLingo-base, the released code's layout: LLaVA-NeXT's CLIP-L/336 + tiny Llama (~50 M)",
        backbones={"vision_model_name_or_path": "llava-hf/llava-v1.6-mistral-7b-hf"},
        recipe={"lm_size": "tiny"},
        seed=_SIMLINGO_SEED,
    ),
    Reference(
        name="simlingo_base_seed_heads", family="simlingo", command="train simlingo",
        description="SimLingo-base with SPEC 1.2's (the seed's) heads: 3-layer route head, biases, normal init",
        backbones={"vision_model_name_or_path": "llava-hf/llava-v1.6-mistral-7b-hf"},
        model_config={"route_head_layers": 3, "head_bias": True, "init_style": "normal"},
        recipe={"lm_size": "tiny"},
        seed=_SIMLINGO_SEED,
    ),
    Reference(
        name="roadscene_smolvlm2_qlora", family="smolvlm", command="sft roadscene",
        description="Road-scene SFT of SmolVLM2-2.2B-Instruct: 4-bit nf4 double-quant base, LoRA r=16 on q_proj/v_proj",
        backbones={"model_name_or_path": "HuggingFaceTB/SmolVLM2-2.2B-Instruct"},
        recipe={"load_in_4bit": True, "lora_r": 16, "lora_alpha": 32, "lora_target_modules": "q_proj,v_proj"},
    ),
    Reference(
        name="roadscene_smolvlm2_lora", family="smolvlm", command="sft roadscene",
        description="Road-scene SFT of SmolVLM2-2.2B-Instruct: LoRA r=16 on q_proj/v_proj, no quantisation",
        backbones={"model_name_or_path": "HuggingFaceTB/SmolVLM2-2.2B-Instruct"},
        recipe={"load_in_4bit": False, "lora_r": 16, "lora_alpha": 32, "lora_target_modules": "q_proj,v_proj"},
    ),
    Reference(
        name="flamingo_openflamingo3b", family="flamingo", command="sft flamingo",
        description="OpenFlamingo-3B (CLIP ViT-L/14 + MPT-1B, cross-attention every layer), embeddings trained",
        backbones={"model_name_or_path": "of3b-hf"},  # `hf-vlmdrive convert open-flamingo` output (docs/flamingo.md)
        recipe={"train_lm_embeddings": True},
        seed={"trainable": "~1.04 B"},
    ),
    Reference(
        name="robovlm_kosmos2_lstm", family="robovlm", command="train robovlm",
        description="RoboVLM: Kosmos-2 (microsoft/kosmos-2-patch14-224) + the seed checkpoint's 1-layer LSTM head",
        backbones={"backbone_name_or_path": "microsoft/kosmos-2-patch14-224"},
        model_config={"head_type": "lstm", "head_hidden_size": 1024, "head_num_layers": 1,
                      "head_mlp_sizes": [1024, 512, 256], "window_size": 8},
        seed={"backbone": "\"3.69 B\" (with the head; see the arithmetic)", "policy_head": "12.7 M"},
    ),
    _geovla("geovla_libero_pool", "pool", "3.15 M"),
    _geovla("geovla_libero_per_layer", "per_layer", "50.36 M"),
    _geovla("geovla_libero_qformer", "qformer", "19.97 M"),
]}


def get_reference(name: str) -> Reference:
    """The [`Reference`] called `name`; an unknown name is a user error listing the known ones."""
    if name not in REFERENCES:
        raise UserError(f"unknown reference configuration {name!r}; the references are {sorted(REFERENCES)}")
    return REFERENCES[name]


# ------------------------------------------------------------------------------------------------ configs
def _family_config(ref: Reference):
    """The family config of `ref` built from the typed-in backbone configs (no Hub)."""
    mc = copy.deepcopy(ref.model_config)
    if ref.family == "waypoint_vlm":
        from .models.waypoint_vlm import WaypointVLMConfig

        return WaypointVLMConfig(vision_config=_smolvlm_base_tower(),
                                 backbone_name_or_path=ref.backbones["backbone"], **mc)
    if ref.family == "simlingo":
        from .models.simlingo import SimLingoConfig, lm_preset

        return SimLingoConfig(vision_config=dict(LLAVA_NEXT_MISTRAL_7B_VISION_CONFIG),
                              text_config=lm_preset(ref.recipe["lm_size"]),
                              backbone_name_or_path=ref.backbones["vision_model_name_or_path"], **mc)
    if ref.family == "smolvlm":
        from transformers import AutoConfig

        values = copy.deepcopy(SMOLVLM2_2_2B_CONFIG)
        return AutoConfig.for_model(values.pop("model_type"), **values)
    if ref.family == "flamingo":
        from .models.flamingo import FlamingoConfig

        return FlamingoConfig(train_lm_embeddings=bool(ref.recipe.get("train_lm_embeddings", False)), **mc)
    if ref.family == "robovlm":
        from .models.robovlm import RoboVLMConfig

        return RoboVLMConfig(backbone_config=copy.deepcopy(KOSMOS2_PATCH14_224_CONFIG),
                             backbone_name_or_path=ref.backbones["backbone_name_or_path"], **mc)
    if ref.family == "geovla":
        from .models.geovla import GeoVLAConfig
        from .models.mapanything import MapAnythingConfig

        geometry = MapAnythingConfig(**mc.pop("geometry_config", {}))
        return GeoVLAConfig(vlm_config=_qwen_3b(), geometry_config=geometry,
                            vlm_name_or_path=ref.backbones["vlm_name_or_path"],
                            geometry_name_or_path=ref.backbones["geometry_name_or_path"], **mc)
    raise AssertionError(ref.family)


def from_reference(name: str):
    """The config of the reference system `name` (a `PretrainedConfig`; SmolVLM2's for the road-scene SFT)."""
    return _family_config(get_reference(name))


def build_reference(name: str, device: str = "meta"):
    """The reference model `name`, built on `device` (meta by default: no memory, no weights) with the recipe's
    freezing: the family's own freezing, plus LoRA adapters where the recipe adds them (road-scene SFT: a
    `peft.PeftModel`; 4-bit quantisation cannot be built on meta: `estimate` prices it)."""
    import torch

    ref = get_reference(name)
    config = _family_config(ref)
    with torch.device(device):
        model = _instantiate(ref, config)
    return model


def _instantiate(ref: Reference, config):
    if ref.family == "smolvlm":
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_config(config)
        from peft import LoraConfig, get_peft_model

        from .log import quiet_trl_renames

        lora = LoraConfig(r=ref.recipe["lora_r"], lora_alpha=ref.recipe["lora_alpha"], lora_dropout=0.05,
                          target_modules=ref.recipe["lora_target_modules"].split(","), task_type="CAUSAL_LM")
        with quiet_trl_renames():  # PEFT asks transformers' deprecated `is_gradient_checkpointing`
            return get_peft_model(model, lora)
    from transformers import AutoModel

    return AutoModel.from_config(config)


__all__ = [
    "KOSMOS2_PATCH14_224_CONFIG",
    "LLAVA_NEXT_MISTRAL_7B_VISION_CONFIG",
    "REFERENCES",
    "Reference",
    "SMOLVLM2_2_2B_CONFIG",
    "build_reference",
    "from_reference",
    "get_reference",
]
