"""The policy update of one GRPO iteration: micro-batched recomputation of the trained steps.

Every (sample, trained step) pair is one training item. Items are split into
``updates_per_iteration`` chunks (one optimizer step each); each chunk is processed in
micro-batches of ``train_batch_size`` items with gradient accumulation. Each micro-batch's loss is
weighted by its share of the chunk, so the accumulated gradient equals the gradient of the chunk's
mean loss whatever the micro-batch size:

    grad = d/dθ [ (1/N) Σ_items L_item ]  =  Σ_mb (n_mb / N) · d/dθ mean_{mb} L

``passes`` (``train.passes_per_rollout``) repeats all of it over the same rollout: passes x
updates_per_iteration optimizer steps (after the first step the ratio is no longer 1; the PPO clip
keeps later passes valid). ``optimize_items`` is that loop for any per-item loss; the forward-process
objectives use it too (``fastvideo.training.forward_update``).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastvideo.grpo.loss import gaussian_kl, grpo_loss
from fastvideo.grpo.rollout import Rollout


@dataclass
class UpdateSettings:
    clip_range: float
    train_batch_size: int
    updates_per_iteration: int
    max_grad_norm: float
    kl_coef: float = 0.0
    passes: int = 1
    """Optimizer passes over the rollout's items (``train.passes_per_rollout``)."""


def training_items(rollout: Rollout) -> torch.Tensor:
    """(N, 2) [sample, slot] pairs, sample-major."""
    b, k = rollout.train_steps.shape
    return torch.stack(torch.meshgrid(torch.arange(b), torch.arange(k), indexing="ij"), -1).reshape(-1, 2)


def chunk_items(items: torch.Tensor, chunks: int) -> list[torch.Tensor]:
    """Split items into ``chunks`` nearly equal consecutive parts (all non-empty)."""
    chunks = max(1, min(chunks, len(items)))
    return list(torch.tensor_split(items, chunks))


def micro_batch_loss(items, rollout: Rollout, advantages, predict: Callable, sampler, settings: UpdateSettings,
                     reference_predict: Callable | None = None):
    """Loss and metrics of one micro-batch of (sample, slot) items.

    predict(latents, timesteps, sample_rows) -> model output of the current policy.
    """
    rows, slots = items[:, 0], items[:, 1]
    x = rollout.latents[rows, slots]
    steps = rollout.train_steps[rows, slots]
    t = rollout.timesteps[rows, slots]
    out = predict(x, t, rows).float()
    res = sampler.step(steps, out, x, prev_sample=rollout.next_latents[rows, slots])
    kl = None
    if settings.kl_coef > 0 and reference_predict is not None:
        with torch.no_grad():
            ref_out = reference_predict(x, t, rows).float()
        ref = sampler.step(steps, ref_out, x, prev_sample=rollout.next_latents[rows, slots])
        kl = gaussian_kl(res.mean, ref.mean, res.std)
    return grpo_loss(res.log_prob, rollout.log_probs[rows, slots], advantages[rows].to(res.log_prob.device),
                     settings.clip_range, kl=kl, kl_coef=settings.kl_coef)


def gradient_sync(model) -> Callable | None:
    """FSDP2: a ``sync_context(last)`` that reduces gradients on the last micro-batch of a step only; else None."""
    if not hasattr(model, "set_requires_gradient_sync"):
        return None

    def sync(last):
        model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    return sync


def run_update(rollout: Rollout, advantages: torch.Tensor, predict: Callable, sampler, model, optimizer,
               lr_scheduler, settings: UpdateSettings, *, reference_predict=None, on_step=None,
               sync_context: Callable | None = None, extra_loss: Callable | None = None) -> dict[str, float]:
    """All optimizer steps of one iteration; returns metrics averaged over micro-batches."""
    def loss(mb, pass_index):
        return micro_batch_loss(mb, rollout, advantages, predict, sampler, settings, reference_predict)

    return optimize_items(training_items(rollout), loss, model, optimizer, lr_scheduler, settings,
                          on_step=on_step, sync_context=sync_context, extra_loss=extra_loss)


def optimize_items(items: torch.Tensor, loss_fn: Callable, model, optimizer, lr_scheduler, settings, *,
                   on_step=None, sync_context: Callable | None = None,
                   extra_loss: Callable | None = None) -> dict[str, float]:
    """``settings.passes`` passes over ``items``, each split into ``settings.updates_per_iteration`` chunks
    (one optimizer step each) of micro-batches of ``settings.train_batch_size`` items (gradient
    accumulation weighted by the micro-batch's share of its chunk). ``loss_fn(micro_items, pass_index)``
    returns (mean loss of the micro-batch, metrics). Metrics are averaged over micro-batches
    (``ratio_max``: the maximum); ``optimizer_steps`` counts the steps taken (none without items).
    ``extra_loss(call_index)`` -> (weighted term, metrics), when given, is added to every micro-batch's loss
    (``call_index`` counts the iteration's micro-batches from 0), so each step optimises the objective plus
    the share-weighted mean of the terms (the ``train.supervised_coef`` loss)."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = calls = 0
    for pass_index in range(settings.passes if len(items) else 0):
        for chunk in chunk_items(items, settings.updates_per_iteration):
            optimizer.zero_grad(set_to_none=True)
            micro = list(torch.split(chunk, settings.train_batch_size))
            for j, mb in enumerate(micro):
                with (sync_context(j == len(micro) - 1) if sync_context else contextlib.nullcontext()):
                    loss, metrics = loss_fn(mb, pass_index)
                    if extra_loss is not None:
                        term, extra_metrics = extra_loss(calls)
                        loss, metrics = loss + term, {**metrics, **extra_metrics}
                    calls += 1
                    (loss * (len(mb) / len(chunk))).backward()
                for key, value in {"loss": loss.detach(), **metrics}.items():
                    if key == "ratio_max":
                        sums[key] = max(sums.get(key, float("-inf")), float(value))
                        counts[key] = 1
                    else:
                        sums[key] += float(value)
                        counts[key] += 1
            grad_norm = torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            sums["grad_norm"] += float(grad_norm)
            counts["grad_norm"] += 1
            optimizer.step()
            lr_scheduler.step()
            steps += 1
            if on_step is not None:
                on_step()
    return {**{k: sums[k] / counts[k] for k in sums}, "optimizer_steps": steps}
