"""Per-iteration step plan: which steps are SDE / trained / solved by a higher-order ODE.

- No window (DanceGRPO, Flow-GRPO): every step but the last is an SDE step; each sample trains a
  random subset of floor((S-1) * timestep_fraction) of them.
- Window (MixGRPO): only the w window steps are SDE steps and all of them are trained; steps
  before the window are first-order ODE steps; steps after it are ODE steps, optionally on a
  compressed sigma grid (Flash) and with 2nd-order DPM-Solver++ (``ode_solver='dpm2'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastvideo.grpo.sampler import FlowSampler
from fastvideo.grpo.window import SlidingWindow, compressed_tail

ODE_SOLVERS = ("euler", "dpm2")
"""``sampler.ode_solver``: first-order Euler or 2nd-order DPM-Solver++ on the ODE steps after the window."""


@dataclass
class StepPlan:
    sampler: object
    """The sampler of this iteration (a compressed grid under MixGRPO-Flash)."""
    stochastic_steps: set[int] | None = None
    """Steps sampled with the SDE; None = all but the last."""
    train_candidates: list[int] | None = None
    """Steps a sample may be trained on; None = all but the last."""
    train_fraction: float = 0.6
    """Fraction of the candidates trained per sample."""
    dpm_steps: set[int] = field(default_factory=set)
    """ODE steps solved with DPM-Solver++(2M)."""

    @property
    def num_steps(self) -> int:
        return self.sampler.num_steps


def iteration_plan(base_sampler, window: SlidingWindow | None, iteration: int, *, timestep_fraction: float,
                   ode_solver: str = "euler", flash_ratio: float = 1.0) -> StepPlan:
    """The StepPlan of ``iteration`` (a pure function of its arguments, so resume is exact)."""
    if window is None:
        return StepPlan(base_sampler, train_fraction=timestep_fraction)
    steps = window.steps(iteration)
    end = steps[-1] + 1
    sampler = base_sampler
    is_flow = isinstance(base_sampler, FlowSampler)
    if (flash_ratio < 1.0 or ode_solver != "euler") and not is_flow:
        raise ValueError("MixGRPO-Flash (flash_ratio < 1, ode_solver=dpm2) needs a rectified-flow model")
    if is_flow and flash_ratio < 1.0:
        sampler = FlowSampler(compressed_tail(base_sampler.sigmas, end, flash_ratio),
                              base_sampler.sde_type, base_sampler.eta)
    dpm = set(range(end, sampler.num_steps)) if ode_solver == "dpm2" else set()
    return StepPlan(sampler, set(steps), steps, 1.0, dpm)
