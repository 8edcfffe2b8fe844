"""Batched GRPO rollout over a model-agnostic ``predict`` callable.

Determinism that does not depend on the number of ranks: every random draw of a sample comes from
a generator seeded by ``sample_seed(seed, iteration, global_prompt_index, sample_index, purpose)``
and is drawn on the CPU, so a sample's initial noise, SDE noise and trained-step subset are the same
whether it is produced on rank 0 of 1 or rank 3 of 8, in a batch of 1 or of 64.

Only the latents of the steps a sample will be trained on are kept (the subset is drawn before the
rollout), so memory follows what is trained, not the number of sampling steps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from fastvideo.grpo.schedule import sample_train_step_indices

PURPOSE_INIT_NOISE = 0
PURPOSE_TRAIN_STEPS = 1
PURPOSE_SDE_NOISE = 2  # + step index
PURPOSE_FORWARD = 1 << 20  # + pass index: the forward objectives' timesteps and noise (fastvideo.grpo.forward)


def sample_seed(seed: int, iteration: int, prompt_index: int, sample_index: int, purpose: int) -> int:
    """A 63-bit seed from the tuple (seed, iteration, global prompt index, sample index, purpose).

    blake2b of the tuple: stable across processes, platforms and python hash randomisation.
    """
    key = f"{seed}/{iteration}/{prompt_index}/{sample_index}/{purpose}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def seeded_normal(shape: Sequence[int], seeds: Sequence[int], device=None) -> torch.Tensor:
    """Stack of standard normal draws of ``shape``, one CPU generator per seed: (len(seeds), *shape)."""
    draws = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.stack(draws).to(device)


@dataclass
class SampleIds:
    """Identity of each sample of a rollout batch: global prompt index and index within its group."""

    prompt_index: torch.Tensor  # (B,) long, global prompt position in this iteration's batch
    sample_index: torch.Tensor  # (B,) long, 0..G-1
    local_prompt: torch.Tensor  # (B,) long, row of this rank's conditioning


def make_sample_ids(global_prompt_indices: Sequence[int], group_size: int) -> SampleIds:
    """G samples per prompt, ordered group by group."""
    prompts = torch.as_tensor(list(global_prompt_indices), dtype=torch.long)
    local = torch.arange(len(prompts)).repeat_interleave(group_size)
    return SampleIds(prompts.repeat_interleave(group_size), torch.arange(group_size).repeat(len(prompts)), local)


def initial_noise(shape, ids: SampleIds, *, seed: int, iteration: int, same_in_group: bool, device=None):
    """Initial latents; with ``same_in_group`` every sample of a group shares its prompt's noise."""
    sample = torch.zeros_like(ids.sample_index) if same_in_group else ids.sample_index
    seeds = [
        sample_seed(seed, iteration, int(p), int(s), PURPOSE_INIT_NOISE)
        for p, s in zip(ids.prompt_index.tolist(), sample.tolist())
    ]
    return seeded_normal(shape, seeds, device)


def train_step_subsets(ids: SampleIds, num_steps: int, fraction: float, *, seed: int, iteration: int,
                       candidates: Sequence[int] | None = None) -> torch.Tensor:
    """(B, K) sorted step indices each sample is trained on, drawn before the rollout.

    ``candidates`` restricts the choice (MixGRPO window); default all steps but the last.
    """
    rows = []
    for p, s in zip(ids.prompt_index.tolist(), ids.sample_index.tolist()):
        gen = torch.Generator().manual_seed(sample_seed(seed, iteration, p, s, PURPOSE_TRAIN_STEPS))
        if candidates is None:
            rows.append(sample_train_step_indices(num_steps, fraction, gen))
        else:
            pool = torch.as_tensor(list(candidates), dtype=torch.long)
            count = max(1, min(len(pool), int(len(pool) * fraction)))
            rows.append(pool[torch.randperm(len(pool), generator=gen)[:count]].sort().values)
    return torch.stack(rows)


@dataclass
class Rollout:
    """What a rollout keeps: final x0 latents and, per sample, the K trained transitions."""

    final_latents: torch.Tensor  # (B, *latent) x0 prediction of the last step, decoded for the reward
    train_steps: torch.Tensor  # (B, K) step indices
    latents: torch.Tensor  # (B, K, *latent) x_i at each trained step
    next_latents: torch.Tensor  # (B, K, *latent) x_{i+1} actually sampled
    log_probs: torch.Tensor  # (B, K) old log-probs (fp32)
    timesteps: torch.Tensor  # (B, K) model timesteps of the trained steps


PredictFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def rollout(predict: PredictFn, sampler, init_latents: torch.Tensor, ids: SampleIds, train_steps: torch.Tensor,
            *, seed: int, iteration: int, batch_size: int = 0, stochastic_steps: set[int] | None = None,
            dpm_steps: set[int] | None = None) -> Rollout:
    """Run the sampler from ``init_latents`` for all samples, ``batch_size`` samples per model call.

    ``predict(latents, timestep (B,), rows (B,))`` returns the model output for the samples whose
    conditioning rows are ``rows``. ``stochastic_steps`` = steps sampled with the SDE (default all
    but the last); other steps take the ODE: first-order Euler, or 2nd-order DPM-Solver++ for the
    steps in ``dpm_steps`` (MixGRPO-Flash). The last step's x0 prediction is the final sample.
    """
    num, k = train_steps.shape
    s_total = sampler.num_steps
    stochastic_steps = set(range(s_total - 1)) if stochastic_steps is None else set(stochastic_steps)
    bs = batch_size if batch_size > 0 else num
    x = init_latents.float().clone()
    stored_x = torch.zeros((num, k, *x.shape[1:]), device=x.device)
    stored_next = torch.zeros_like(stored_x)
    stored_lp = torch.zeros(num, k, device=x.device)
    final = torch.empty_like(x)
    dpm_steps = set(dpm_steps or ())
    prev_x0 = torch.zeros_like(x) if dpm_steps else None
    for i in range(s_total):
        stoch = i in stochastic_steps
        noise = None
        if stoch:
            seeds = [sample_seed(seed, iteration, p, s, PURPOSE_SDE_NOISE + i)
                     for p, s in zip(ids.prompt_index.tolist(), ids.sample_index.tolist())]
            noise = seeded_normal(x.shape[1:], seeds, x.device)
        for start in range(0, num, bs):
            sl = slice(start, start + bs)
            t = sampler.model_timestep(i, x[sl].shape[0])
            out = predict(x[sl], t, ids.local_prompt[sl]).float()
            if i == s_total - 1:
                final[sl] = sampler.pred_x0(i, out, x[sl])
                continue
            if i in dpm_steps and not stoch:
                x_next = sampler.dpm2_step(i, out, x[sl], prev_x0[sl] if i > 0 else None)
                prev_x0[sl] = sampler.pred_x0(i, out, x[sl])
                x[sl] = x_next
                continue
            if prev_x0 is not None:
                prev_x0[sl] = sampler.pred_x0(i, out, x[sl])
            res = sampler.step(i, out, x[sl], noise=None if noise is None else noise[sl], stochastic=stoch)
            _store(train_steps[sl], i, x[sl], res, stored_x[sl], stored_next[sl], stored_lp[sl])
            x[sl] = res.prev_sample
    timesteps = sampler.model_timestep(train_steps.reshape(-1), num * k).reshape(num, k)
    return Rollout(final, train_steps, stored_x, stored_next, stored_lp, timesteps)


def _store(steps, i, x, res, out_x, out_next, out_lp) -> None:
    """Copy step i's transition into the slots of the samples that train on step i."""
    rows, cols = (steps == i).nonzero(as_tuple=True)
    if rows.numel():
        out_x[rows, cols] = x[rows]
        out_next[rows, cols] = res.prev_sample[rows].float()
        out_lp[rows, cols] = res.log_prob[rows].float()
