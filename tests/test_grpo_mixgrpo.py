"""MixGRPO pieces: sliding window, compressed tail, DPM-Solver++(2M), the per-iteration step plan."""

from __future__ import annotations

import math

import pytest
import torch

from fastvideo.grpo.dpm import dpm_solver_2m_step
from fastvideo.grpo.plan import iteration_plan
from fastvideo.grpo.rollout import make_sample_ids, rollout, train_step_subsets
from fastvideo.grpo.sampler import FlowSampler
from fastvideo.grpo.schedule import flow_sigmas
from fastvideo.grpo.window import SlidingWindow, compressed_tail


def test_progressive_window_moves_every_tau_and_rolls_back():
    w = SlidingWindow(num_steps=8, size=3, strategy="progressive", shift_every=2, stride=1)
    starts = [w.start(k) for k in range(12)]
    # l_max = 8 - 1 - 3 = 4: l = 0,0,1,1,2,2,3,3,4,4,0,0
    assert starts == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0, 0]
    assert all(max(w.steps(k)) <= 6 for k in range(40))  # never the last step (index 7)
    assert SlidingWindow(8, 3, "frozen").steps(17) == [0, 1, 2]
    rnd = SlidingWindow(8, 3, "random", seed=3)
    draws = [rnd.start(k) for k in range(50)]
    assert draws == [rnd.start(k) for k in range(50)] and set(draws) <= set(range(5)) and len(set(draws)) > 1
    with pytest.raises(ValueError, match="window size"):
        SlidingWindow(4, 4)


def test_compressed_tail_keeps_prefix_and_ends_at_zero():
    sigmas = flow_sigmas(20, 3.0)
    short = compressed_tail(sigmas, keep_until=6, ratio=0.2)
    assert torch.equal(short[:7], sigmas[:7])
    assert short[-1] == 0 and len(short) - 1 == 6 + math.ceil(0.2 * 14)
    assert torch.all(short[1:] < short[:-1])
    assert torch.equal(compressed_tail(sigmas, 6, 1.0), sigmas)


def _gaussian_velocity(m: float, s: float):
    """Exact rectified-flow velocity for data N(m, s^2): E[eps - x0 | x_sigma = x]."""
    def v(x, sigma):
        a = 1.0 - sigma
        return -m + (sigma - a * s * s) / (a * a * s * s + sigma * sigma) * (x - a * m)
    return v


def _integrate(n: int, solver: str, sigma_end: float = 0.1, m: float = 1.0, s: float = 0.5):
    """Integrate the probability-flow ODE from sigma 1 to sigma_end; return the error vs the exact solution."""
    v = _gaussian_velocity(m, s)
    x1 = torch.linspace(-2, 2, 9, dtype=torch.float64)
    sig = torch.linspace(1.0, sigma_end, n + 1, dtype=torch.float64).tolist()
    x, x0_prev = x1.clone(), None
    for i in range(n):
        x0 = x - sig[i] * v(x, sig[i])
        if solver == "dpm2":
            x_next = dpm_solver_2m_step(x, x0, sig[i], sig[i + 1], x0_prev=x0_prev,
                                        sigma_prev=sig[i - 1] if i else None).double()
        else:
            x_next = x + (sig[i + 1] - sig[i]) * v(x, sig[i])
        x, x0_prev = x_next, x0
    a = 1.0 - sigma_end
    exact = a * m + math.sqrt(a * a * s * s + sigma_end**2) * x1
    return float((x - exact).abs().max())


def test_dpm_solver_converges_at_second_order_and_euler_at_first():
    dpm = [_integrate(n, "dpm2") for n in (20, 40, 80)]
    euler = [_integrate(n, "euler") for n in (20, 40, 80)]
    dpm_orders = [math.log2(dpm[i] / dpm[i + 1]) for i in range(2)]
    euler_orders = [math.log2(euler[i] / euler[i + 1]) for i in range(2)]
    assert all(o > 1.8 for o in dpm_orders), dpm_orders
    assert all(0.8 < o < 1.3 for o in euler_orders), euler_orders
    assert dpm[-1] < euler[-1] / 10


def test_dpm_first_order_step_equals_euler():
    x, v = torch.randn(5), torch.randn(5)
    sigma, sigma_next = 0.7, 0.55
    x0 = x - sigma * v
    torch.testing.assert_close(dpm_solver_2m_step(x, x0, sigma, sigma_next), x + (sigma_next - sigma) * v)
    torch.testing.assert_close(dpm_solver_2m_step(x, x0, sigma, 0.0), x0)


def test_plan_without_window_trains_a_fraction_of_all_steps():
    base = FlowSampler.build(10, 3.0, "dance", 0.3)
    plan = iteration_plan(base, None, 5, timestep_fraction=0.6)
    assert plan.sampler is base and plan.stochastic_steps is None and plan.train_candidates is None
    assert plan.train_fraction == 0.6 and not plan.dpm_steps


def test_flash_plan_compresses_after_window_and_uses_dpm():
    base = FlowSampler.build(20, 3.0, "dance", 0.3)
    window = SlidingWindow(20, 4, "frozen")
    plan = iteration_plan(base, window, 0, timestep_fraction=0.6, ode_solver="dpm2", flash_ratio=0.2)
    assert plan.stochastic_steps == {0, 1, 2, 3} and plan.train_candidates == [0, 1, 2, 3]
    assert plan.num_steps == 4 + math.ceil(0.2 * 16)
    assert plan.dpm_steps == set(range(4, plan.num_steps))
    torch.testing.assert_close(plan.sampler.sigmas[:5], base.sigmas[:5])


def test_window_rollout_stores_and_trains_only_window_steps():
    base = FlowSampler.build(8, 3.0, "dance", 0.5)
    window = SlidingWindow(8, 2, "progressive", shift_every=1)
    plan = iteration_plan(base, window, 3, timestep_fraction=0.6, ode_solver="dpm2", flash_ratio=0.5)
    ids = make_sample_ids([0, 1], 3)
    steps = train_step_subsets(ids, plan.num_steps, plan.train_fraction, seed=0, iteration=3,
                               candidates=plan.train_candidates)
    assert torch.equal(steps, torch.tensor([[3, 4]] * 6))
    calls = []

    def predict(x, t, rows):
        calls.append(float(t[0]))
        return -x + 0.1 * rows.float().reshape(-1, 1)

    ro = rollout(predict, plan.sampler, torch.randn(6, 4), ids, steps, seed=0, iteration=3,
                 stochastic_steps=plan.stochastic_steps, dpm_steps=plan.dpm_steps)
    assert len(calls) == plan.num_steps < base.num_steps
    assert ro.latents.shape == (6, 2, 4) and torch.all(ro.log_probs != 0)
    # recomputing the stored window steps gives the rollout's log-probs (ratio 1)
    for j in range(2):
        x = ro.latents[:, j]
        rec = plan.sampler.step(steps[:, j], predict(x, ro.timesteps[:, j], ids.local_prompt), x,
                                prev_sample=ro.next_latents[:, j])
        torch.testing.assert_close(rec.log_prob, ro.log_probs[:, j])


def test_best_of_n_subset_keeps_top_and_bottom_per_group():
    from fastvideo.grpo.subset import best_and_worst_indices

    adv = torch.tensor([0.1, 2.0, -1.0, 0.5, -3.0, 1.0,   # group 0
                        5.0, -5.0, 0.0, 1.0, -1.0, 2.0])  # group 1
    idx = best_and_worst_indices(adv, 6, 4)
    assert idx.tolist() == [1, 2, 4, 5, 6, 7, 10, 11]
    assert best_and_worst_indices(adv, 6, 3).tolist() == [1, 4, 5, 6, 7, 11]
    assert torch.equal(best_and_worst_indices(adv, 6, 0), torch.arange(12))
