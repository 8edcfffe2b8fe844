"""Advantages, per-prompt statistics, multi-reward combination, the clipped GRPO loss and the Gaussian KL."""

import math

import pytest
import torch

from fastvideo.grpo.advantage import (
    PerPromptStatTracker,
    aggregate_advantages,
    combine_rewards,
    group_advantages,
)
from fastvideo.grpo.loss import gaussian_kl, grpo_loss

R = 1 / math.sqrt(2)  # (r - mean) / std for a group of two distinct values (sample std)


def test_group_advantages_by_hand():
    advantages = group_advantages(torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), 3)
    assert advantages.dtype == torch.float32
    torch.testing.assert_close(advantages, torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]))  # sample std 1
    population = group_advantages(torch.tensor([1.0, 2.0, 3.0]), 3, unbiased=False)
    torch.testing.assert_close(population, torch.tensor([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3))


def test_group_advantages_eps_and_dtype():
    advantages = group_advantages(torch.tensor([0.0, 2.0], dtype=torch.bfloat16), 2, std_eps=1.0)
    std = math.sqrt(2.0)
    torch.testing.assert_close(advantages, torch.tensor([-1.0, 1.0]) / (std + 1.0))
    assert advantages.dtype == torch.float32


def test_constant_groups_give_exact_zeros_never_nan():
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.3, 0.3, 0.3, 0.7, 0.7, 0.7])
    assert torch.equal(group_advantages(rewards, 3), torch.zeros(9))
    assert torch.equal(group_advantages(rewards[:3], 3, scope="global"), torch.zeros(3))
    assert torch.equal(group_advantages(torch.tensor([1.0, 2.0]), 1), torch.zeros(2))  # groups of one


def test_global_scope_by_hand():
    advantages = group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2, scope="global")
    std = math.sqrt(5 / 3)
    torch.testing.assert_close(advantages, torch.tensor([-1.5, -0.5, 0.5, 1.5]) / std)
    per_group = group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2)
    torch.testing.assert_close(per_group, torch.tensor([-R, R, -R, R]))


def test_clip_by_hand():
    advantages = group_advantages(torch.tensor([0.0, 0.0, 10.0]), 3, clip=1.0)
    std = math.sqrt(100 / 3)
    torch.testing.assert_close(advantages, torch.tensor([-10 / 3 / std, -10 / 3 / std, 1.0]))


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(ValueError):
        group_advantages(torch.ones(5), 2)
    with pytest.raises(ValueError):
        group_advantages(torch.ones(4), 2, scope="batch")


def test_per_prompt_tracker_by_hand():
    tracker = PerPromptStatTracker(buffer_size=4, min_count=3)
    first = tracker.update(["a", "a", "b"], torch.tensor([1.0, 2.0, 10.0]))
    batch = torch.tensor([1.0, 2.0, 10.0], dtype=torch.float64)  # below min_count: batch statistics
    torch.testing.assert_close(first, ((batch - batch.mean()) / batch.std()).float())
    second = tracker.update(["a", "a"], [3.0, 4.0])  # buffer a = [1, 2, 3, 4]
    torch.testing.assert_close(second, torch.tensor([0.5, 1.5]) / math.sqrt(5 / 3))
    third = tracker.update(["a"], torch.tensor([5.0]))  # buffer a = [2, 3, 4, 5] (size 4)
    torch.testing.assert_close(third, torch.tensor([1.5]) / math.sqrt(5 / 3))
    assert list(tracker.stats["a"]) == [2.0, 3.0, 4.0, 5.0] and list(tracker.stats["b"]) == [10.0]


def test_per_prompt_tracker_constant_and_checkpoint():
    tracker = PerPromptStatTracker(buffer_size=8, min_count=2)
    assert torch.equal(tracker.update(["p", "p"], torch.tensor([0.3, 0.3])), torch.zeros(2))
    tracker.update(["q", "q", "q"], torch.tensor([1.0, 2.0, 4.0]))
    restored = PerPromptStatTracker(buffer_size=8, min_count=2)
    restored.load_state_dict(tracker.state_dict())
    rewards = torch.tensor([0.5, 3.0, 0.1])
    expected = tracker.update(["p", "q", "p"], rewards)
    torch.testing.assert_close(restored.update(["p", "q", "p"], rewards), expected)
    assert expected.dtype == torch.float32 and torch.isfinite(expected).all()
    tracker.clear()
    assert tracker.stats == {}
    with pytest.raises(ValueError):
        tracker.update(["p"], torch.tensor([1.0, 2.0]))


def test_combine_rewards_by_hand():
    rewards = {"hps": torch.tensor([0.3, 0.2]), "clip": torch.tensor([0.5, 0.1])}
    torch.testing.assert_close(
        combine_rewards(rewards, {"hps": 1.0, "clip": 0.5}), torch.tensor([0.55, 0.25])
    )
    with pytest.raises(ValueError):
        combine_rewards(rewards, {"hps": 1.0})
    with pytest.raises(ValueError):
        combine_rewards(rewards, {"hps": 1.0, "clip": 1.0, "pick": 1.0})


def test_aggregate_advantages_by_hand():
    rewards = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([0.0, 10.0, 0.0, 0.0])}
    aggregated = aggregate_advantages(rewards, {"a": 1.0, "b": 2.0}, 2)
    torch.testing.assert_close(aggregated, torch.tensor([-R - 2 * R, R + 2 * R, -R, R]))
    summed_first = group_advantages(combine_rewards(rewards, {"a": 1.0, "b": 2.0}), 2)
    assert not torch.allclose(aggregated, summed_first)
    clipped = aggregate_advantages(rewards, {"a": 1.0, "b": 2.0}, 2, clip=0.5)
    torch.testing.assert_close(clipped, torch.tensor([-1.5, 1.5, -0.5, 0.5]))


def test_grpo_loss_by_hand_with_clipping_on_both_sides():
    ratio = torch.tensor([1.5, 0.5, 0.5, 1.5, 1.1])
    advantages = torch.tensor([1.0, -1.0, 2.0, -1.0, 1.0])
    old_log_prob = torch.tensor([-1.0, 0.5, 2.0, 0.0, 3.0])
    log_prob = (old_log_prob + ratio.log()).requires_grad_(True)
    loss, metrics = grpo_loss(log_prob, old_log_prob, advantages, 0.2)
    # per element: clipped -1.2 (A>0, rho>1+eps), clipped 0.8 (A<0, rho<1-eps), -1.0, 1.5, -1.1
    torch.testing.assert_close(loss, torch.tensor(-0.2))
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([0.0, 0.0, -1.0, 1.5, -1.1]) / 5)
    torch.testing.assert_close(metrics["clipfrac"], torch.tensor(0.8))
    torch.testing.assert_close(metrics["approx_kl"], 0.5 * (ratio.log() ** 2).mean())
    torch.testing.assert_close(metrics["ratio_mean"], ratio.mean())
    torch.testing.assert_close(metrics["ratio_max"], torch.tensor(1.5))
    assert "kl" not in metrics and all(not m.requires_grad for m in metrics.values())


def test_grpo_loss_first_inner_step_and_kl():
    log_prob = torch.tensor([[-1.0, -2.0], [0.5, 0.25]])  # (B=2, K=2 trained steps)
    advantages = torch.tensor([1.0, -3.0])  # (B,) broadcast over steps
    loss, metrics = grpo_loss(
        log_prob, log_prob.clone(), advantages, 1e-4, kl=torch.tensor([0.1, 0.3]), kl_coef=0.5
    )
    torch.testing.assert_close(loss, torch.tensor(1.0 + 0.5 * 0.2))  # -mean(A) + kl_coef * mean(kl)
    assert metrics["ratio_mean"] == 1.0 and metrics["clipfrac"] == 0.0 and metrics["approx_kl"] == 0.0
    torch.testing.assert_close(metrics["kl"], torch.tensor(0.2))


def test_gaussian_kl_by_hand_and_against_torch():
    mean = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    ref = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    std = torch.tensor([[2.0], [1.0]])
    kl = gaussian_kl(mean, ref, std)
    torch.testing.assert_close(kl, torch.tensor([(1 + 4) / 8 / 3, (1 + 1 + 9) / 2 / 3]))
    normal = torch.distributions.Normal
    reference = torch.distributions.kl_divergence(
        normal(mean, std.expand_as(mean)), normal(ref, std.expand_as(ref))
    )
    torch.testing.assert_close(kl, reference.mean(dim=1))


def test_gaussian_kl_zero_std_is_zero_not_nan():
    kl = gaussian_kl(torch.ones(2, 3), torch.zeros(2, 3), torch.tensor([[0.0], [1.0]]))
    torch.testing.assert_close(kl, torch.tensor([0.0, 0.5]))
