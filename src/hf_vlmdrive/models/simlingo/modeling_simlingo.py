"""SimLingo-base driving transformer: trajectory prediction only, no language. Defaults follow the
released github:RenzKa/simlingo `simlingo_base_training` (config simlingo_base_1.yaml); SPEC 1.2's
readings are config options (see docs/simlingo.md).

```
 pixel_values (B,T,N,3,H,W) uint8        speed (B,S) m/s     route: target_point + target_point_next (B,2)
        | cut the bottom 4.8/16            |  /max_speed          |   | coords (B,K,2)      | route_image
        | aspect-keeping bicubic resize,   |                      |   | /coord range        | (B,3,RH,RW)
        | zero pad to pinpoint [336,672],  Linear(1,256)>ReLU>    Linear(2,256)>ReLU>Linear(256,H)  ResNet18
        | normalise, 336 px tiles          Linear(256,H)                 |                    (x/128-1), fc
  vision tower (CLIP of LLaVA-NeXT), layer -2 | (B,S,H)                  | (B,2|1|K,H)        | (B,1,H)
  multi_modal_projector (D>P>P), tiles side by side, unpad_image,        +----------+---------+
  avg-pool /2, + image_newline per row: 8 x (24+1) = 200 tokens for 1024x512           |
  Linear(P, H) + camera emb[n] + temporal emb[t]                                       |
        | (B, T*N*L, H)                       |                                        |
        +------------- concat [vision, speed, route, 20 route queries, 10 speed queries] (B, L_all, H)
                                         |
                     Llama (inputs_embeds, no token embeddings), causal
                                         | hidden states at the query positions
            route head (H>m>2, SiLU)          speed head (H>m>2|1, SiLU), last Linear without bias
                  | deltas, cumsum                | deltas, cumsum
            route (B,20,2)                  speed_wps (B,10,2)  ("1d": distances (B,10) placed on the route)
```

Loss: per sample, squared error summed over x,y and averaged over the valid points; averaged over valid
samples; the two outputs' losses summed with weights (SPEC 1.2).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...errors import UserError
from ..common.freezing import FrozenVisionMixin
from ..common.init import init_module, keep_own_init
from ..common.vision import build_vision_tower, load_vision_tower_weights, vision_config_from_pretrained
from .configuration_simlingo import SimLingoConfig, lm_preset

logger = logging.getLogger(__name__)


@dataclass
class SimLingoOutput(ModelOutput):
    """Output of [`SimLingoForWaypointPrediction`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): weighted sum of the per-output losses, when
            labels are given.
        speed_wps (`torch.FloatTensor` of shape `(B, num_speed_wps, 2)`): future ego positions (x forward,
            y left, metres) at 4 Hz.
        route (`torch.FloatTensor` of shape `(B, num_route_points, 2)`): equally spaced path points, metres.
        speed_wps_loss (`torch.FloatTensor` of shape `()`, *optional*): masked MSE of the speed waypoints
            (of the cumulative distances in "1d" mode).
        route_loss (`torch.FloatTensor` of shape `()`, *optional*): masked MSE of the route.
        speed_distances (`torch.FloatTensor` of shape `(B, num_speed_wps)`, *optional*): cumulative
            distance along the path ("1d" mode only).
    """

    loss: torch.FloatTensor | None = None
    speed_wps: torch.FloatTensor | None = None
    route: torch.FloatTensor | None = None
    speed_wps_loss: torch.FloatTensor | None = None
    route_loss: torch.FloatTensor | None = None
    speed_distances: torch.FloatTensor | None = None


def masked_waypoint_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SimLingo's masked MSE: (B, T, D) predictions vs targets.

    Per sample: squared error summed over D, averaged over the valid points. Then averaged over the valid
    samples (a sample is valid when it has at least one valid point). `mask` is (B,) per sample or (B, T)
    per point (missing future frames); `None` means everything is valid. With no valid sample the loss is
    an exact 0 that still carries the graph.
    """
    if pred.shape != target.shape:
        raise UserError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    per_point = (pred - target).pow(2).sum(-1)  # (B, T)
    if mask is None:
        mask = torch.ones_like(per_point, dtype=torch.bool)
    mask = mask.to(per_point.device).bool()
    if mask.ndim == 1:
        mask = mask[:, None].expand_as(per_point)
    if mask.shape != per_point.shape:
        raise UserError(f"mask must have shape (B,) or {tuple(per_point.shape)}, got {tuple(mask.shape)}")
    weight = mask.to(per_point.dtype)
    count = weight.sum(-1)  # (B,)
    per_sample = (per_point * weight).sum(-1) / count.clamp(min=1.0)
    valid = (count > 0).to(per_point.dtype)
    return (per_sample * valid).sum() / valid.sum().clamp(min=1.0)


def cumulative_distance(points: torch.Tensor) -> torch.Tensor:
    """(B, T, 2) waypoints from the origin -> (B, T) distance travelled along them."""
    start = torch.zeros_like(points[:, :1])
    steps = torch.diff(torch.cat([start, points], dim=1), dim=1).norm(dim=-1)
    return steps.cumsum(-1)


def place_along_path(path: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """Points at arc lengths `distances` (B, T) along polylines `path` (B, P, 2) that start at the origin.

    Beyond the path's end the last segment is extended linearly.
    """
    path = torch.cat([torch.zeros_like(path[:, :1]), path], dim=1)  # (B, P+1, 2)
    seg = torch.diff(path, dim=1)  # (B, P, 2)
    seg_len = seg.norm(dim=-1).clamp(min=1e-6)
    arc = torch.cat([torch.zeros_like(seg_len[:, :1]), seg_len.cumsum(-1)], dim=1)  # (B, P+1)
    d = distances.clamp(min=0.0)
    idx = torch.searchsorted(arc.contiguous(), d.contiguous(), right=True) - 1
    idx = idx.clamp(0, seg.shape[1] - 1)  # (B, T)
    start = torch.gather(path, 1, idx[..., None].expand(-1, -1, 2))
    direction = torch.gather(seg, 1, idx[..., None].expand(-1, -1, 2)) / torch.gather(seg_len, 1, idx)[..., None]
    along = d - torch.gather(arc, 1, idx)
    return start + direction * along[..., None]


class MLPEncoder(nn.Module):
    """SimLingo's scalar / coordinate encoder: Linear(d, width) -> ReLU -> Linear(width, hidden)."""

    def __init__(self, in_features: int, width: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _resnet18_state_dict(weights: str) -> tuple[dict | None, str]:
    """torchvision ResNet18 tensors from `weights` ("imagenet" or a local file) and where they came from.

    "imagenet": torchvision's `ResNet18_Weights.IMAGENET1K_V1` from torch hub's cache, downloaded only
    when the run is not offline (`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE`); unreachable -> (None, reason).
    """
    import os

    if weights == "imagenet":
        from torchvision.models import ResNet18_Weights

        enum = ResNet18_Weights.IMAGENET1K_V1
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
        offline = any(os.environ.get(k, "").lower() in ("1", "true", "yes")
                      for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        if not cached.is_file() and offline:
            return None, f"random init (torchvision {enum} is not cached at {cached} and the run is offline)"
        try:
            return enum.get_state_dict(progress=False), f"torchvision {enum}"
        except Exception as err:  # noqa: BLE001 - no network: fall back to a random init, said in the log
            return None, f"random init (torchvision {enum} unreachable: {err})"
    path = Path(weights)
    if not path.is_file():
        raise UserError(f"route_image_weights={weights!r} is neither 'imagenet' nor an existing weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    return state, f"file {path}"


class RouteImageEncoder(nn.Module):
    """ResNet18 (torchvision) over a BEV route image (uint8, scaled x / 128 - 1 as in the reference).

    `pooled=True` (the released simlingo_base, models/driving.py:21-29): the whole ResNet18 with
    `fc -> Linear(512, H)`, one token. `pooled=False` (SPEC 1.2's variant): the feature map before the
    average pool, one token per cell through `Linear(512, H)`. `weights`: "imagenet", a local state-dict
    file of torchvision's resnet18 (its `fc.*` are not used), or `None` (random); `weights_source` says
    which was used.
    """

    def __init__(self, hidden: int, pooled: bool = True, weights: str | None = None):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        self.pooled = pooled
        if pooled:
            net.fc = nn.Linear(net.fc.in_features, hidden)
            self.backbone = net
        else:
            self.backbone = nn.Sequential(*list(net.children())[:-2])  # drop avgpool + fc: (B, 512, h, w)
            self.proj = nn.Linear(512, hidden)
        self.weights_source = "random init"
        on_meta = any(p.is_meta for p in self.backbone.parameters())  # from_pretrained: the checkpoint fills it
        if weights is not None and not on_meta:
            state, self.weights_source = _resnet18_state_dict(weights)
            if state is not None:
                state = {k: v for k, v in state.items() if not k.startswith("fc.")}
                if not pooled:  # Sequential(conv1, bn1, relu, maxpool, layer1..4) numbering
                    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
                    state = {names[k.split(".", 1)[0]] + "." + k.split(".", 1)[1]: v for k, v in state.items()}
                missing, unexpected = self.backbone.load_state_dict(state, strict=False)
                if unexpected or [k for k in missing if not k.startswith("fc.")]:
                    raise UserError(f"route_image_weights={weights!r} is not a torchvision resnet18 state dict "
                                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
            logger.info("SimLingo route-image ResNet18: %s", self.weights_source)
            if state is None:
                logger.warning("SimLingo route-image ResNet18: %s", self.weights_source)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.float() / 128.0 - 1.0  # the reference's input scaling of uint8 images
        if self.pooled:
            return self.backbone(x).unsqueeze(-2)  # (B, 1, H)
        features = self.backbone(x)  # (B, 512, h, w)
        return self.proj(features.flatten(2).transpose(1, 2))  # (B, h*w, H)


class MultiModalProjector(nn.Module):
    """LLaVA-NeXT's `multi_modal_projector` (same parameter names): Linear(D, P) -> act -> Linear(P, P)."""

    def __init__(self, in_features: int, hidden: int, act: str = "gelu", bias: bool = True):
        super().__init__()
        from transformers.activations import ACT2FN

        self.linear_1 = nn.Linear(in_features, hidden, bias=bias)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(hidden, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def llava_next_resize_pad(x: torch.Tensor, pinpoint: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """LLaVA-NeXT's anyres preprocessing of float 0..255 frames (M, 3, h, w): bicubic resize to `size`
    (aspect kept, `get_patch_output_size`), rounded to uint8 values, zero-padded to `pinpoint`, centred
    (`_get_padding_size`: the odd pixel goes right / bottom)."""
    new_h, new_w = size
    if tuple(x.shape[-2:]) != (new_h, new_w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        x = x.round().clamp(0.0, 255.0)
    top, left = (pinpoint[0] - new_h) // 2, (pinpoint[1] - new_w) // 2
    return F.pad(x, (left, pinpoint[1] - new_w - left, top, pinpoint[0] - new_h - top))


class SimLingoPreTrainedModel(PreTrainedModel):
    """Weight initialisation and Auto-class plumbing of the SimLingo family."""

    config_class = SimLingoConfig
    base_model_prefix = "simlingo"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    # Trainer rescales the loss of a model whose `forward` takes `**kwargs` (it assumes a sum over
    # `num_items_in_batch`); the waypoint / route losses are means over this batch: no rescaling, or DDP / gradient
    # accumulation would multiply it by the number of processes / steps.
    accepts_loss_kwargs = False
    _no_split_modules = ["LlamaDecoderLayer", "CLIPEncoderLayer"]
    # Every transformers backbone the family builds has SDPA attention: `from_pretrained(..., attn_implementation=)`
    # may choose eager or sdpa, and the choice reaches the backbones (the family's own blocks are unaffected).
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # The tower and the Llama are `PreTrainedModel`s and initialise themselves; the ResNet keeps
        # torchvision's init (`keep_own_init`). Only the adaptors, heads and learnable embeddings are set here,
        # with `transformers.initialization`, which skips tensors loaded from a checkpoint.
        init_module(module, std=self.config.text_config.initializer_range, truncated=False)
        if isinstance(module, SimLingoForWaypointPrediction):
            for name in ("route_queries", "speed_queries", "camera_embedding", "temporal_embedding"):
                init.normal_(getattr(module, name), std=0.02)  # SimLingo: 0.02 * randn
            if module.image_newline is not None:  # LLaVA-NeXT: randn / sqrt(P)
                init.normal_(module.image_newline, std=module.config.projector_hidden_size ** -0.5)


class SimLingoForWaypointPrediction(FrozenVisionMixin, SimLingoPreTrainedModel):
    """SimLingo-base: vision tower + speed/route encoders + Llama + learnable queries -> speed waypoints and
    route. See the module docstring for the diagram."""

    def __init__(self, config: SimLingoConfig):
        super().__init__(config)
        hidden = config.hidden_size
        self.vision_model = build_vision_tower(config.vision_config)
        if config.vision_adapter == "llava_next":
            p = config.projector_hidden_size
            self.multi_modal_projector = MultiModalProjector(config.vision_config.hidden_size, p,
                                                             config.projector_hidden_act)
            self.image_newline = nn.Parameter(torch.randn(p) * p ** -0.5)
            # llavanext.py:30: nn.Linear(vision_config.intermediate_size (= 4096 = P), embed_dim), with bias.
            self.vision_projection = nn.Linear(p, hidden)
        else:  # SPEC 1.2's variant
            self.multi_modal_projector = None
            self.image_newline = None
            self.vision_projection = nn.Linear(config.vision_config.hidden_size, hidden, bias=False)
        self.camera_embedding = nn.Parameter(0.02 * torch.randn(config.num_cameras, hidden))
        self.temporal_embedding = nn.Parameter(0.02 * torch.randn(config.num_frames, hidden))
        self.speed_encoder = MLPEncoder(1, config.encoder_hidden_size, hidden)
        if config.route_as == "image":
            self.route_encoder = RouteImageEncoder(hidden, pooled=config.route_image_tokens == "pooled",
                                                   weights=config.route_image_weights)
        else:
            self.route_encoder = MLPEncoder(2, config.encoder_hidden_size, hidden)
        self.language_model = LlamaModel(config.text_config)
        # No token embeddings: the LM only ever sees `inputs_embeds`.
        self.language_model.embed_tokens = None
        self.route_queries = nn.Parameter(0.02 * torch.randn(config.num_route_points, hidden))
        self.speed_queries = nn.Parameter(0.02 * torch.randn(config.num_speed_wps, hidden))
        mlp = config.head_hidden_size
        speed_out = 2 if config.speed_wps_mode == "2d" else 1
        bias = config.head_bias
        # simlingo_base_training/models/adaptors/adaptors.py:105-107,122-124: both heads are
        # Linear(H, 256) -> SiLU -> Linear(256, d, bias=False).
        self.speed_head = nn.Sequential(nn.Linear(hidden, mlp), nn.SiLU(), nn.Linear(mlp, speed_out, bias=bias))
        if config.route_head_layers == 2:
            self.route_head = nn.Sequential(nn.Linear(hidden, mlp), nn.SiLU(), nn.Linear(mlp, 2, bias=bias))
        else:  # SPEC 1.2's variant
            self.route_head = nn.Sequential(
                nn.Linear(hidden, 2 * mlp), nn.SiLU(), nn.Linear(2 * mlp, mlp), nn.SiLU(), nn.Linear(mlp, 2, bias=bias)
            )
        if config.route_as == "image":
            keep_own_init(self.route_encoder.backbone)
        if config.init_style == "torch_default":
            # The released code never re-initialises its adaptors: PyTorch's constructor init stays.
            for module in (self.vision_projection, self.speed_encoder, self.route_encoder, self.speed_head,
                           self.route_head, self.multi_modal_projector):
                if module is not None:
                    keep_own_init(module)
        self.post_init()
        self.apply_freezing()

    def get_input_embeddings(self):
        """None: the language model has no token embeddings (it is fed `inputs_embeds`)."""
        return None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_backbone(
        cls,
        name_or_path: str = "llava-hf/llava-v1.6-mistral-7b-hf",
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        dtype: torch.dtype | None = None,
        lm_size: str = "tiny",
        text_config_overrides: dict | None = None,
        **config_kwargs,
    ) -> SimLingoForWaypointPrediction:
        """Assemble SimLingo-base around the vision tower of a pretrained LLaVA-NeXT checkpoint.

        The tower's tensors are read, and with `vision_adapter="llava_next"` (default) also LLaVA-NeXT's
        `multi_modal_projector` and `image_newline` (the Mistral LM is dropped); the
        Llama of preset `lm_size` ("tiny" = 12 layers, 8 heads, hidden 512, intermediate 2048), the
        adaptors and the heads are freshly initialised. The tower's image mean/std are taken from the
        checkpoint's `preprocessor_config.json` when it has one, and LLaVA's `vision_feature_layer` is
        kept. Extra keyword arguments go to [`SimLingoConfig`]. `revision` / `token` go to the Hub, `dtype`
        is the dtype of the returned model's parameters (default: float32).
        """
        from transformers import AutoConfig

        vision_config = vision_config_from_pretrained(name_or_path, revision=revision, token=token)
        source = AutoConfig.from_pretrained(name_or_path, revision=revision, token=token)
        layer = getattr(source, "vision_feature_layer", -2)
        config_kwargs.setdefault("vision_feature_layer", layer if isinstance(layer, int) else layer[-1])
        adapter = config_kwargs.get("vision_adapter", "llava_next")
        if adapter == "llava_next":
            text = getattr(source, "text_config", None)
            if text is None or not hasattr(source, "projector_hidden_act"):
                raise UserError(f"{name_or_path!r} has no LLaVA-NeXT multi_modal_projector; use vision_adapter='linear'")
            if not getattr(source, "multimodal_projector_bias", True):
                raise UserError(f"{name_or_path!r}'s projector has no biases; SimLingo's keeps LLaVA-NeXT's (with biases)")
            config_kwargs.setdefault("projector_hidden_size", text.hidden_size)
            config_kwargs.setdefault("projector_hidden_act", source.projector_hidden_act)
        mean_std = _read_mean_std(name_or_path, revision=revision, token=token)
        if mean_std is not None:
            config_kwargs.setdefault("image_mean", mean_std[0])
            config_kwargs.setdefault("image_std", mean_std[1])
        config = SimLingoConfig(
            vision_config=vision_config.to_dict(),
            text_config=lm_preset(lm_size, **(text_config_overrides or {})),
            backbone_name_or_path=name_or_path,
            **config_kwargs,
        )
        model = cls(config)
        load_vision_tower_weights(model.vision_model, name_or_path, revision=revision, token=token)
        if config.vision_adapter == "llava_next":
            _load_llava_next_adapter(model, name_or_path, revision=revision, token=token)
        if dtype is not None:
            model.to(dtype)
        model.apply_freezing()
        return model

    # ------------------------------------------------------------------ encoders
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, N, 3, H, W) -> vision tokens (B, T*N*L, hidden) with camera + temporal embeddings."""
        cfg = self.config
        b, t, n = pixel_values.shape[:3]
        x = pixel_values.reshape(b * t * n, *pixel_values.shape[3:]).float()  # (BTN, 3, H, W), 0..255
        x = x[:, :, : cfg.cropped_height(x.shape[-2])]  # the reference's bottom cut (4.8/16)
        height, width = x.shape[-2:]
        pin_h, pin_w = cfg.image_grid_pinpoint
        if cfg.vision_adapter == "llava_next":
            x = llava_next_resize_pad(x, (pin_h, pin_w), cfg.resized_size(height, width)) / 255.0
        else:
            x = x / 255.0
            if tuple(x.shape[-2:]) != (pin_h, pin_w):
                x = F.interpolate(x, size=(pin_h, pin_w), mode="bilinear", align_corners=False, antialias=True)
        # Mean/std from the config at call time: non-persistent buffers are not restored by from_pretrained.
        mean = torch.tensor(cfg.image_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(cfg.image_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
        rows, cols = cfg.tile_grid
        s = cfg.tile_size
        # (BTN, 3, R*S, C*S) -> (BTN*R*C, 3, S, S), tiles in row-major order.
        tiles = x.reshape(-1, 3, rows, s, cols, s).permute(0, 2, 4, 1, 3, 5).reshape(-1, 3, s, s)
        dtype = self.vision_projection.weight.dtype
        tiles = tiles.to(dtype)
        if self.vision_is_frozen:
            with torch.no_grad():
                out = self.vision_model(pixel_values=tiles, output_hidden_states=True)
        else:
            out = self.vision_model(pixel_values=tiles, output_hidden_states=True)
        feats = out.hidden_states[cfg.vision_feature_layer][:, cfg.num_prefix_tokens :]  # (M, g*g, D)
        g = s // cfg.vision_config.patch_size
        if cfg.vision_adapter == "llava_next":
            tokens = self._llava_next_tokens(feats, rows, cols, g, height, width)
            tokens = tokens.reshape(b, t, n, tokens.shape[1], -1)
            tokens = tokens + self.temporal_embedding[:t, None, None, :] + self.camera_embedding[None, :n, None, :]
            return tokens.reshape(b, t * n * tokens.shape[3], -1)
        d = feats.shape[-1]
        feats = feats.transpose(1, 2).reshape(-1, d, g, g)  # (M, D, g, g)
        feats = F.avg_pool2d(feats, cfg.feature_downsample)  # (M, D, g', g')
        gd = feats.shape[-1]
        # Put the tiles of one image back side by side: (BTN, D, R*g', C*g').
        feats = feats.reshape(-1, rows, cols, d, gd, gd).permute(0, 3, 1, 4, 2, 5).reshape(-1, d, rows * gd, cols * gd)
        tokens = self.vision_projection(feats.flatten(2).transpose(1, 2))  # (BTN, L, hidden)
        tokens = tokens.reshape(b, t, n, tokens.shape[1], -1)
        tokens = tokens + self.temporal_embedding[:t, None, None, :] + self.camera_embedding[None, :n, None, :]
        return tokens.reshape(b, t * n * tokens.shape[3], -1)  # (B, T*N*L, hidden)

    def _llava_next_tokens(self, feats, rows, cols, g, height, width) -> torch.Tensor:
        """llavanext_model.py:87-148: projector, tiles side by side, unpad_image, avg-pool, image_newline per
        row, then `vision_projection` -> (BTN, L, hidden)."""
        from transformers.models.llava_next.modeling_llava_next import unpad_image

        cfg = self.config
        feats = self.multi_modal_projector(feats)  # (M, g*g, P)
        p = feats.shape[-1]
        # (BTN, rows, cols, g, g, P) -> (BTN, P, rows*g, cols*g), as view(nph, npw, h, w, -1).permute(4, 0, 2, 1, 3).
        feats = feats.reshape(-1, rows, cols, g, g, p).permute(0, 5, 1, 3, 2, 4).reshape(-1, p, rows * g, cols * g)
        feats = torch.stack([unpad_image(f, (height, width)) for f in feats])  # (BTN, P, r, c)
        feats = F.avg_pool2d(feats, cfg.feature_downsample)
        newline = self.image_newline.to(feats.dtype)[None, :, None, None].expand(*feats.shape[:3], 1)
        feats = torch.cat([feats, newline], dim=-1)  # (BTN, P, r, c + 1)
        return self.vision_projection(feats.flatten(2).transpose(1, 2))  # (BTN, r*(c+1), hidden)

    def encode_speed(self, speed: torch.Tensor) -> torch.Tensor:
        """(B, S) m/s -> (B, S, hidden)."""
        norm = speed.to(self.vision_projection.weight.dtype) / self.config.max_speed
        return self.speed_encoder(norm[..., None])

    def encode_route(self, target_point=None, route_coords=None, route_image=None, target_point_next=None) -> torch.Tensor:
        """The route input of the configured kind -> (B, K, hidden)."""
        cfg = self.config
        dtype = self.vision_projection.weight.dtype
        if cfg.route_as == "image":
            return self.route_encoder(route_image).to(dtype)
        if cfg.route_as == "target_point":
            # simlingo_base_training/dataloader/dataset_base.py:400-402: map_route = [target_point,
            # next_target_point], two tokens through one WaypointInputAdaptor (models/driving.py:101-110).
            if cfg.num_target_points == 2:
                nxt = target_point if target_point_next is None else target_point_next
                coords = torch.stack([target_point, nxt.to(target_point.device)], dim=1)
            else:
                coords = target_point[:, None, :]
        else:
            coords = route_coords
        norm = (coords.to(dtype) + cfg.coord_range) / (2 * cfg.coord_range)
        return self.route_encoder(norm)

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, pixel_values, speed, target_point, route_coords, route_image, intrinsics, extrinsics,
                      target_point_next=None):
        cfg = self.config
        if pixel_values is None or pixel_values.ndim != 6 or pixel_values.shape[3] != 3:
            got = None if pixel_values is None else tuple(pixel_values.shape)
            raise UserError(f"`pixel_values` must be uint8 images of shape (B, T, N, 3, H, W), got {got}")
        b, t, n = pixel_values.shape[:3]
        if t > cfg.num_frames or n > cfg.num_cameras:
            raise UserError(
                f"`pixel_values` has T={t} frames and N={n} cameras but the model was configured with "
                f"num_frames={cfg.num_frames}, num_cameras={cfg.num_cameras}"
            )
        if speed is None or tuple(speed.shape) != (b, cfg.num_speed_inputs):
            got = None if speed is None else tuple(speed.shape)
            raise UserError(f"`speed` must have shape (B, {cfg.num_speed_inputs}) in m/s, got {got}")
        if cfg.route_as == "target_point":
            if target_point is None or tuple(target_point.shape) != (b, 2):
                got = None if target_point is None else tuple(target_point.shape)
                raise UserError(f"route_as='target_point' needs `target_point` of shape ({b}, 2), got {got}")
            if target_point_next is not None and tuple(target_point_next.shape) != (b, 2):
                raise UserError(f"`target_point_next` must have shape ({b}, 2), got {tuple(target_point_next.shape)}")
        elif cfg.route_as == "coords":
            want = (b, cfg.num_route_coords, 2)
            if route_coords is None or tuple(route_coords.shape) != want:
                got = None if route_coords is None else tuple(route_coords.shape)
                raise UserError(f"route_as='coords' needs `route_coords` of shape {want}, got {got}")
        elif route_image is None or route_image.ndim != 4 or tuple(route_image.shape[:2]) != (b, 3):
            got = None if route_image is None else tuple(route_image.shape)
            raise UserError(f"route_as='image' needs a uint8 `route_image` of shape ({b}, 3, RH, RW), got {got}")
        # Intrinsics / extrinsics are accepted and shape-checked; SimLingo-base does not use them (camera
        # identity is carried by the learnable camera embedding).
        if intrinsics is not None and tuple(intrinsics.shape) != (b, n, 3, 3):
            raise UserError(f"`intrinsics` must have shape ({b}, {n}, 3, 3), got {tuple(intrinsics.shape)}")
        if extrinsics is not None and tuple(extrinsics.shape) != (b, n, 4, 4):
            raise UserError(f"`extrinsics` must have shape ({b}, {n}, 4, 4), got {tuple(extrinsics.shape)}")
        return b

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        speed: torch.Tensor | None = None,
        target_point: torch.Tensor | None = None,
        route_coords: torch.Tensor | None = None,
        route_image: torch.Tensor | None = None,
        intrinsics: torch.Tensor | None = None,
        extrinsics: torch.Tensor | None = None,
        speed_wps_labels: torch.Tensor | None = None,
        route_labels: torch.Tensor | None = None,
        speed_wps_mask: torch.Tensor | None = None,
        route_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        target_point_next: torch.Tensor | None = None,
        **kwargs,
    ) -> SimLingoOutput:
        r"""
        Args:
            pixel_values (`torch.ByteTensor` of shape `(B, T, N, 3, H, W)`): camera images, uint8 (any H, W:
                resized to `image_grid_pinpoint` and normalised inside the model).
            speed (`torch.FloatTensor` of shape `(B, S)`): ego speed(s), m/s.
            target_point (`torch.FloatTensor` of shape `(B, 2)`): ego-frame target point (route_as="target_point").
            target_point_next (`torch.FloatTensor` of shape `(B, 2)`, *optional*): the target point after it, the
                second route token with `num_target_points=2` (when absent, `target_point` is repeated, as
                [`SimLingoProcessor`] does).
            route_coords (`torch.FloatTensor` of shape `(B, K, 2)`): ego-frame route points (route_as="coords").
            route_image (`torch.ByteTensor` of shape `(B, 3, RH, RW)`): BEV route image (route_as="image").
            intrinsics (`torch.FloatTensor` of shape `(B, N, 3, 3)`, *optional*): checked, unused.
            extrinsics (`torch.FloatTensor` of shape `(B, N, 4, 4)`, *optional*): checked, unused.
            speed_wps_labels (`torch.FloatTensor` of shape `(B, 10, 2)`, *optional*): future positions (4 Hz);
                in "1d" mode `(B, 10)` cumulative distances are accepted too.
            route_labels (`torch.FloatTensor` of shape `(B, 20, 2)`, *optional*): route points.
            speed_wps_mask, route_mask (`torch.BoolTensor` of shape `(B,)` or `(B, 10|20)`, *optional*): valid
                samples / valid points (missing future frames at the end of a route are False).
        """
        cfg = self.config
        b = self._check_inputs(pixel_values, speed, target_point, route_coords, route_image, intrinsics, extrinsics,
                               target_point_next)
        parts = [
            self.encode_images(pixel_values),
            self.encode_speed(speed),
            self.encode_route(target_point, route_coords, route_image, target_point_next),
            self.route_queries[None].expand(b, -1, -1),
            self.speed_queries[None].expand(b, -1, -1),
        ]
        embeds = torch.cat(parts, dim=1)  # (B, L_all, hidden)
        hidden = self.language_model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        n_route, n_speed = cfg.num_route_points, cfg.num_speed_wps
        route_h = hidden[:, -(n_route + n_speed) : -n_speed]  # (B, 20, hidden)
        speed_h = hidden[:, -n_speed:]  # (B, 10, hidden)
        route = self.route_head(route_h).float().cumsum(dim=1)  # deltas -> absolute (B, 20, 2)
        speed_out = self.speed_head(speed_h).float().cumsum(dim=1)  # (B, 10, 2|1)
        distances = None
        if cfg.speed_wps_mode == "2d":
            speed_wps = speed_out
        else:
            distances = speed_out[..., 0]  # (B, 10) cumulative distance along the path
            speed_wps = place_along_path(route.detach(), distances.detach())

        loss = speed_loss = route_loss = None
        if speed_wps_labels is not None or route_labels is not None:
            loss = route.new_zeros(())
            if speed_wps_labels is not None:
                labels = speed_wps_labels.to(route.device).float()
                if cfg.speed_wps_mode == "1d":
                    if labels.ndim == 3:
                        labels = cumulative_distance(labels)
                    speed_loss = masked_waypoint_loss(distances[..., None], labels[..., None], speed_wps_mask)
                else:
                    speed_loss = masked_waypoint_loss(speed_wps, labels, speed_wps_mask)
                loss = loss + cfg.speed_wps_loss_weight * speed_loss
            if route_labels is not None:
                route_loss = masked_waypoint_loss(route, route_labels.to(route.device).float(), route_mask)
                loss = loss + cfg.route_loss_weight * route_loss
        return SimLingoOutput(
            loss=loss,
            speed_wps=speed_wps,
            route=route,
            speed_wps_loss=speed_loss,
            route_loss=route_loss,
            speed_distances=distances,
        )


def _load_llava_next_adapter(model, name_or_path: str, revision=None, token=None) -> None:
    """Copy LLaVA-NeXT's `multi_modal_projector` and `image_newline` from a checkpoint's safetensors."""
    from safetensors import safe_open

    from ..common.vision import _checkpoint_files

    wanted = {f"multi_modal_projector.{k}": v for k, v in model.multi_modal_projector.state_dict().items()}
    wanted["image_newline"] = model.image_newline
    found: dict[str, torch.Tensor] = {}
    for f in _checkpoint_files(name_or_path, revision=revision, token=token):
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                for name in wanted:
                    if key == name or key.endswith("." + name):
                        found[name] = handle.get_tensor(key)
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise UserError(f"{name_or_path!r} lacks LLaVA-NeXT adapter tensors {missing}; use vision_adapter='linear'")
    with torch.no_grad():
        for name, target in wanted.items():
            if tuple(found[name].shape) != tuple(target.shape):
                raise UserError(f"{name_or_path!r}: {name} has shape {tuple(found[name].shape)}, expected "
                                f"{tuple(target.shape)}")
            target.copy_(found[name].to(target.dtype))
    logger.info("loaded LLaVA-NeXT multi_modal_projector and image_newline from %s", name_or_path)


def _read_mean_std(name_or_path: str, revision=None, token=None) -> tuple[list[float], list[float]] | None:
    """image_mean / image_std from a checkpoint's `preprocessor_config.json`, if it has one."""
    path = Path(name_or_path) / "preprocessor_config.json"
    if not path.is_file():
        if Path(name_or_path).is_dir():
            return None
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(name_or_path, "preprocessor_config.json", revision=revision, token=token))
        except Exception as err:  # noqa: BLE001 - absent file or offline: fall back to the config defaults
            logger.info("no preprocessor_config.json for %s (%s); using CLIP mean/std", name_or_path, err)
            return None
    data = json.loads(path.read_text())
    if "image_mean" in data and "image_std" in data:
        return list(data["image_mean"]), list(data["image_std"])
    return None


__all__ = [
    "SimLingoForWaypointPrediction",
    "SimLingoOutput",
    "SimLingoPreTrainedModel",
    "masked_waypoint_loss",
    "cumulative_distance",
    "place_along_path",
]
