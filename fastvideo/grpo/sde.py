"""Stateless sampling steps with Gaussian log-probabilities (the GRPO "policy").

Every step maps (model_output, x, time) to a Gaussian N(mean, std^2) over the next latent and
returns a draw from it together with its log-density. The functions keep no state, so training can
recompute any step of a stored trajectory out of order: pass the rollout's ``prev_sample`` and the
same inputs give bit-for-bit the rollout's ``log_prob`` (ratio exactly 1).

Conventions (see docs/ARCHITECTURE.md):
- All math runs in float32 whatever the input dtype; every returned tensor is float32.
- Flow time is sigma in [0, 1] (1 = pure noise); x_sigma = (1 - sigma) x0 + sigma eps and the
  rectified-flow model predicts the velocity v = eps - x0. A step goes from sigma to
  sigma_next < sigma, Delta = sigma_next - sigma < 0.
- ``sigma`` / ``sigma_next`` (and ``alpha_bar`` / ``alpha_bar_prev``) are python floats or
  per-sample tensors of shape (B,), broadcast over the non-batch dims.
- ``log_prob`` has shape (B,): the Gaussian log-density averaged (not summed) over non-batch dims.
- ``std`` is returned with shape (B, 1, ..., 1) (broadcastable to the sample).
- A step whose std is 0 (``"ode"``, eta = 0, or the last CPS step where sigma_next = 0) is
  deterministic: its ``log_prob`` is defined as 0 for those samples (never NaN) and it carries no
  policy-gradient signal.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Union

import torch
from torch import Tensor

from fastvideo.grpo.block_noise import BlockNoise

TimeValue = Union[float, Tensor]
GeneratorArg = Union[torch.Generator, list[torch.Generator], None]

SDE_TYPES = ("dance", "flow_grpo", "cps", "ode")
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


class StepOutput(NamedTuple):
    """Result of one stochastic step.

    prev_sample: (B, ...) float32, the next latent (drawn, or the one passed in).
    log_prob: (B,) float32, log N(prev_sample; mean, std^2) averaged over non-batch dims
        (0 for samples whose std is 0).
    mean: (B, ...) float32, the Gaussian mean.
    std: (B, 1, ..., 1) float32, the Gaussian standard deviation (one scalar per sample).
    """

    prev_sample: Tensor
    log_prob: Tensor
    mean: Tensor
    std: Tensor


def _per_sample(value: TimeValue, like: Tensor) -> Tensor:
    """Turn a float or a (B,) tensor into a float32 tensor of shape (B, 1, ..., 1) (or a 0-dim one)."""
    tensor = torch.as_tensor(value, dtype=torch.float32, device=like.device)
    if tensor.ndim == 0:
        return tensor
    if tensor.ndim != 1 or tensor.shape[0] != like.shape[0]:
        raise ValueError(
            f"time values must be floats or of shape (B,)={like.shape[0]}, got {tuple(tensor.shape)}"
        )
    return tensor.reshape(-1, *([1] * (like.ndim - 1)))


def _batch_std(std: Tensor, like: Tensor) -> Tensor:
    """Expand a per-sample std (0-dim or (B,1,...)) to shape (B, 1, ..., 1)."""
    return std.expand(like.shape[0], *([1] * (like.ndim - 1))).clone()


def standard_normal(shape: torch.Size, device: torch.device, generator: GeneratorArg = None) -> Tensor:
    """Draw float32 N(0, I) of ``shape`` on ``device``.

    ``generator`` may be one ``torch.Generator`` (drawn on the generator's device, then moved) or a
    list of B generators, one per sample: row b is then drawn from ``generator[b]`` alone, so a
    sample's noise does not depend on which other samples share its batch (rank independence).
    """
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        rows = [torch.randn(shape[1:], generator=g, device=g.device, dtype=torch.float32) for g in generator]
        return torch.stack(rows).to(device)
    if generator is not None:
        return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(
            device
        )
    return torch.randn(shape, device=device, dtype=torch.float32)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Per-sample Gaussian log-density averaged over non-batch dims, in float32.

        log p = mean_{dims != 0} [ -(x - mu)^2 / (2 std^2) - log(std) - log(sqrt(2 pi)) ]

    ``std`` must be positive and broadcastable to ``x``. Returns shape (B,).
    """
    x, mean, std = x.float(), mean.float(), std.float()
    elementwise = -((x - mean) ** 2) / (2.0 * std**2) - torch.log(std) - _HALF_LOG_TWO_PI
    return torch.broadcast_to(elementwise, x.shape).reshape(x.shape[0], -1).mean(dim=1)


def _finish_step(
    mean: Tensor,
    std: Tensor,
    prev_sample: Tensor | None,
    generator: GeneratorArg,
    noise: Tensor | None,
    block_noise: BlockNoise | None = None,
) -> StepOutput:
    """Draw (or take) the next sample from N(mean, std^2) and return its log-density.

    The log-prob is always evaluated on the materialised ``prev_sample`` so that the rollout and a
    later recomputation with the same ``prev_sample`` give identical values. The sample is the
    action: it enters the log-prob detached, so gradients flow only through mean and std (the
    returned ``prev_sample`` itself keeps its reparameterised graph). Samples with std == 0 get
    prev_sample = mean (unless given) and log_prob = 0, with zero gradient. With ``block_noise`` the
    white noise is mapped to block-constant noise and the log-density is the coarse coordinates'
    (``fastvideo.grpo.block_noise``).
    """
    std = _batch_std(std, mean)
    if prev_sample is None:
        if noise is None:
            noise = standard_normal(mean.shape, mean.device, generator)
        elif noise.shape != mean.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(mean.shape)}")
        noise = noise.to(device=mean.device, dtype=torch.float32)
        if block_noise is not None:
            noise = block_noise.structure(noise)
        prev_sample = mean + std * noise
    else:
        prev_sample = prev_sample.float()
    is_stochastic = std.reshape(-1) > 0
    safe_std = torch.where(std > 0, std, torch.ones_like(std))
    if block_noise is None:
        log_prob = gaussian_log_prob(prev_sample.detach(), mean, safe_std)
    else:
        log_prob = block_noise.log_prob(prev_sample.detach(), mean, safe_std)
    log_prob = torch.where(is_stochastic, log_prob, torch.zeros_like(log_prob))
    return StepOutput(prev_sample, log_prob, mean, std)


def pred_x0_flow(model_output: Tensor, sample: Tensor, sigma: TimeValue) -> Tensor:
    """Clean-sample prediction of a rectified-flow model: x0_hat = x - sigma * v (float32)."""
    sample = sample.float()
    return sample - _per_sample(sigma, sample) * model_output.float()


def pred_x0_ddim(model_output: Tensor, sample: Tensor, alpha_bar: TimeValue) -> Tensor:
    """Clean-sample prediction from an epsilon prediction:
    x0_hat = (x - sqrt(1 - alpha_bar) * eps_hat) / sqrt(alpha_bar) (float32)."""
    sample = sample.float()
    alpha_bar = _per_sample(alpha_bar, sample)
    return (sample - torch.sqrt(1.0 - alpha_bar) * model_output.float()) / torch.sqrt(alpha_bar)


def _dance_mean_std(v: Tensor, x: Tensor, sigma: Tensor, sigma_next: Tensor, eta: float,
                    block_noise: BlockNoise | None = None):
    """DanceGRPO flow SDE (DanceGRPO paper, eq. "Formulation of Sampling SDEs", rectified flows).

        score  s   = -(x - (1 - sigma) * x0_hat) / sigma^2,   x0_hat = x - sigma * v
        mean   mu  = x + Delta * v - 0.5 * eta^2 * s * Delta
        std        = eta * sqrt(sigma - sigma_next)

    i.e. Euler-Maruyama for dx = (v - eta^2/2 * score) dsigma + eta dW, the reverse SDE with the
    probability-flow ODE dx/dsigma = v, so it keeps the marginals of the flow. With block noise of
    factor f the correction is -0.5 * eta^2 * f^2 * P(s) * Delta (P: projection onto the noise's
    subspace), and the noise is drawn in that subspace by ``_finish_step``.
    """
    delta = sigma_next - sigma
    x0_hat = x - sigma * v
    score = -(x - (1.0 - sigma) * x0_hat) / sigma**2
    if block_noise is not None:
        score = block_noise.factor**2 * block_noise.project(score)
    mean = x + delta * v - 0.5 * eta**2 * score * delta
    std = eta * torch.sqrt(-delta)
    return mean, std


def _flow_grpo_mean_std(v: Tensor, x: Tensor, sigma: Tensor, sigma_next: Tensor, eta: float):
    """Flow-GRPO SDE (Flow-GRPO paper, eq. 9), noise level a = eta:

        sigma_t = a * sqrt(sigma / (1 - sigma))
        mu      = x * (1 + sigma_t^2 * Delta / (2 sigma)) + v * (1 + sigma_t^2 (1 - sigma) / (2 sigma)) * Delta
        std     = sigma_t * sqrt(-Delta)

    At sigma = 1 the ratio diverges; like the reference code (which uses the second sigma of the
    schedule there) we put ``sigma_next`` in the denominator whenever sigma >= 1:
    sigma_t = a * sqrt(sigma / (1 - sigma_next)). The step stays stateless.
    """
    delta = sigma_next - sigma
    denominator_sigma = torch.where(sigma >= 1.0, sigma_next, sigma)
    sigma_t = eta * torch.sqrt(sigma / (1.0 - denominator_sigma))
    half_var_over_sigma = sigma_t**2 / (2.0 * sigma)
    mean = x * (1.0 + half_var_over_sigma * delta) + v * (1.0 + half_var_over_sigma * (1.0 - sigma)) * delta
    std = sigma_t * torch.sqrt(-delta)
    return mean, std


def _cps_mean_std(v: Tensor, x: Tensor, sigma: Tensor, sigma_next: Tensor, eta: float):
    """Coefficients-preserving sampling (CPS), noise level a = eta:

        std    = sigma_next * sin(a * pi / 2)
        x0_hat = x - sigma * v,   x1_hat = x + (1 - sigma) * v
        mu     = (1 - sigma_next) * x0_hat + sqrt(sigma_next^2 - std^2) * x1_hat

    The noise coefficient of x' = mu + std * eps is exactly sigma_next (a DDIM-style step in flow
    time). At sigma_next = 0 the step is deterministic (std = 0).
    """
    std = sigma_next * math.sin(eta * math.pi / 2.0)
    x0_hat = x - sigma * v
    x1_hat = x + (1.0 - sigma) * v
    direction_scale = torch.sqrt(torch.clamp(sigma_next**2 - std**2, min=0.0))
    mean = (1.0 - sigma_next) * x0_hat + direction_scale * x1_hat
    return mean, std


def flow_step(
    model_output: Tensor,
    sample: Tensor,
    sigma: TimeValue,
    sigma_next: TimeValue,
    *,
    sde_type: str,
    eta: float,
    prev_sample: Tensor | None = None,
    generator: GeneratorArg = None,
    noise: Tensor | None = None,
    block_noise: BlockNoise | None = None,
) -> StepOutput:
    """One rectified-flow step from ``sigma`` to ``sigma_next`` with its Gaussian log-prob.

    ``sde_type``: "dance" (DanceGRPO SDE, eta ~ 0.3), "flow_grpo" (Flow-GRPO SDE, noise level
    ~ 0.7), "cps" (coefficients-preserving sampling, ~ 0.8) or "ode" (Euler x' = x + Delta * v,
    std 0, log_prob 0, eta ignored). Every SDE with eta = 0 reduces to the Euler step.

    ``prev_sample`` given: it is not resampled; its log-prob under the step's Gaussian is returned
    (how training recomputes the policy). Otherwise x' = mean + std * noise, where ``noise`` (same
    shape as ``sample``) is used if given, else drawn from ``generator`` (one generator, or a list
    of B generators, one per sample). See the module docstring for shapes and dtypes.

    ``block_noise`` (``"dance"`` only): low-frequency exploration, noise constant on f x f blocks of
    the latent grid with the log-prob taken in that subspace (``fastvideo.grpo.block_noise``).
    """
    if sde_type not in SDE_TYPES:
        raise ValueError(f"unknown sde_type {sde_type!r}; expected one of {SDE_TYPES}")
    if block_noise is not None and block_noise.factor > 1 and sde_type not in ("dance", "ode"):
        raise ValueError(f"block noise is implemented for the 'dance' SDE only, not {sde_type!r}")
    x = sample.float()
    v = model_output.float()
    sigma_t = _per_sample(sigma, x)
    sigma_next_t = _per_sample(sigma_next, x)
    if sde_type == "ode":
        mean = x + (sigma_next_t - sigma_t) * v
        std = torch.zeros((), dtype=torch.float32, device=x.device)
    elif sde_type == "dance":
        mean, std = _dance_mean_std(v, x, sigma_t, sigma_next_t, eta, block_noise)
    elif sde_type == "flow_grpo":
        mean, std = _flow_grpo_mean_std(v, x, sigma_t, sigma_next_t, eta)
    else:
        mean, std = _cps_mean_std(v, x, sigma_t, sigma_next_t, eta)
    return _finish_step(mean, std, prev_sample, generator, noise, block_noise if sde_type == "dance" else None)


def ddim_step(
    model_output: Tensor,
    sample: Tensor,
    alpha_bar: TimeValue,
    alpha_bar_prev: TimeValue,
    *,
    eta: float,
    prev_sample: Tensor | None = None,
    generator: GeneratorArg = None,
    noise: Tensor | None = None,
) -> StepOutput:
    """DDIM step with log-prob for an epsilon-prediction diffusion model (DDIM paper eq. 12/16;
    DDPO / DanceGRPO "ddim_step_with_logprob"):

        sigma_t^2 = (1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)
        std       = eta * sigma_t
        x0_hat    = (x - sqrt(1 - alpha_bar) * eps_hat) / sqrt(alpha_bar)
        mean      = sqrt(alpha_bar_prev) * x0_hat + sqrt(1 - alpha_bar_prev - std^2) * eps_hat
        x'        = mean + std * noise

    With eta = 0 it equals the deterministic DDIM update (no x0 clipping). ``alpha_bar`` /
    ``alpha_bar_prev`` are floats or (B,) tensors; ``prev_sample``, ``generator`` and ``noise``
    behave as in :func:`flow_step`.
    """
    x = sample.float()
    eps_hat = model_output.float()
    alpha_bar_t = _per_sample(alpha_bar, x)
    alpha_bar_prev_t = _per_sample(alpha_bar_prev, x)
    variance = (1.0 - alpha_bar_prev_t) / (1.0 - alpha_bar_t) * (1.0 - alpha_bar_t / alpha_bar_prev_t)
    std = eta * torch.sqrt(torch.clamp(variance, min=0.0))
    x0_hat = (x - torch.sqrt(1.0 - alpha_bar_t) * eps_hat) / torch.sqrt(alpha_bar_t)
    direction_scale = torch.sqrt(torch.clamp(1.0 - alpha_bar_prev_t - std**2, min=0.0))
    mean = torch.sqrt(alpha_bar_prev_t) * x0_hat + direction_scale * eps_hat
    return _finish_step(mean, std, prev_sample, generator, noise)
