"""Which samples of a rollout are trained: best-of-N (DanceGRPO's video recipe: roll out G samples per
prompt, train only the k/2 samples with the highest and the k/2 with the lowest advantage of each
group), groups whose rewards are all equal dropped (Flow-GRPO), positive advantages only (rejection
fine-tuning); ``train_selection`` combines them and ``subset_rollout`` applies the result."""

from __future__ import annotations

import torch

from fastvideo.grpo.rollout import Rollout, SampleIds


def best_and_worst_indices(advantages: torch.Tensor, group_size: int, keep: int) -> torch.Tensor:
    """Sorted sample indices keeping, in every group, the top ceil(keep/2) and bottom floor(keep/2)
    advantages (ties broken by sample order). ``keep >= group_size`` keeps everything."""
    n = advantages.numel()
    if keep <= 0 or keep >= group_size:
        return torch.arange(n)
    groups = advantages.reshape(-1, group_size)
    order = torch.argsort(groups, dim=1, descending=True, stable=True)
    top, bottom = -(-keep // 2), keep // 2
    chosen = torch.cat([order[:, :top], order[:, group_size - bottom:]], dim=1)
    offsets = torch.arange(groups.shape[0]).unsqueeze(1) * group_size
    return (chosen + offsets).reshape(-1).sort().values


def constant_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N / group_size,) bool: the groups (contiguous runs of ``group_size`` rewards) whose rewards are all equal."""
    groups = rewards.reshape(-1, group_size)
    return groups.amax(dim=1) == groups.amin(dim=1)


def train_selection(advantages: torch.Tensor, rewards: torch.Tensor, group_size: int, *, best_of: int = 0,
                    drop_constant_groups: bool = False, positive_only: bool = False,
                    min_reward: float | None = None) -> torch.Tensor | None:
    """Sorted indices of the samples to train, or None for all of them.

    A sample is trained when it is among its group's ``best_of`` (``best_and_worst_indices``; 0 = all),
    its group's ``rewards`` are not all equal (with ``drop_constant_groups``; Flow-GRPO: such groups carry
    no signal but cost compute) and, with ``positive_only``, its advantage is > 0 (rejection fine-tuning)
    and, if ``min_reward`` is set, its reward is >= it (acceptance by an absolute bar, e.g. the verifier's).
    ``advantages`` and ``rewards`` (N,) are ordered group by group.
    """
    keep = torch.ones(advantages.numel(), dtype=torch.bool)
    if best_of:
        chosen = torch.zeros_like(keep)
        chosen[best_and_worst_indices(advantages, group_size, best_of)] = True
        keep &= chosen
    if drop_constant_groups:
        keep &= ~constant_groups(rewards, group_size).repeat_interleave(group_size)
    if positive_only:
        keep &= advantages.cpu() > 0
    if min_reward is not None:
        keep &= rewards.cpu() >= min_reward
    return None if bool(keep.all()) else keep.nonzero().reshape(-1)


def subset_rollout(ro: Rollout, ids: SampleIds, index: torch.Tensor) -> tuple[Rollout, SampleIds]:
    """The rollout and sample identities restricted to the samples ``index``."""
    sub = Rollout(ro.final_latents[index], ro.train_steps[index], ro.latents[index], ro.next_latents[index],
                  ro.log_probs[index], ro.timesteps[index])
    return sub, SampleIds(ids.prompt_index[index], ids.sample_index[index], ids.local_prompt[index])
