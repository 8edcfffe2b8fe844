"""Best-of-N training subset (DanceGRPO's video recipe): roll out G samples per prompt, train only
the k/2 samples with the highest and the k/2 with the lowest advantage of each group."""

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


def subset_rollout(ro: Rollout, ids: SampleIds, index: torch.Tensor) -> tuple[Rollout, SampleIds]:
    """The rollout and sample identities restricted to the samples ``index``."""
    sub = Rollout(ro.final_latents[index], ro.train_steps[index], ro.latents[index], ro.next_latents[index],
                  ro.log_probs[index], ro.timesteps[index])
    return sub, SampleIds(ids.prompt_index[index], ids.sample_index[index], ids.local_prompt[index])
