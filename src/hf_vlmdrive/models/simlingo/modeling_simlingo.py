"""SimLingo-base driving transformer (SPEC 1.2): trajectory prediction only, no language.

```
 pixel_values (B,T,N,3,H,W) uint8        speed (B,S) m/s        route: target_point (B,2) | coords (B,K,2)
        | /255, resize to pinpoint [336,672], |  /max_speed          |      | /coord range      | route_image
        | normalise (tower mean/std)          |                      |      |                   | (B,3,RH,RW)
        | cut into R x C tiles of 336         Linear(1,256)>ReLU>    Linear(2,256)>ReLU>Linear(256,H)  ResNet18
  vision tower (CLIP of LLaVA-NeXT), layer -2 Linear(256,H)                 |                     (x/128-1)
        | patch grid 24x24 per tile           | (B,S,H)                     | (B,1|K,H)           | (B,h*w,H)
  avg-pool /2 -> 12x12, tiles side by side    |                             +----------+----------+
        | (B*T*N, 12*24, D)                   |                                        |
  Linear(D, H, bias=False) + camera emb[n] + temporal emb[t]                           |
        | (B, T*N*L, H)                       |                                        |
        +------------- concat [vision, speed, route, 20 route queries, 10 speed queries] (B, L_all, H)
                                         |
                     Llama (inputs_embeds, no token embeddings), causal
                                         | hidden states at the query positions
            route head (H>2m>m>2, SiLU)       speed head (H>m>2|1, SiLU)
                  | deltas, cumsum                | deltas, cumsum
            route (B,20,2)                  speed_wps (B,10,2)  ("1d": distances (B,10) placed on the route)
```

Loss: per sample, squared error summed over x,y and averaged over the valid points; averaged over valid
samples; the two outputs' losses summed with weights (SPEC 1.2).
"""

from __future__ import annotations

import json
import logging
import warnings
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


class RouteImageEncoder(nn.Module):
    """ResNet18 (torchvision, trained from scratch) over a BEV route image; one token per output cell."""

    def __init__(self, hidden: int):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        self.backbone = nn.Sequential(*list(net.children())[:-2])  # drop avgpool + fc: (B, 512, h, w)
        self.proj = nn.Linear(512, hidden)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.float() / 128.0 - 1.0  # the reference's input scaling of uint8 images
        features = self.backbone(x)  # (B, 512, h, w)
        return self.proj(features.flatten(2).transpose(1, 2))  # (B, h*w, H)


class SimLingoPreTrainedModel(PreTrainedModel):
    """Weight initialisation and Auto-class plumbing of the SimLingo family."""

    config_class = SimLingoConfig
    base_model_prefix = "simlingo"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer", "CLIPEncoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        # The tower and the Llama are `PreTrainedModel`s and initialise themselves; the ResNet keeps
        # torchvision's init (`keep_own_init`). Only the adaptors, heads and learnable embeddings are set here,
        # with `transformers.initialization`, which skips tensors loaded from a checkpoint.
        init_module(module, std=self.config.text_config.initializer_range, truncated=False)
        if isinstance(module, SimLingoForWaypointPrediction):
            for name in ("route_queries", "speed_queries", "camera_embedding", "temporal_embedding"):
                init.normal_(getattr(module, name), std=0.02)  # SimLingo: 0.02 * randn


class SimLingoForWaypointPrediction(FrozenVisionMixin, SimLingoPreTrainedModel):
    """SimLingo-base: vision tower + speed/route encoders + Llama + learnable queries -> speed waypoints and
    route. See the module docstring for the diagram."""

    def __init__(self, config: SimLingoConfig):
        super().__init__(config)
        hidden = config.hidden_size
        self.vision_model = build_vision_tower(config.vision_config)
        self.vision_projection = nn.Linear(config.vision_config.hidden_size, hidden, bias=False)
        self.camera_embedding = nn.Parameter(0.02 * torch.randn(config.num_cameras, hidden))
        self.temporal_embedding = nn.Parameter(0.02 * torch.randn(config.num_frames, hidden))
        self.speed_encoder = MLPEncoder(1, config.encoder_hidden_size, hidden)
        if config.route_as == "image":
            self.route_encoder = RouteImageEncoder(hidden)
        else:
            self.route_encoder = MLPEncoder(2, config.encoder_hidden_size, hidden)
        self.language_model = LlamaModel(config.text_config)
        # No token embeddings: the LM only ever sees `inputs_embeds`.
        self.language_model.embed_tokens = None
        self.route_queries = nn.Parameter(0.02 * torch.randn(config.num_route_points, hidden))
        self.speed_queries = nn.Parameter(0.02 * torch.randn(config.num_speed_wps, hidden))
        mlp = config.head_hidden_size
        speed_out = 2 if config.speed_wps_mode == "2d" else 1
        self.speed_head = nn.Sequential(nn.Linear(hidden, mlp), nn.SiLU(), nn.Linear(mlp, speed_out))
        self.route_head = nn.Sequential(
            nn.Linear(hidden, 2 * mlp), nn.SiLU(), nn.Linear(2 * mlp, mlp), nn.SiLU(), nn.Linear(mlp, 2)
        )
        if config.route_as == "image":
            keep_own_init(self.route_encoder.backbone)
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

        Only the tower's tensors are read (the Mistral LM and the multimodal projector are dropped); the
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
        if dtype is not None:
            model.to(dtype)
        model.apply_freezing()
        return model

    @classmethod
    def from_llava_next(cls, name_or_path: str = "llava-hf/llava-v1.6-mistral-7b-hf", lm_size: str = "tiny",
                        revision: str | None = None, token: str | bool | None = None, **kwargs):
        """Deprecated alias of [`from_backbone`] (the one backbone-loader name of every family); removed in 0.2."""
        warnings.warn("SimLingoForWaypointPrediction.from_llava_next is deprecated; use from_backbone (same arguments)",
                      FutureWarning, stacklevel=2)
        return cls.from_backbone(name_or_path, lm_size=lm_size, revision=revision, token=token, **kwargs)

    # ------------------------------------------------------------------ encoders
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, N, 3, H, W) -> vision tokens (B, T*N*L, hidden) with camera + temporal embeddings."""
        cfg = self.config
        b, t, n = pixel_values.shape[:3]
        x = pixel_values.reshape(b * t * n, *pixel_values.shape[3:]).float() / 255.0  # (BTN, 3, H, W)
        pin_h, pin_w = cfg.image_grid_pinpoint
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

    def encode_speed(self, speed: torch.Tensor) -> torch.Tensor:
        """(B, S) m/s -> (B, S, hidden)."""
        norm = speed.to(self.vision_projection.weight.dtype) / self.config.max_speed
        return self.speed_encoder(norm[..., None])

    def encode_route(self, target_point=None, route_coords=None, route_image=None) -> torch.Tensor:
        """The route input of the configured kind -> (B, K, hidden)."""
        cfg = self.config
        dtype = self.vision_projection.weight.dtype
        if cfg.route_as == "image":
            return self.route_encoder(route_image).to(dtype)
        coords = target_point[:, None, :] if cfg.route_as == "target_point" else route_coords
        norm = (coords.to(dtype) + cfg.coord_range) / (2 * cfg.coord_range)
        return self.route_encoder(norm)

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, pixel_values, speed, target_point, route_coords, route_image, intrinsics, extrinsics):
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
        **kwargs,
    ) -> SimLingoOutput:
        r"""
        Args:
            pixel_values (`torch.ByteTensor` of shape `(B, T, N, 3, H, W)`): camera images, uint8 (any H, W:
                resized to `image_grid_pinpoint` and normalised inside the model).
            speed (`torch.FloatTensor` of shape `(B, S)`): ego speed(s), m/s.
            target_point (`torch.FloatTensor` of shape `(B, 2)`): ego-frame target point (route_as="target_point").
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
        b = self._check_inputs(pixel_values, speed, target_point, route_coords, route_image, intrinsics, extrinsics)
        parts = [
            self.encode_images(pixel_values),
            self.encode_speed(speed),
            self.encode_route(target_point, route_coords, route_image),
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
