"""Sampling schedules (flow sigmas, DDIM timesteps) and the per-sample subsets of trained steps."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def flow_sigmas(num_steps: int, shift: float = 1.0) -> Tensor:
    """Shifted rectified-flow sigmas, float32 of length ``num_steps + 1`` from 1 down to 0.

        s_i = 1 - i / S  (i = 0..S),   sigma_i = shift * s_i / (1 + (shift - 1) * s_i)

    (the time shift of SD3-style flow models; shift = 1 gives the uniform grid). Step i of the
    sampler goes from sigma_i to sigma_{i+1}.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    sigmas = shift * grid / (1.0 + (shift - 1.0) * grid)
    return sigmas.to(torch.float32)


class DDIMSchedule(NamedTuple):
    """DDIM sampling schedule: step i goes from ``timesteps[i]`` (cumulative alpha ``alpha_bar[i]``)
    to the previous timestep (cumulative alpha ``alpha_bar_prev[i]``)."""

    timesteps: Tensor  # int64 (S,), decreasing
    alpha_bar: Tensor  # float32 (S,)
    alpha_bar_prev: Tensor  # float32 (S,)


def scaled_linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> Tensor:
    """Cumulative alphas of the "scaled_linear" DDPM beta schedule used by latent diffusion (SD 1.x):

        beta_t = (linspace(sqrt(beta_start), sqrt(beta_end), T)_t)^2,   alpha_bar_t = prod_{k<=t} (1 - beta_k)

    computed in float32 like the reference scheduler implementation.
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def _ddim_timesteps(num_steps: int, num_train_timesteps: int, steps_offset: int, spacing: str) -> Tensor:
    """Inference timesteps (decreasing int64), following the common DDIM ``set_timesteps`` rules:

    leading:  t_i = i * (T // S) + steps_offset,  i = S-1..0
    trailing: t_i = round(T - i * T / S) - 1,     i = 0..S-1
    linspace: t_i = round(linspace(0, T - 1, S))  reversed
    """
    if spacing == "leading":
        step_ratio = num_train_timesteps // num_steps
        timesteps = torch.arange(num_steps, dtype=torch.int64).flip(0) * step_ratio + steps_offset
    elif spacing == "trailing":
        step_ratio = num_train_timesteps / num_steps
        values = [round(num_train_timesteps - i * step_ratio) - 1 for i in range(num_steps)]
        timesteps = torch.tensor(values, dtype=torch.int64)
    elif spacing == "linspace":
        grid = torch.linspace(0, num_train_timesteps - 1, num_steps, dtype=torch.float64)
        timesteps = torch.round(grid).flip(0).to(torch.int64)
    else:
        raise ValueError(f"unknown timestep_spacing {spacing!r}; expected one of {TIMESTEP_SPACINGS}")
    return timesteps


def ddim_schedule(
    alphas_cumprod: Tensor,
    num_steps: int,
    *,
    num_train_timesteps: int | None = None,
    final_alpha_cumprod: float | None = None,
    steps_offset: int = 1,
    timestep_spacing: str = "leading",
) -> DDIMSchedule:
    """DDIM timesteps with the cumulative alphas of each step's two ends.

    Reproduces the usual DDIM scheduler (``set_timesteps`` plus its ``step``): the previous timestep
    of t is ``t - T // S`` whatever the spacing, and when it is negative the step ends at
    ``final_alpha_cumprod``. Defaults: T = len(alphas_cumprod); final_alpha_cumprod =
    alphas_cumprod[0] (the "set_alpha_to_one = False" convention of SD 1.x; pass 1.0 for the other).

        alpha_bar[i]      = alphas_cumprod[t_i]
        alpha_bar_prev[i] = alphas_cumprod[t_i - T // S]  if t_i - T // S >= 0  else final_alpha_cumprod
    """
    alphas_cumprod = torch.as_tensor(alphas_cumprod).detach().float().cpu()
    num_train_timesteps = len(alphas_cumprod) if num_train_timesteps is None else num_train_timesteps
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_train_timesteps}], got {num_steps}")
    if final_alpha_cumprod is None:
        final_alpha_cumprod = float(alphas_cumprod[0])
    timesteps = _ddim_timesteps(num_steps, num_train_timesteps, steps_offset, timestep_spacing)
    if timesteps.min() < 0 or timesteps.max() >= len(alphas_cumprod):
        raise ValueError(
            f"timesteps {timesteps.tolist()} fall outside the {len(alphas_cumprod)} alphas_cumprod"
        )
    prev_timesteps = timesteps - num_train_timesteps // num_steps
    alpha_bar = alphas_cumprod[timesteps]
    final = torch.full_like(alpha_bar, final_alpha_cumprod)
    alpha_bar_prev = torch.where(prev_timesteps >= 0, alphas_cumprod[prev_timesteps.clamp(min=0)], final)
    return DDIMSchedule(timesteps, alpha_bar, alpha_bar_prev)


def num_train_steps(num_steps: int, timestep_fraction: float) -> int:
    """Number of trained steps per sample (DanceGRPO): max(1, floor((S - 1) * timestep_fraction)).

    The last transition (index S - 1) is never trained, hence S - 1 candidates. A 1e-9 guard absorbs
    float round-off in the product (100 * 0.57 evaluates to 56.999...; we return 57).
    """
    if num_steps < 2:
        raise ValueError(f"need at least 2 sampling steps to train one, got {num_steps}")
    if not 0.0 < timestep_fraction <= 1.0:
        raise ValueError(f"timestep_fraction must be in (0, 1], got {timestep_fraction}")
    return max(1, math.floor((num_steps - 1) * timestep_fraction + 1e-9))


def sample_train_step_indices(
    num_steps: int, timestep_fraction: float, generator: torch.Generator | None = None
) -> Tensor:
    """Sorted random subset (int64) of range(S - 1) of size ``num_train_steps(S, fraction)`` for one
    sample, drawn with ``generator`` (a CPU generator: pass the sample's own seeded generator so the
    subset does not depend on the number of ranks)."""
    count = num_train_steps(num_steps, timestep_fraction)
    permutation = torch.randperm(num_steps - 1, generator=generator)
    return permutation[:count].sort().values
