"""The policy update of the forward-process objectives (``grpo.objective``: nft, awm, rft).

Each trained sample keeps only its final clean latent x0 and its advantage. A training item is a
(sample, slot) pair: slot k of a pass re-noises x0 to the sampler step ``draws.steps[b, k]`` with the
noise ``draws.noise[b, k]`` (``fastvideo.grpo.forward.forward_draws``: fresh draws every pass, a pure
function of (seed, iteration, sample, pass)). The loop over passes, chunks and micro-batches is
``update.optimize_items`` (the GRPO update's), so micro-batching is invisible in the gradient here too.
The math is in ``fastvideo.grpo.forward``; this module only evaluates the model on the items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastvideo.grpo import forward as fwd
from fastvideo.grpo.rollout import SampleIds
from fastvideo.training.update import optimize_items


@dataclass
class ForwardSettings:
    objective: str
    """nft | awm | rft (``fastvideo.grpo.forward.OBJECTIVES``)."""
    timesteps: int
    """K: forward-process timesteps per sample and pass."""
    train_batch_size: int
    updates_per_iteration: int
    max_grad_norm: float
    passes: int = 1
    adv_clip: float = 5.0
    """c of DiffusionNFT's optimality weight r = clip(A, -c, c) / 2c + 1/2 (``grpo.adv_clip_max``)."""
    nft_beta: float = 1.0
    kl_coef: float = 0.0
    """Weight of the mean squared distance of the model output to the reference policy's."""
    seed: int = 0
    iteration: int = 0


@dataclass
class _Items:
    """One micro-batch of forward-process items, evaluated."""

    out: torch.Tensor  # the trained policy's output at x_t (with gradient)
    x_t: torch.Tensor
    x0: torch.Tensor
    noise: torch.Tensor
    steps: torch.Tensor
    timesteps: torch.Tensor
    rows: torch.Tensor
    advantages: torch.Tensor


def _nft(items: _Items, sampler, settings: ForwardSettings, old_predict: Callable):
    with torch.no_grad():
        old_out = old_predict(items.x_t, items.timesteps, items.rows).float()
    return fwd.nft_loss(items.out, old_out, lambda v: sampler.pred_x0(items.steps, v, items.x_t), items.x0,
                        items.advantages, beta=settings.nft_beta, adv_clip=settings.adv_clip)


def _awm(items: _Items, sampler, settings: ForwardSettings, old_predict: Callable | None):
    target = sampler.output_target(items.steps, items.x0, items.noise)
    level = sampler.noise_level(items.steps, len(items.steps))
    return fwd.awm_loss(fwd.awm_log_likelihood(items.out, target, level), items.advantages)


def _rft(items: _Items, sampler, settings: ForwardSettings, old_predict: Callable | None):
    return fwd.rft_loss(items.out, sampler.output_target(items.steps, items.x0, items.noise), items.advantages)


LOSSES = {"nft": _nft, "awm": _awm, "rft": _rft}
"""The per-objective loss of a micro-batch of evaluated items."""


def forward_items(num_samples: int, k: int) -> torch.Tensor:
    """(num_samples * k, 2) [sample, slot] pairs, sample-major."""
    grid = torch.meshgrid(torch.arange(num_samples), torch.arange(k), indexing="ij")
    return torch.stack(grid, -1).reshape(-1, 2)


def run_forward_update(x0: torch.Tensor, advantages: torch.Tensor, ids: SampleIds, predict: Callable, sampler,
                       model, optimizer, lr_scheduler, settings: ForwardSettings, *,
                       old_predict: Callable | None = None, reference_predict: Callable | None = None,
                       on_step=None, sync_context: Callable | None = None,
                       extra_loss: Callable | None = None) -> dict[str, float]:
    """All optimizer steps of one iteration of a forward-process objective.

    ``x0`` (B, *latent): the trained samples' final latents; ``advantages`` (B,); ``ids``: their
    identities (the draws' seeds); ``predict(x_t, timesteps, rows)`` / ``old_predict`` (NFT's old policy) /
    ``reference_predict`` (the ``kl_coef`` term): model outputs of the samples ``rows``.
    """
    if settings.objective not in LOSSES:
        raise ValueError(f"unknown forward objective {settings.objective!r}; expected one of {sorted(LOSSES)}")
    if settings.objective == "nft" and old_predict is None:
        raise ValueError("the nft objective needs the old policy (old_predict)")
    loss_of = LOSSES[settings.objective]
    x0 = x0.float()
    draws: dict[int, fwd.ForwardDraws] = {}

    def loss_fn(mb, pass_index):
        if pass_index not in draws:
            draws.clear()
            draws[pass_index] = fwd.forward_draws(ids, sampler.num_steps, settings.timesteps, x0.shape[1:],
                                                  seed=settings.seed, iteration=settings.iteration,
                                                  pass_index=pass_index, device=x0.device)
        d = draws[pass_index]
        rows, slots = mb[:, 0], mb[:, 1]
        steps, noise, clean = d.steps[rows, slots], d.noise[rows, slots], x0[rows]
        x_t = sampler.add_noise(steps, clean, noise)
        timesteps = sampler.model_timestep(steps, len(steps))
        out = predict(x_t, timesteps, rows).float()
        items = _Items(out, x_t, clean, noise, steps, timesteps, rows, advantages[rows].float().to(out.device))
        loss, metrics = loss_of(items, sampler, settings, old_predict)
        if settings.kl_coef > 0 and reference_predict is not None:
            with torch.no_grad():
                ref_out = reference_predict(x_t, timesteps, rows).float()
            kl = fwd.prediction_kl(out, ref_out).mean()
            loss = loss + settings.kl_coef * kl
            metrics["kl"] = kl.detach()
        return loss, metrics

    return optimize_items(forward_items(len(x0), settings.timesteps), loss_fn, model, optimizer, lr_scheduler,
                          settings, on_step=on_step, sync_context=sync_context, extra_loss=extra_loss)
