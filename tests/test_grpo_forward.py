"""The forward-process objectives (fastvideo/grpo/forward.py): hand-computed losses on tiny tensors, the
gradients the papers state (NFT at theta = theta_old, AWM = A grad l), the forward process against the
samplers' x0 prediction, the per-sample draws, and the trained-sample selection (fastvideo/grpo/subset.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from fastvideo.grpo import forward as fwd
from fastvideo.grpo.rollout import make_sample_ids
from fastvideo.grpo.sampler import DDIMSampler, FlowSampler
from fastvideo.grpo.schedule import scaled_linear_alphas_cumprod
from fastvideo.grpo.subset import constant_groups, train_selection

T = torch.tensor


# ----------------------------------------------------------------------------- hand-computed values
def test_optimality_weight_is_a_over_2c_plus_half_clipped():
    adv = T([-7.0, -5.0, 0.0, 2.5, 5.0, 9.0])
    assert fwd.optimality_weight(adv, 5.0).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
    assert fwd.optimality_weight(T([1.0]), 2.0).tolist() == [0.75]


def test_adaptive_x0_error_by_hand_and_its_weight_carries_no_gradient():
    x0 = T([[1.0, 0.0]])
    pred = T([[1.0, 1.0]], requires_grad=True)  # error (0, 1): mean square 0.5, mean |.| 0.5
    value = fwd.adaptive_x0_error(pred, x0)
    assert value.tolist() == [1.0]
    value.sum().backward()
    # d/dpred mean(e^2) / w with w constant: 2 e / (n w) = (0, 2 / (2 * 0.5)) = (0, 2)
    assert pred.grad.tolist() == [[0.0, 2.0]]
    assert fwd.adaptive_x0_error(x0.clone(), x0).tolist() == [0.0]  # exact: 0 / 1e-5, no NaN


def _nft_case():
    """Two flow samples: (t 0.5, A 2.5 -> r 0.75) and (t 1, A -5 -> r 0)."""
    t = T([0.5, 1.0])
    x_t = T([[1.0, 1.0], [2.0, 0.0]])
    x0 = T([[1.0, 0.0], [0.0, 2.0]])
    out = T([[0.0, 2.0], [1.0, -1.0]])
    old = T([[0.0, 1.0], [1.0, -2.0]])
    adv = T([2.5, -5.0])
    return t, x_t, x0, out, old, adv


@pytest.mark.parametrize(("beta", "expected"), [
    # beta 1, sample 1: v+ = (0, 2) -> x0_hat (1, 0), L+ = 0; v- = 2 old - v = (0, 0) -> x0_hat (1, 1), L- = 0.5 / 0.5 = 1;
    #   5 * (0.75 * 0 + 0.25 * 1) = 1.25. Sample 2: v- = (1, -3) -> x0_hat (1, 3), error (1, 1), L- = 1; 5 * 1 = 5.
    (1.0, (1.25 + 5.0) / 2),
    # beta 0.5, sample 1: v+ = (0, 1.5) -> error (0, 0.25): 0.03125 / 0.125 = 0.25; v- = (0, 0.5) -> error (0, 0.75):
    #   0.28125 / 0.375 = 0.75; 10 * (0.75 * 0.25 + 0.25 * 0.75) = 3.75. Sample 2: v- = (1, -2.5) -> x0_hat (1, 2.5),
    #   error (1, 0.5): 0.625 / 0.75; 10 * 0.625 / 0.75 = 8.3333.
    (0.5, (3.75 + 10 * 0.625 / 0.75) / 2),
])
def test_nft_loss_by_hand(beta, expected):
    t, x_t, x0, out, old, adv = _nft_case()
    loss, metrics = fwd.nft_loss(out, old, lambda v: x_t - t[:, None] * v, x0, adv, beta=beta, adv_clip=5.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["r_mean"].item() == pytest.approx(0.375)
    assert metrics["positive_fraction"].item() == 0.5
    assert metrics["old_deviation"].item() == pytest.approx((0 + 1 + 0 + 1) / 4)


def test_implicit_policies_by_hand():
    pos, neg = fwd.implicit_policies(T([2.0]), T([1.0]), 0.25)
    assert pos.tolist() == [1.25] and neg.tolist() == [0.75]  # 0.25*2 + 0.75*1; 1.25*1 - 0.25*2


def test_awm_log_likelihood_and_loss_by_hand():
    target = torch.zeros(2, 2)
    out = T([[0.25, -0.25], [1.0, -1.0]])  # MSE 0.0625 and 1: (MSE)^(1/4) = 0.5 and 1
    t = T([0.5, 1.0])
    ell = fwd.awm_log_likelihood(out, target, t)
    eps_p = 1e-10**0.25
    torch.testing.assert_close(ell, T([-(0.5 / 0.25) * (0.5 - eps_p), -(1.0 / 0.25) * (1.0 - eps_p)]),
                               rtol=1e-6, atol=1e-6)
    loss, metrics = fwd.awm_loss(ell, T([2.0, -0.5]))
    assert loss.item() == pytest.approx(-(1.0 - 0.5) / 2)  # -mean clip(A, -1, 1), exp(0) = 1
    assert metrics["positive_fraction"].item() == 0.5
    assert metrics["log_likelihood"].item() == pytest.approx(ell.mean().item())


def test_rft_loss_is_the_matching_error_of_the_positive_samples_by_hand():
    out = T([[1.0, 0.0], [2.0, 2.0], [0.5, 0.0]])
    target = torch.zeros(3, 2)  # MSE 0.5, 4, 0.125
    loss, metrics = fwd.rft_loss(out, target, T([1.0, -1.0, 0.5]))
    assert loss.item() == pytest.approx((0.5 + 0.125) / 3)
    assert metrics["fm_loss"].item() == pytest.approx((0.5 + 0.125) / 2)
    assert metrics["positive_fraction"].item() == pytest.approx(2 / 3)


def test_prediction_kl_by_hand():
    assert fwd.prediction_kl(T([[1.0, 3.0]]), T([[0.0, 1.0]])).tolist() == [2.5]


# ----------------------------------------------------------------------------- gradients
class _Linear(torch.nn.Module):
    """v_theta(x_t) = W x_t + b on flattened latents of 3 elements."""

    def __init__(self, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(3, 3, generator=gen) * 0.5)
        self.b = torch.nn.Parameter(torch.randn(3, generator=gen) * 0.1)

    def forward(self, x):
        return x @ self.w.T + self.b


def _flow_batch(n=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(n, 3, generator=gen), torch.randn(n, 3, generator=gen)
    t = torch.rand(n, generator=gen) * 0.8 + 0.1
    return x0, eps, t, fwd.flow_add_noise(x0, eps, t)


def _grad(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()])


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_nft_gradient_at_the_old_policy_is_the_advantage_weighted_flow_matching_gradient(beta):
    model = _Linear()
    old = copy.deepcopy(model).requires_grad_(False)
    x0, eps, t, x_t = _flow_batch()
    adv = T([2.0, -1.0, 7.0, 0.5])  # 7 is clipped to c = 5

    def to_x0(v):
        return x_t - t[:, None] * v

    loss, _ = fwd.nft_loss(model(x_t), old(x_t), to_x0, x0, adv, beta=beta, adv_clip=5.0)
    nft = _grad(model, loss)
    weighted = (adv.clamp(-5, 5) * fwd.adaptive_x0_error(to_x0(model(x_t)), x0)).mean()
    expected = _grad(model, weighted)
    assert expected.norm() > 0
    torch.testing.assert_close(nft, expected, rtol=1e-5, atol=1e-7)


def test_nft_gradient_with_r_one_is_proportional_to_the_flow_matching_gradient():
    """r = 1 (A >= c), beta 1, away from the old policy: (c / w) grad mean (x0_hat - x0)^2 and, since
    x0_hat - x0 = t (eps - x0 - v), that is c t^2 / w times the flow-matching gradient."""
    model, old = _Linear(), _Linear(seed=5).requires_grad_(False)
    x0, eps, t, x_t = _flow_batch(n=1)
    x0_hat = x_t - t[:, None] * model(x_t)
    weight = (x0_hat - x0).abs().mean().item()
    loss, _ = fwd.nft_loss(model(x_t), old(x_t), lambda v: x_t - t[:, None] * v, x0, T([5.0]), beta=1.0, adv_clip=5.0)
    nft = _grad(model, loss)
    fm = _grad(model, fwd.matching_error(model(x_t), eps - x0).mean())
    torch.testing.assert_close(nft, 5.0 * t.item() ** 2 / weight * fm, rtol=1e-5, atol=1e-7)


def test_awm_gradient_is_advantage_times_the_log_likelihood_gradient():
    model = _Linear()
    x0, eps, t, x_t = _flow_batch()
    adv = T([0.7, -0.3, 2.0, -4.0])  # clipped to [-1, 1]
    loss, _ = fwd.awm_loss(fwd.awm_log_likelihood(model(x_t), eps - x0, t), adv)
    awm = _grad(model, loss)
    expected = _grad(model, -(adv.clamp(-1, 1) * fwd.awm_log_likelihood(model(x_t), eps - x0, t)).mean())
    assert expected.norm() > 0
    torch.testing.assert_close(awm, expected, rtol=1e-6, atol=1e-8)
    # and the gradient raises the log-likelihood of the positive samples: one small step along it
    single, _ = fwd.awm_loss(fwd.awm_log_likelihood(model(x_t[:1]), (eps - x0)[:1], t[:1]), T([1.0]))
    grad = _grad(model, single)
    before = fwd.awm_log_likelihood(model(x_t[:1]), (eps - x0)[:1], t[:1]).item()
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            p -= 1e-3 * grad[offset:offset + p.numel()].reshape(p.shape)
            offset += p.numel()
    assert fwd.awm_log_likelihood(model(x_t[:1]), (eps - x0)[:1], t[:1]).item() > before


# ----------------------------------------------------------------------------- the forward process
def test_add_noise_by_hand():
    assert fwd.flow_add_noise(T([[2.0]]), T([[-1.0]]), T([0.25])).tolist() == [[1.25]]  # 0.75*2 - 0.25
    assert fwd.ddim_add_noise(T([[2.0]]), T([[-1.0]]), T([0.64])).tolist() == [[pytest.approx(1.0)]]  # 0.8*2 - 0.6


def _samplers():
    flow = FlowSampler.build(6, 3.0, "ode", 0.0)
    ddim = DDIMSampler.build(scaled_linear_alphas_cumprod(), 6, 0.0)
    return [flow, ddim]


@pytest.mark.parametrize("sampler", _samplers(), ids=["flow", "ddim"])
def test_the_exact_output_target_recovers_x0_through_the_samplers_pred_x0(sampler):
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 2, 3, 3, generator=gen), torch.randn(6, 2, 3, 3, generator=gen)
    steps = torch.arange(6)
    x_t = sampler.add_noise(steps, x0, eps)
    torch.testing.assert_close(sampler.pred_x0(steps, sampler.output_target(steps, x0, eps), x_t), x0,
                               rtol=1e-4, atol=1e-4)
    level = sampler.noise_level(steps, 6)
    assert level.shape == (6,) and bool((level > 0).all()) and bool((level <= 1).all())
    torch.testing.assert_close(x_t - sampler.add_noise(steps, x0, torch.zeros_like(eps)),
                               level.reshape(-1, 1, 1, 1) * eps, rtol=1e-5, atol=1e-6)


def test_forward_draws_are_per_sample_and_cover_the_schedule():
    ids = make_sample_ids([0, 1], 3)
    a = fwd.forward_draws(ids, 4, 6, (2, 2), seed=1, iteration=2)
    assert a.steps.shape == (6, 6) and a.noise.shape == (6, 6, 2, 2)
    for row in a.steps:  # K = 6 > S = 4: one full permutation, then two more steps
        assert sorted(row[:4].tolist()) == [0, 1, 2, 3] and set(row[4:].tolist()) <= {0, 1, 2, 3}
    alone = fwd.forward_draws(make_sample_ids([1], 3), 4, 6, (2, 2), seed=1, iteration=2)
    assert torch.equal(alone.steps, a.steps[3:]) and torch.equal(alone.noise, a.noise[3:])  # batch-independent
    other_pass = fwd.forward_draws(ids, 4, 6, (2, 2), seed=1, iteration=2, pass_index=1)
    assert not torch.equal(other_pass.noise, a.noise)
    assert not torch.equal(a.noise[0], a.noise[1])  # samples of a group differ


def test_objective_specs():
    assert fwd.OBJECTIVES == ("grpo", "nft", "awm", "rft")
    assert [fwd.OBJECTIVE_SPECS[o].timesteps for o in ("nft", "awm")] == [9, 6]
    assert fwd.OBJECTIVE_SPECS["nft"].old_policy and fwd.OBJECTIVE_SPECS["rft"].positive_only
    assert not fwd.OBJECTIVE_SPECS["grpo"].forward_process


# ----------------------------------------------------------------------------- trained-sample selection
def test_train_selection_drops_constant_groups_and_keeps_positive_advantages():
    rewards = T([1.0, 1.0, 1.0, 0.2, 0.5, 0.9, 0.3, 0.3, 0.3])
    adv = T([0.0, 0.0, 0.0, -1.0, 0.1, 0.9, 0.0, 0.0, 0.0])
    assert constant_groups(rewards, 3).tolist() == [True, False, True]
    assert train_selection(adv, rewards, 3) is None
    assert train_selection(adv, rewards, 3, drop_constant_groups=True).tolist() == [3, 4, 5]
    assert train_selection(adv, rewards, 3, positive_only=True).tolist() == [4, 5]
    assert train_selection(adv, rewards, 3, best_of=2, drop_constant_groups=True).tolist() == [3, 5]
    assert train_selection(adv, T([0.0] * 9), 3, drop_constant_groups=True).tolist() == []
