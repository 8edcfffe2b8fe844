"""GRPO advantages: group normalisation, per-prompt running statistics, multi-reward combination.

Standard deviation convention (used everywhere in this module): the *sample* (unbiased, n - 1)
standard deviation by default, as DanceGRPO does (torch's default ``Tensor.std``); pass
``unbiased=False`` for the population std that Flow-GRPO / DDPO use (``np.std``). A set of rewards
that are all equal (including a set of one) has no signal: its advantages are exactly 0, never NaN.
All results are float32.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

ADVANTAGE_SCOPES = ("group", "global")
AGGREGATIONS = ("sum", "advantage")
"""How several rewards make one advantage: weighted sum of rewards, or of per-reward advantages."""


def _normalise_rows(rows: Tensor, std_eps: float, unbiased: bool) -> Tensor:
    """Row-wise (r - mean) / (std + eps); rows whose values are all equal give 0."""
    mean = rows.mean(dim=1, keepdim=True)
    if rows.shape[1] > 1:
        std = rows.std(dim=1, keepdim=True, unbiased=unbiased)
    else:
        std = torch.zeros_like(mean)
    advantages = (rows - mean) / (std + std_eps)
    is_constant = (rows.amax(dim=1, keepdim=True) - rows.amin(dim=1, keepdim=True)) == 0
    return torch.where(is_constant, torch.zeros_like(advantages), advantages)


def group_advantages(
    rewards: Tensor,
    group_size: int,
    *,
    std_eps: float = 1e-8,
    clip: float | None = None,
    scope: str = "group",
    unbiased: bool = True,
) -> Tensor:
    """Group-relative advantages (DanceGRPO / GRPO).

        A_i = (r_i - mean(r_group(i))) / (std(r_group(i)) + std_eps),  then clamp to [-clip, clip]

    ``rewards``: (N,) ordered group by group (N = num_prompts * group_size; the G samples of a
    prompt are contiguous). ``scope="group"`` normalises within each group of ``group_size``;
    ``scope="global"`` uses the mean/std of all N rewards (the global-batch variant; feed it the
    rewards gathered from every rank). A constant group gives zeros.
    """
    if scope not in ADVANTAGE_SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {ADVANTAGE_SCOPES}")
    rewards = torch.as_tensor(rewards).float()
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {group_size}")
    rows = rewards.reshape(-1, group_size) if scope == "group" else rewards.reshape(1, -1)
    advantages = _normalise_rows(rows, std_eps, unbiased).reshape(-1)
    if clip is not None:
        advantages = advantages.clamp(-clip, clip)
    return advantages


class PerPromptStatTracker:
    """Per-prompt running reward statistics (DDPO / Flow-GRPO style advantages).

    Each prompt keeps its last ``buffer_size`` rewards. On ``update`` the new rewards are appended,
    then for every prompt

        A_i = (r_i - mean_p) / (std_p + std_eps)

    with mean_p/std_p over that prompt's buffer when it holds at least ``min_count`` rewards, else
    over the whole batch passed to this ``update`` call. Constant statistics give A = 0. The state
    is checkpointed with ``state_dict`` / ``load_state_dict``; under data parallelism feed every rank
    the same gathered batch so the trackers stay identical.
    """

    def __init__(
        self,
        buffer_size: int = 32,
        min_count: int = 16,
        *,
        std_eps: float = 1e-8,
        unbiased: bool = True,
    ) -> None:
        if buffer_size < 1 or min_count < 1:
            raise ValueError("buffer_size and min_count must be positive")
        self.buffer_size = buffer_size
        self.min_count = min_count
        self.std_eps = std_eps
        self.unbiased = unbiased
        self.stats: dict[str, deque[float]] = {}

    def _normalise(self, values: Tensor, reference: Tensor) -> Tensor:
        """(values - mean(reference)) / (std(reference) + eps), 0 if the reference is constant."""
        if reference.numel() < 2 or bool(reference.max() == reference.min()):
            return torch.zeros_like(values)
        std = reference.std(unbiased=self.unbiased)
        return (values - reference.mean()) / (std + self.std_eps)

    def update(self, prompts: Sequence[str], rewards: Tensor | Sequence[float]) -> Tensor:
        """Append ``rewards`` (N,) to the buffers of ``prompts`` (N strings) and return the
        advantages (N,) float32 on the device of ``rewards``."""
        rewards_tensor = torch.as_tensor(rewards)
        device = rewards_tensor.device
        values = rewards_tensor.detach().to("cpu", torch.float64).reshape(-1)
        if len(prompts) != values.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {values.shape[0]} rewards")
        advantages = torch.zeros_like(values)
        for prompt in dict.fromkeys(prompts):
            index = torch.tensor([i for i, p in enumerate(prompts) if p == prompt], dtype=torch.long)
            buffer = self.stats.setdefault(prompt, deque(maxlen=self.buffer_size))
            buffer.extend(values[index].tolist())
            reference = torch.tensor(list(buffer), dtype=torch.float64)
            if len(buffer) < self.min_count:
                reference = values
            advantages[index] = self._normalise(values[index], reference)
        return advantages.to(device=device, dtype=torch.float32)

    def clear(self) -> None:
        """Forget all statistics."""
        self.stats = {}

    def state_dict(self) -> dict[str, Any]:
        """Plain-python state: every prompt's buffered rewards (and the settings, for reference)."""
        return {
            "buffer_size": self.buffer_size,
            "min_count": self.min_count,
            "std_eps": self.std_eps,
            "unbiased": self.unbiased,
            "stats": {prompt: list(buffer) for prompt, buffer in self.stats.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the buffered rewards of a ``state_dict``. This tracker's own settings (from the
        run's config) are kept; buffers are trimmed to its ``buffer_size``."""
        self.stats = {
            prompt: deque((float(r) for r in values), maxlen=self.buffer_size)
            for prompt, values in state["stats"].items()
        }


def _check_reward_names(rewards: Mapping[str, Tensor], weights: Mapping[str, float]) -> None:
    missing = set(rewards) - set(weights)
    unknown = set(weights) - set(rewards)
    if missing or unknown:
        raise ValueError(
            f"reward/weight names differ: no weight for {sorted(missing)}, no reward for {sorted(unknown)}"
        )


def combine_rewards(rewards: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Weighted sum of several rewards: r = sum_k w_k * r_k (float32, (N,)).

    ``rewards`` and ``weights`` must name the same rewards.
    """
    _check_reward_names(rewards, weights)
    total = None
    for name, values in rewards.items():
        term = float(weights[name]) * torch.as_tensor(values).float()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no rewards to combine")
    return total


def aggregate_advantages(
    rewards: Mapping[str, Tensor],
    weights: Mapping[str, float],
    group_size: int,
    **group_adv_kwargs: Any,
) -> Tensor:
    """MixGRPO "advantage aggregation": normalise each reward on its own, then sum with weights.

        A = sum_k w_k * group_advantages(r_k, group_size, **group_adv_kwargs)

    (clipping, if requested, applies to each per-reward advantage before the sum).
    """
    _check_reward_names(rewards, weights)
    per_reward = {
        name: group_advantages(values, group_size, **group_adv_kwargs) for name, values in rewards.items()
    }
    return combine_rewards(per_reward, weights)


def reward_advantages(
    total: Tensor,
    breakdown: Mapping[str, Tensor],
    group_size: int,
    *,
    aggregation: str = "sum",
    weights: Mapping[str, float] | None = None,
    tracker: PerPromptStatTracker | None = None,
    prompts: Sequence[str] | None = None,
    **group_adv_kwargs: Any,
) -> Tensor:
    """The one place rewards become GRPO advantages (the trainer's and ``RewardSet.advantages``).

    - ``tracker`` (per-prompt stat tracking, Flow-GRPO): A = tracker.update(prompts, total), clamped
      to [-clip, clip];
    - ``aggregation="advantage"`` (MixGRPO): A = sum_k w_k * group_advantages(r_k), each clipped;
    - ``aggregation="sum"``: A = group_advantages(total), total = sum_k w_k r_k.

    ``total`` (N,) and ``breakdown`` {name: (N,)} are ordered group by group; ``weights`` {name: w_k}
    are needed for the advantage aggregation only; ``group_adv_kwargs`` (clip, scope, std_eps,
    unbiased) go to ``group_advantages``.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")
    if tracker is not None:
        if prompts is None:
            raise ValueError("per-prompt stat tracking needs the prompts")
        advantages = tracker.update(list(prompts), total)
        clip = group_adv_kwargs.get("clip")
        return advantages if clip is None else advantages.clamp(-clip, clip)
    if aggregation == "advantage":
        if weights is None:
            raise ValueError("aggregation='advantage' needs the reward weights")
        return aggregate_advantages(breakdown, weights, group_size, **group_adv_kwargs)
    return group_advantages(total, group_size, **group_adv_kwargs)
