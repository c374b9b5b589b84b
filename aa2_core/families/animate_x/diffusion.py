"""The released Animate-X sampler: v-prediction, zero-terminal-SNR ``linear_sd`` schedule, its own DDIM stepping,
classifier-free guidance ``u + s (c - u)`` with two passes, and the entrance's noise.

diffusers' ``DDIMScheduler`` does not reproduce it (the released loop runs ``n + 1`` steps starting at
``1 + n * (1000 // n)``, takes ``alpha_bar[0]`` -- not 1 -- below t = 0, and derives eps from x0), so the step is
written out with the released order of operations: coefficients in float64, cast to the latents' dtype per use.

* ``ddim_timesteps(30)`` = 991, 958, ..., 1 (31 steps); the last step ends at ``alpha_bar[0]`` = 0.99915.
* ``alpha_bar[999]`` is 0 with zero terminal SNR: a schedule that visits t = 999 (3 steps: 1000 // 3 = 333,
  1 + 999) divides by zero and gives NaN, as the released code does; ``ddim_timesteps`` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

NUM_TIMESTEPS = 1000
INIT_BETA = 0.00085
LAST_BETA = 0.0120
GUIDE_SCALE = 2.5
DDIM_STEPS = 30
NOISE_STRENGTH = 0.1  # offset noise added once to the initial noise
SCALE_FACTOR = 0.18215
LATENT_CHANNELS = 4


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    alphas_bar_sqrt = (1 - betas).cumprod(0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= last
    alphas_bar_sqrt *= first / (first - last)
    alphas_bar = alphas_bar_sqrt ** 2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


def linear_sd_betas(num_timesteps: int = NUM_TIMESTEPS, init_beta: float = INIT_BETA, last_beta: float = LAST_BETA,
                    zero_terminal_snr: bool = True) -> torch.Tensor:
    """float64 betas: ``linspace(sqrt(b0), sqrt(b1))^2``, rescaled to zero terminal SNR."""
    betas = torch.linspace(init_beta ** 0.5, last_beta ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    if zero_terminal_snr and abs(betas.max() - 1.0) > 0.0001:
        betas = rescale_zero_terminal_snr(betas)
    return betas


@dataclass(frozen=True)
class Schedule:
    alphas_cumprod: torch.Tensor  # float64

    @classmethod
    def released(cls) -> "Schedule":
        return cls(torch.cumprod(1 - linear_sd_betas(), dim=0))

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def at(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` shaped to broadcast over ``like`` and cast to its dtype (the released ``_i``)."""
        shape = (like.size(0),) + (1,) * (like.ndim - 1)
        return table.to(like.device)[t.to(like.device)].view(shape).to(like)

    def ddim_step(self, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic DDIM (eta 0) from ``t`` to ``t - stride`` (clamped at 0) for a v prediction -> (x_prev, x0)."""
        ac = self.alphas_cumprod
        x0 = self.at(ac.sqrt(), t, xt) * xt - self.at((1.0 - ac).sqrt(), t, xt) * v
        eps = (self.at((1.0 / ac).sqrt(), t, xt) * xt - x0) / self.at((1.0 / ac - 1).sqrt(), t, xt)
        alphas_prev = self.at(ac, (t - stride).clamp(0), xt)
        return torch.sqrt(alphas_prev) * x0 + torch.sqrt(1 - alphas_prev) * eps, x0


def ddim_timesteps(steps: int = DDIM_STEPS, num_timesteps: int = NUM_TIMESTEPS) -> list[int]:
    """The released loop's timesteps, highest first: ``1 + arange(0, T, T // steps)`` clamped to ``T - 1``."""
    if steps < 1 or steps > num_timesteps:
        raise ValueError(f"Animate-X DDIM: steps must be 1..{num_timesteps}, got {steps}")
    ts = (1 + torch.arange(0, num_timesteps, num_timesteps // steps)).clamp(0, num_timesteps - 1).flip(0).tolist()
    if ts[0] == num_timesteps - 1:
        raise ValueError(f"Animate-X DDIM with {steps} steps starts at t = {num_timesteps - 1}, where the zero-terminal-SNR "
                         "alpha_bar is 0: the released step divides by zero there (NaN). Choose another step count "
                         f"(the released default is {DDIM_STEPS})")
    return ts


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + scale * (cond - uncond)


Predict = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]


@torch.no_grad()
def sample(predict: Predict, noise: torch.Tensor, cond: dict, uncond: dict, steps: int = DDIM_STEPS,
           guide_scale: float | None = GUIDE_SCALE, schedule: Schedule | None = None,
           callback: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """The released ``ddim_sample_loop`` (eta 0): ``predict(x, t, kwargs)`` -> v; two passes per step
    (conditional, then unconditional) guided by ``guide_scale`` (None: conditional only)."""
    schedule = schedule or Schedule.released()
    stride = schedule.num_timesteps // steps
    x = noise
    timesteps = ddim_timesteps(steps, schedule.num_timesteps)
    for i, step in enumerate(timesteps):
        t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
        v = predict(x, t, cond)
        if guide_scale is not None:
            v = guided(v, predict(x, t, uncond), guide_scale)
        x, _ = schedule.ddim_step(x, t, v, stride)
        if callback is not None:
            callback(i, len(timesteps), x)
    return x


def initial_noise(generator: torch.Generator, frames: int, height: int, width: int, batch: int = 1,
                  reference_draw: bool = True, noise_strength: float = NOISE_STRENGTH) -> torch.Tensor:
    """The entrance's noise on the CPU ``(batch, 4, frames, h, w)`` (h, w: latent size).

    After seeding, the entrance VAE-samples the reference latent (``randn(1, 4, h, w)`` on the CPU) even though the
    YAML does not pass it to the network, then draws the noise, then the offset noise ``randn(b, 4, f, 1, 1)``
    scaled by 0.1. ``reference_draw`` replays that first draw so a seed gives the released noise.
    """
    if reference_draw:
        torch.randn(batch, LATENT_CHANNELS, height, width, generator=generator)
    noise = torch.randn(batch, LATENT_CHANNELS, frames, height, width, generator=generator)
    offset = torch.randn(batch, LATENT_CHANNELS, frames, 1, 1, generator=generator)
    return noise + noise_strength * offset
