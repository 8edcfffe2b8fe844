"""GRPO clipped policy loss and the closed-form Gaussian KL to a reference policy."""

from __future__ import annotations

import torch
from torch import Tensor


def grpo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    clip_range: float,
    *,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO-style clipped GRPO objective (DanceGRPO eq. for I(theta), negated to a loss):

        rho  = exp(log p_theta - log p_old)
        L    = max(-A * rho, -A * clip(rho, 1 - eps, 1 + eps)),   eps = clip_range
        loss = mean(L) + kl_coef * mean(kl)

    ``log_prob``, ``old_log_prob``: same shape, e.g. (B,) for one step of B samples or (B, K) for K
    trained steps; ``advantages`` broadcastable to it (e.g. (B,) or (B, 1)). Everything runs in
    float32. ``old_log_prob`` and ``advantages`` are treated as constants (detached).

    Metrics (detached 0-dim float32 tensors; call ``.item()`` when logging, which syncs the device):
    ``clipfrac`` = mean(|rho - 1| > eps), ``approx_kl`` = 0.5 * mean((log p_theta - log p_old)^2),
    ``ratio_mean``, ``ratio_max``, ``policy_loss`` = mean(L), and ``kl`` = mean(kl) when given.
    """
    log_prob = log_prob.float()
    old_log_prob = old_log_prob.detach().float()
    advantages = advantages.detach().float()
    if advantages.ndim < log_prob.ndim:
        advantages = advantages.reshape(*advantages.shape, *([1] * (log_prob.ndim - advantages.ndim)))
    log_ratio = log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    policy_loss = torch.maximum(unclipped, clipped).mean()
    loss = policy_loss
    with torch.no_grad():
        metrics = {
            "policy_loss": policy_loss.detach(),
            "clipfrac": ((ratio - 1.0).abs() > clip_range).float().mean(),
            "approx_kl": 0.5 * (log_ratio**2).mean(),
            "ratio_mean": ratio.mean(),
            "ratio_max": ratio.max(),
        }
    if kl is not None:
        kl_mean = kl.float().mean()
        loss = loss + kl_coef * kl_mean
        metrics["kl"] = kl_mean.detach()
    return loss, metrics


def gaussian_kl(mean: Tensor, ref_mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, std^2) || N(ref_mean, std^2)) per element, averaged over non-batch dims (B,):

        KL = mean_{dims != 0} [ (mean - ref_mean)^2 / (2 std^2) ]

    (Flow-GRPO's KL regulariser; averaged like ``log_prob`` so the two have the same scale).
    ``std`` is broadcastable to ``mean`` (e.g. the (B,1,...,1) std of a step). Elements with
    std == 0 (deterministic steps) contribute 0. Float32.
    """
    mean, ref_mean, std = mean.float(), ref_mean.float(), std.float()
    safe_std = torch.where(std > 0, std, torch.ones_like(std))
    elementwise = (mean - ref_mean) ** 2 / (2.0 * safe_std**2)
    elementwise = torch.where(std > 0, elementwise, torch.zeros_like(elementwise))
    return torch.broadcast_to(elementwise, mean.shape).reshape(mean.shape[0], -1).mean(dim=1)
