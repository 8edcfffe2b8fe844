"""Samplers: one object per paradigm that the rollout and the trainer drive step by step.

A sampler turns step indices into model timesteps and applies the stateless SDE/ODE steps of
``fastvideo.grpo.sde``. Steps can be evaluated in any order and for per-sample step indices, which
is what GRPO training needs (each sample trains its own random subset of steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fastvideo.grpo.block_noise import BlockNoise, block_noise_problem
from fastvideo.grpo.dpm import dpm_solver_2m_step
from fastvideo.grpo.forward import ddim_add_noise, flow_add_noise
from fastvideo.grpo.schedule import ddim_schedule, flow_sigmas
from fastvideo.grpo.sde import StepOutput, ddim_step, flow_step, pred_x0_ddim, pred_x0_flow


def _as_index(step: int | torch.Tensor, batch: int) -> torch.Tensor:
    """Step index as a (B,) long tensor (a python int is broadcast over the batch)."""
    if isinstance(step, torch.Tensor):
        return step.long().reshape(-1).expand(batch) if step.numel() == 1 else step.long()
    return torch.full((batch,), int(step), dtype=torch.long)


@dataclass
class FlowSampler:
    """Rectified-flow sampler over ``sigmas`` (S + 1 values from 1 to 0).

    Step i maps x at sigma_i to sigma_{i+1} with ``flow_step`` (SDE ``sde_type`` or ODE).
    The model is fed ``model_timestep(i) = sigma_i``; adapters rescale it to their model's range.
    """

    sigmas: torch.Tensor
    sde_type: str = "dance"
    eta: float = 0.3
    block_noise: BlockNoise | None = None
    """Low-frequency exploration noise (``fastvideo.grpo.block_noise``); None = i.i.d. per element."""

    @classmethod
    def build(cls, num_steps: int, shift: float, sde_type: str, eta: float,
              block_noise: BlockNoise | None = None) -> FlowSampler:
        return cls(flow_sigmas(num_steps, shift), sde_type, eta, block_noise)

    @classmethod
    def for_model(cls, model: Any, num_steps: int, *, shift: float = 3.0, sde_type: str = "dance",
                  eta: float = 0.3, noise_block: int = 1) -> FlowSampler:
        """The sampler of a rectified-flow model; block noise pools ``model.latent_grid()``."""
        problem = block_noise_problem(noise_block, sde_type)
        if problem:
            raise ValueError(problem)
        block = BlockNoise(noise_block, *model.latent_grid()) if noise_block > 1 else None
        return cls.build(num_steps, shift, sde_type, eta, block)

    @property
    def num_steps(self) -> int:
        return self.sigmas.numel() - 1

    def model_timestep(self, step: int | torch.Tensor, batch: int) -> torch.Tensor:
        """Sigma_i for each sample, shape (B,), fp32."""
        return self.sigmas[_as_index(step, batch)]

    def step(self, step, model_output, sample, *, prev_sample=None, noise=None, stochastic=True) -> StepOutput:
        """One transition i -> i+1; ``stochastic=False`` takes the ODE (Euler) step."""
        idx = _as_index(step, sample.shape[0]).to(self.sigmas.device)
        sigma = self.sigmas[idx].to(sample.device)
        sigma_next = self.sigmas[idx + 1].to(sample.device)
        return flow_step(
            model_output, sample, sigma, sigma_next,
            sde_type=self.sde_type if stochastic else "ode", eta=self.eta,
            prev_sample=prev_sample, noise=noise, block_noise=self.block_noise,
        )

    def dpm2_step(self, step: int, model_output, sample, x0_prev=None) -> torch.Tensor:
        """Deterministic 2nd-order DPM-Solver++(2M) step i -> i+1 (first order without history)."""
        sig = [float(v) for v in self.sigmas]
        x0 = self.pred_x0(step, model_output, sample)
        prev = sig[step - 1] if step > 0 else None
        return dpm_solver_2m_step(sample, x0, sig[step], sig[step + 1], x0_prev=x0_prev, sigma_prev=prev)

    def pred_x0(self, step, model_output, sample) -> torch.Tensor:
        """x0 prediction x - sigma_i * v."""
        sigma = self.sigmas[_as_index(step, sample.shape[0])].to(sample.device)
        return pred_x0_flow(model_output, sample, sigma)

    # the forward process (fastvideo.grpo.forward): x0 re-noised to the time of step i
    def noise_level(self, step, batch: int) -> torch.Tensor:
        """The coefficient t of the noise in x_t at step i: sigma_i, (B,)."""
        return self.sigmas[_as_index(step, batch)]

    def add_noise(self, step, x0, noise) -> torch.Tensor:
        """x_t = (1 - sigma_i) x0 + sigma_i eps."""
        return flow_add_noise(x0, noise, self.noise_level(step, x0.shape[0]).to(x0.device))

    def output_target(self, step, x0, noise) -> torch.Tensor:
        """The model output that is exact at x_t: the velocity eps - x0."""
        return noise.float() - x0.float()


@dataclass
class DDIMSampler:
    """DDIM sampler with log-probs (epsilon prediction) over a diffusion ``alphas_cumprod``."""

    timesteps: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    eta: float = 1.0

    @classmethod
    def build(cls, alphas_cumprod, num_steps, eta, *, final_alpha_cumprod=None) -> DDIMSampler:
        sched = ddim_schedule(alphas_cumprod, num_steps, final_alpha_cumprod=final_alpha_cumprod)
        return cls(sched.timesteps, sched.alpha_bar, sched.alpha_bar_prev, eta)

    @classmethod
    def for_model(cls, model: Any, num_steps: int, *, shift: float = 3.0, sde_type: str = "dance",
                  eta: float = 0.3, noise_block: int = 1) -> DDIMSampler:
        """The DDIM sampler of a diffusion model over its ``alphas_cumprod`` (``shift`` is unused).

        Diffusion models have one SDE (DDIM with eta): ``sde_type`` must be 'dance' (the default)
        or 'ode' (deterministic DDIM: eta = 0), and i.i.d. noise (``noise_block`` = 1)."""
        name = type(model).__name__
        if noise_block > 1:
            raise ValueError(f"noise_block={noise_block} needs a rectified-flow model with the 'dance' SDE; "
                             f"{name} samples with DDIM")
        if sde_type not in ("dance", "ode"):
            raise ValueError(f"sde_type={sde_type!r} is a rectified-flow SDE; diffusion models ({name}) "
                             "sample with DDIM (its eta)")
        return cls.build(model.alphas_cumprod, num_steps, 0.0 if sde_type == "ode" else eta,
                         final_alpha_cumprod=model.final_alpha_cumprod)

    @property
    def num_steps(self) -> int:
        return self.timesteps.numel()

    def model_timestep(self, step, batch: int) -> torch.Tensor:
        """Integer DDPM timestep t_i for each sample, shape (B,)."""
        return self.timesteps[_as_index(step, batch)]

    def step(self, step, model_output, sample, *, prev_sample=None, noise=None, stochastic=True) -> StepOutput:
        """One DDIM transition; ``stochastic=False`` uses eta = 0 (deterministic DDIM)."""
        idx = _as_index(step, sample.shape[0])
        return ddim_step(
            model_output, sample,
            self.alpha_bar[idx].to(sample.device), self.alpha_bar_prev[idx].to(sample.device),
            eta=self.eta if stochastic else 0.0, prev_sample=prev_sample, noise=noise,
        )

    def pred_x0(self, step, model_output, sample) -> torch.Tensor:
        """x0 prediction (x - sqrt(1 - abar) eps) / sqrt(abar)."""
        alpha_bar = self.alpha_bar[_as_index(step, sample.shape[0])].to(sample.device)
        return pred_x0_ddim(model_output, sample, alpha_bar)

    # the forward process (fastvideo.grpo.forward): x0 re-noised to the timestep of step i
    def noise_level(self, step, batch: int) -> torch.Tensor:
        """The coefficient of the noise in x_t at step i: sqrt(1 - abar_i), (B,)."""
        return torch.sqrt(1.0 - self.alpha_bar[_as_index(step, batch)].float())

    def add_noise(self, step, x0, noise) -> torch.Tensor:
        """x_t = sqrt(abar_i) x0 + sqrt(1 - abar_i) eps."""
        return ddim_add_noise(x0, noise, self.alpha_bar[_as_index(step, x0.shape[0])].to(x0.device))

    def output_target(self, step, x0, noise) -> torch.Tensor:
        """The model output that is exact at x_t: the noise eps (epsilon prediction)."""
        return noise.float()


def deterministic_rollout(sde_type: str, eta: float) -> bool:
    """Whether a rollout draws no noise after its initial latent: the ODE (``sde_type`` 'ode', for a
    diffusion model deterministic DDIM) or noise level ``eta`` 0."""
    return sde_type == "ode" or eta == 0


SAMPLERS_BY_PARADIGM = {"flow": FlowSampler, "diffusion": DDIMSampler}
"""The sampler class of each paradigm (a model's ``paradigm`` attribute)."""


def sampler_for(model: Any, num_steps: int, *, shift: float = 3.0, sde_type: str = "dance", eta: float = 0.3,
                noise_block: int = 1) -> FlowSampler | DDIMSampler:
    """The sampler of ``model``'s paradigm over ``num_steps`` steps (``cls.for_model``).

    ``model`` is any adapter: it names its ``paradigm`` and carries what that sampler reads (a
    diffusion model its ``alphas_cumprod`` / ``final_alpha_cumprod``; block noise ``latent_grid()``).
    """
    cls = SAMPLERS_BY_PARADIGM.get(getattr(model, "paradigm", None))
    if cls is None:
        raise ValueError(f"unknown paradigm {getattr(model, 'paradigm', None)!r} of {type(model).__name__}; "
                         f"expected one of {sorted(SAMPLERS_BY_PARADIGM)}")
    return cls.for_model(model, num_steps, shift=shift, sde_type=sde_type, eta=eta, noise_block=noise_block)
