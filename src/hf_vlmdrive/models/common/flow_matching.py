"""Flow matching for action chunks (starVLA / GR00T convention, SPEC 1.5).

Time runs from noise (t=0) to data (t=1):

    u ~ Beta(alpha=1.5, beta=1)
    t = (0.999 - u) / 0.999                    ("starvla", the default: more samples near the noise end;
                                                starVLA's `sample_time`, s = 0.999; t can dip to -0.001)
    t = u * 0.999                              ("beta_scaled": the mirror image, near the data end)
    x_t = (1 - t) * noise + t * action
    target velocity u = action - noise         (constant along the straight path)
    loss = MSE(v_theta(x_t, t), u)             (over every step; optionally unpadded steps only)

Inference starts from Gaussian noise at t=0 and integrates dx/dt = v_theta(x, t) to t=1 with Euler steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ...errors import UserError

FLOW_TIME_RULES = ("starvla", "beta_scaled")


def sample_flow_time(
    batch_size: int,
    alpha: float = 1.5,
    beta: float = 1.0,
    scale: float = 0.999,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    rule: str = "starvla",
) -> torch.Tensor:
    """Draw (batch_size,) flow times: u ~ Beta(alpha, beta), then t = (scale - u) / scale for `rule="starvla"`
    (starVLA's `LayerwiseFlowmatchingActionHead.sample_time`) or t = u * scale for `"beta_scaled"`."""
    if rule not in FLOW_TIME_RULES:
        raise UserError(f"flow time rule must be one of {FLOW_TIME_RULES}, got {rule!r}")
    if generator is None:
        dist = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(beta)))
        t = dist.sample((batch_size,))
    else:
        # Beta via two Gammas so that a generator can make it reproducible.
        a = torch._standard_gamma(torch.full((batch_size,), float(alpha)), generator=generator)
        b = torch._standard_gamma(torch.full((batch_size,), float(beta)), generator=generator)
        t = a / (a + b)
    t = (scale - t) / scale if rule == "starvla" else t * scale
    return t.to(device) if device is not None else t


def _sample_seed(seed: int, position: int) -> int:
    """A 64-bit generator seed for one sample (splitmix64 of `seed` and `position`: nearby pairs get unrelated
    streams, and (seed, position) never collides with (seed + 1, position - k) as `seed + position` would)."""
    mask = (1 << 64) - 1
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(position) + 1) & mask
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        x = ((x ^ (x >> shift)) * mult) & mask
    return x ^ (x >> 31)


def sample_flow_draws(
    positions: Sequence[int],
    seed: int,
    num_draws: int,
    shape: tuple[int, ...],
    alpha: float = 1.5,
    beta: float = 1.0,
    scale: float = 0.999,
    rule: str = "starvla",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise `(R * B, *shape)` and flow times `(R * B,)` for B samples, R = `num_draws` draws each, in
    `tensor.repeat(R, ...)` order (row r * B + i is draw r of sample i); float32 on the CPU.

    Sample i's draws come from its own generator seeded by (`seed`, `positions[i]`). With `positions` the
    samples' places in the run's stream of training samples (see `GeoVLATrainer`), the draws depend on neither the
    process nor the batch layout: N processes x batch B, one process x batch N * B and gradient accumulation draw
    the same noise for the same sample, every rank draws its own, and a resumed run draws what the uninterrupted one
    would have.
    """
    generator = torch.Generator()
    noises, times = [], []
    for position in positions:
        generator.manual_seed(_sample_seed(seed, position))
        noises.append(torch.randn((num_draws, *shape), generator=generator))
        times.append(sample_flow_time(num_draws, alpha, beta, scale, generator=generator, rule=rule))
    if not noises:
        return torch.zeros((0, *shape)), torch.zeros(0)
    return torch.stack(noises, 1).reshape(-1, *shape), torch.stack(times, 1).reshape(-1)


def flow_matching_inputs(actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy actions x_t and the target velocity for actions/noise (B, T, A) and times t (B,)."""
    if actions.shape != noise.shape:
        raise UserError(f"actions {tuple(actions.shape)} and noise {tuple(noise.shape)} must have the same shape")
    tt = t.to(actions.dtype).view(-1, *([1] * (actions.ndim - 1)))  # (B, 1, 1)
    x_t = (1.0 - tt) * noise + tt * actions
    return x_t, actions - noise


def flow_matching_loss(
    velocity: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over action values, ignoring padded steps (is_pad (B, T) True = ignore)."""
    per = (velocity.float() - target.float()) ** 2  # (B, T, A)
    if is_pad is None:
        return per.mean()
    weight = (~is_pad.bool()).to(per.dtype).unsqueeze(-1).expand_as(per)
    return (per * weight).sum() / weight.sum().clamp(min=1.0)


def euler_integrate(
    velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor, num_steps: int
) -> torch.Tensor:
    """Integrate dx/dt = velocity_fn(x, t) from t=0 to t=1 with `num_steps` Euler steps; t has shape (B,)."""
    if num_steps < 1:
        raise UserError(f"num_steps must be >= 1, got {num_steps}")
    x = x0
    dt = 1.0 / num_steps
    for k in range(num_steps):
        t = torch.full((x.shape[0],), k * dt, device=x.device, dtype=x.dtype)
        x = x + dt * velocity_fn(x, t)
    return x


__all__ = ["FLOW_TIME_RULES", "euler_integrate", "flow_matching_inputs", "flow_matching_loss", "sample_flow_time"]
