"""Several weighted rewards scored together, and their GRPO advantages.

    total_i = sum_k w_k * r_k(x_i, c_i)

Aggregation of advantages (``RewardsConfig.aggregation``):
  "sum":       A = group_advantages(sum_k w_k r_k)                  (DanceGRPO multi-reward)
  "advantage": A = sum_k w_k * group_advantages(r_k)                (MixGRPO advantage aggregation)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fastvideo.grpo.advantage import AGGREGATIONS, combine_rewards, group_advantages, reward_advantages
from fastvideo.rewards.base import Reward, ThresholdReward, build_reward

NAN_POLICIES = ("skip", "error")
"""``rewards.nan_policy``: what the trainer does with a non-finite reward (skip the update, or raise)."""


@dataclass
class RewardTerm:
    """One scored reward: its unique breakdown ``key``, the reward and its weight."""

    key: str
    reward: Reward
    weight: float


def unique_keys(names: list[str]) -> list[str]:
    """Breakdown keys: the reward name, then name_2, name_3, ... for repeats."""
    counts: dict[str, int] = {}
    keys = []
    for name in names:
        counts[name] = counts.get(name, 0) + 1
        keys.append(name if counts[name] == 1 else f"{name}_{counts[name]}")
    return keys


class RewardSet:
    """Callable ``(images, prompts) -> (total (B,), breakdown {key: (B,)})``; keys keep term order."""

    def __init__(self, terms: list[RewardTerm], aggregation: str = "sum") -> None:
        if not terms:
            raise ValueError("a RewardSet needs at least one reward")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")
        if len({term.key for term in terms}) != len(terms):
            raise ValueError(f"duplicate breakdown keys: {[term.key for term in terms]}")
        self.terms = terms
        self.aggregation = aggregation

    @classmethod
    def from_config(cls, rewards_cfg: Any, device: str | torch.device | None = None) -> RewardSet:
        """Build from ``fastvideo.config.RewardsConfig`` (terms: name, weight, threshold, kwargs).

        ``device`` (the training device) wins over ``rewards_cfg.device``; a term's own
        ``kwargs["device"]`` wins over both.
        """
        device = device if device is not None else getattr(rewards_cfg, "device", None)
        keys = unique_keys([term.name for term in rewards_cfg.terms])
        terms = []
        for key, term_cfg in zip(keys, rewards_cfg.terms):
            kwargs = {"device": device, **dict(term_cfg.kwargs or {})}
            reward = build_reward(term_cfg.name, **kwargs)
            if term_cfg.threshold is not None:
                reward = ThresholdReward(reward, term_cfg.threshold)
            terms.append(RewardTerm(key, reward, float(term_cfg.weight)))
        return cls(terms, aggregation=rewards_cfg.aggregation)

    @property
    def weights(self) -> dict[str, float]:
        """{breakdown key: weight}, in term order."""
        return {term.key: term.weight for term in self.terms}

    def __call__(self, images: Tensor, prompts: list[str]) -> tuple[Tensor, dict[str, Tensor]]:
        breakdown = {term.key: term.reward(images, prompts) for term in self.terms}
        return combine_rewards(breakdown, self.weights), breakdown

    def advantages(
        self, rewards: Tensor | Mapping[str, Tensor], group_size: int, **group_adv_kwargs: Any
    ) -> Tensor:
        """GRPO advantages (N,) of a breakdown (or, for "sum" / a single reward, of the total).

        ``group_adv_kwargs`` go to ``group_advantages`` (std_eps, clip, scope, unbiased).
        """
        if isinstance(rewards, Mapping):
            return reward_advantages(combine_rewards(rewards, self.weights), rewards, group_size,
                                     aggregation=self.aggregation, weights=self.weights, **group_adv_kwargs)
        total = torch.as_tensor(rewards).float()
        if self.aggregation == "advantage":
            if len(self.terms) > 1:
                raise ValueError("aggregation='advantage' needs the per-reward breakdown, not the total")
            weight = self.terms[0].weight  # total = w r, so A = w * group_advantages(r)
            if weight == 0:
                return torch.zeros_like(total)
            return weight * group_advantages(total / weight, group_size, **group_adv_kwargs)
        return group_advantages(total, group_size, **group_adv_kwargs)

    def __repr__(self) -> str:
        parts = ", ".join(f"{term.key}*{term.weight:g}" for term in self.terms)
        return f"RewardSet({parts}, aggregation={self.aggregation!r})"
