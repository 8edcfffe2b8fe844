"""Unit tests of the stateless stochastic steps in fastvideo.grpo.sde."""

import math

import pytest
import torch

from fastvideo.grpo.schedule import flow_sigmas
from fastvideo.grpo.sde import (
    SDE_TYPES,
    ddim_step,
    flow_step,
    gaussian_log_prob,
    pred_x0_ddim,
    pred_x0_flow,
)

STOCHASTIC = [("dance", 0.3), ("flow_grpo", 0.7), ("cps", 0.8)]


def _normal_reference(x, mean, std):
    """log N(x; mean, std^2) from torch.distributions, averaged over non-batch dims."""
    dims = tuple(range(1, x.ndim))
    return torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(x).mean(dim=dims)


def _inputs(batch=3, shape=(2, 4, 4), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(batch, *shape, generator=g).to(dtype)
    x = torch.randn(batch, *shape, generator=g).to(dtype)
    return v, x


@pytest.mark.parametrize("sde_type,eta", STOCHASTIC)
def test_flow_log_prob_matches_torch_normal(sde_type, eta):
    v, x = _inputs()
    out = flow_step(v, x, 0.6, 0.5, sde_type=sde_type, eta=eta, generator=torch.Generator().manual_seed(1))
    assert out.log_prob.shape == (3,) and out.std.shape == (3, 1, 1, 1)
    assert torch.all(out.std > 0)
    torch.testing.assert_close(out.log_prob, _normal_reference(out.prev_sample, out.mean, out.std))
    given = torch.randn_like(x)
    again = flow_step(v, x, 0.6, 0.5, sde_type=sde_type, eta=eta, prev_sample=given)
    assert torch.equal(again.prev_sample, given)
    torch.testing.assert_close(again.log_prob, _normal_reference(given, again.mean, again.std))


def test_ddim_log_prob_matches_torch_normal():
    eps, x = _inputs()
    out = ddim_step(eps, x, 0.3, 0.4, eta=1.0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out.log_prob, _normal_reference(out.prev_sample, out.mean, out.std))
    given = torch.randn_like(x)
    again = ddim_step(eps, x, 0.3, 0.4, eta=1.0, prev_sample=given)
    torch.testing.assert_close(again.log_prob, _normal_reference(given, again.mean, again.std))


def test_gaussian_log_prob_by_hand():
    x = torch.tensor([[1.0, 3.0]])
    value = gaussian_log_prob(x, torch.zeros(1, 2), torch.tensor([[2.0]]))
    by_hand = -0.5 * torch.log(torch.tensor(2 * torch.pi)) - torch.log(torch.tensor(2.0)) - (1 + 9) / 2 / 8
    torch.testing.assert_close(value, by_hand.reshape(1))


@pytest.mark.parametrize("sde_type,eta", STOCHASTIC + [("ddim", 1.0)])
def test_empirical_moments_match_mean_and_std(sde_type, eta):
    n = 100_000
    v = torch.full((n, 2), 0.7)
    x = torch.full((n, 2), -0.4)
    generator = torch.Generator().manual_seed(3)
    if sde_type == "ddim":
        out = ddim_step(v, x, 0.5, 0.7, eta=eta, generator=generator)
    else:
        out = flow_step(v, x, 0.8, 0.7, sde_type=sde_type, eta=eta, generator=generator)
    mean, std = out.mean[0, 0], out.std[0, 0]
    assert torch.allclose(out.mean, mean)
    torch.testing.assert_close(out.prev_sample.mean(), mean, atol=1e-2 * std.item(), rtol=0)
    torch.testing.assert_close(out.prev_sample.std(), std.reshape(()), rtol=1e-2, atol=0)


@pytest.mark.parametrize("sde_type", SDE_TYPES)
def test_eta_zero_is_the_euler_step(sde_type):
    v, x = _inputs()
    for sigma, sigma_next in [(1.0, 0.9), (0.5, 0.3), (0.2, 0.0)]:
        out = flow_step(v, x, sigma, sigma_next, sde_type=sde_type, eta=0.0)
        euler = x + (sigma_next - sigma) * v
        torch.testing.assert_close(out.prev_sample, euler, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.mean, euler, rtol=1e-5, atol=1e-6)
        assert torch.all(out.std == 0) and torch.all(out.log_prob == 0)


def test_ode_ignores_eta_and_is_deterministic():
    v, x = _inputs()
    out = flow_step(v, x, 0.5, 0.4, sde_type="ode", eta=0.7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.prev_sample, x - 0.1 * v)
    assert torch.all(out.log_prob == 0) and torch.all(out.std == 0)


def test_cps_final_step_is_deterministic_without_nan():
    v, x = _inputs()
    out = flow_step(v, x, 0.1, 0.0, sde_type="cps", eta=0.8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.prev_sample, pred_x0_flow(v, x, 0.1))
    assert torch.all(out.std == 0)
    assert torch.equal(out.log_prob, torch.zeros(3))
    again = flow_step(v, x, 0.1, 0.0, sde_type="cps", eta=0.8, prev_sample=out.prev_sample)
    assert torch.equal(again.log_prob, torch.zeros(3))


def test_zero_std_log_prob_has_finite_gradient():
    v, x = _inputs()
    v.requires_grad_(True)
    sigma_next = torch.tensor([0.0, 0.2, 0.0])
    sigma = torch.tensor([0.3, 0.3, 0.3])
    for prev_sample in (None, torch.randn_like(x)):
        v.grad = None
        out = flow_step(
            v,
            x,
            sigma,
            sigma_next,
            sde_type="cps",
            eta=0.8,
            noise=torch.randn_like(x),
            prev_sample=prev_sample,
        )
        assert out.log_prob[0] == 0 and out.log_prob[2] == 0 and out.log_prob[1] != 0
        out.log_prob.sum().backward()
        assert torch.isfinite(v.grad).all() and v.grad[1].abs().sum() > 0 and v.grad[0].abs().sum() == 0


def test_flow_grpo_first_step_at_sigma_one_is_finite():
    """At sigma = 1 the Flow-GRPO noise uses sigma_next in its denominator (documented choice)."""
    v, x = _inputs()
    out = flow_step(v, x, 1.0, 0.9, sde_type="flow_grpo", eta=0.7, noise=torch.zeros_like(x))
    expected_sigma_t = 0.7 * (1.0 / (1.0 - 0.9)) ** 0.5
    torch.testing.assert_close(out.std, torch.full((3, 1, 1, 1), expected_sigma_t * 0.1**0.5))
    assert torch.isfinite(out.mean).all() and torch.isfinite(out.log_prob).all()


def test_flow_grpo_mean_by_hand():
    v, x = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    sigma, sigma_next, a = 0.5, 0.25, 0.7
    sigma_t_sq = a**2 * sigma / (1 - sigma)
    delta = sigma_next - sigma
    mean = (
        1.0 * (1 + sigma_t_sq * delta / (2 * sigma))
        + 2.0 * (1 + sigma_t_sq * (1 - sigma) / (2 * sigma)) * delta
    )
    out = flow_step(v, x, sigma, sigma_next, sde_type="flow_grpo", eta=a, noise=torch.zeros(1, 1))
    torch.testing.assert_close(out.mean, torch.tensor([[mean]]))
    torch.testing.assert_close(out.std.reshape(()), torch.tensor((sigma_t_sq * 0.25) ** 0.5))


def test_dance_mean_by_hand():
    v, x = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    sigma, sigma_next, eta = 0.5, 0.25, 0.3
    x0_hat = 1.0 - sigma * 2.0
    score = -(1.0 - (1 - sigma) * x0_hat) / sigma**2
    delta = sigma_next - sigma
    mean = 1.0 + delta * 2.0 - 0.5 * eta**2 * score * delta
    out = flow_step(v, x, sigma, sigma_next, sde_type="dance", eta=eta, noise=torch.zeros(1, 1))
    torch.testing.assert_close(out.mean, torch.tensor([[mean]]))
    torch.testing.assert_close(out.std.reshape(()), torch.tensor(eta * 0.25**0.5))


def test_cps_mean_by_hand():
    v, x = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    sigma, sigma_next, a = 0.5, 0.25, 0.8
    std = sigma_next * math.sin(a * math.pi / 2)
    x0_hat, x1_hat = 1.0 - sigma * 2.0, 1.0 + (1 - sigma) * 2.0
    mean = (1 - sigma_next) * x0_hat + math.sqrt(sigma_next**2 - std**2) * x1_hat
    out = flow_step(v, x, sigma, sigma_next, sde_type="cps", eta=a, noise=torch.zeros(1, 1))
    torch.testing.assert_close(out.mean, torch.tensor([[mean]]))
    torch.testing.assert_close(out.std.reshape(()), torch.tensor(std))


@pytest.mark.parametrize("sde_type,eta", STOCHASTIC + [("ddim", 1.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_recompute_with_prev_sample_gives_identical_log_prob(sde_type, eta, dtype):
    v, x = _inputs(dtype=dtype)
    sigma, sigma_next = torch.tensor([0.9, 0.5, 0.3]), torch.tensor([0.8, 0.45, 0.1])

    def step(**kwargs):
        if sde_type == "ddim":
            return ddim_step(v, x, sigma * 0.5, sigma_next * 0.5 + 0.5, eta=eta, **kwargs)
        return flow_step(v, x, sigma, sigma_next, sde_type=sde_type, eta=eta, **kwargs)

    rollout = step(generator=torch.Generator().manual_seed(7))
    assert rollout.prev_sample.dtype == torch.float32 and rollout.log_prob.dtype == torch.float32
    recomputed = step(prev_sample=rollout.prev_sample)
    assert torch.equal(recomputed.log_prob, rollout.log_prob)
    assert torch.equal(torch.exp(recomputed.log_prob - rollout.log_prob), torch.ones(3))


def test_per_sample_times_match_scalar_times():
    v, x = _inputs()
    sigmas, sigmas_next = [0.9, 0.5, 0.3], [0.7, 0.4, 0.0]
    noise = torch.randn_like(x)
    for sde_type, eta in STOCHASTIC:
        batched = flow_step(
            v, x, torch.tensor(sigmas), torch.tensor(sigmas_next), sde_type=sde_type, eta=eta, noise=noise
        )
        for b in range(3):
            single = flow_step(
                v[b : b + 1],
                x[b : b + 1],
                sigmas[b],
                sigmas_next[b],
                sde_type=sde_type,
                eta=eta,
                noise=noise[b : b + 1],
            )
            torch.testing.assert_close(batched.prev_sample[b : b + 1], single.prev_sample)
            torch.testing.assert_close(batched.log_prob[b : b + 1], single.log_prob)


def test_per_sample_generators_make_noise_independent_of_the_batch():
    v, x = _inputs(batch=4)
    gens = [torch.Generator().manual_seed(100 + b) for b in range(4)]
    full = flow_step(v, x, 0.5, 0.4, sde_type="dance", eta=0.3, generator=gens)
    alone = flow_step(
        v[2:3], x[2:3], 0.5, 0.4, sde_type="dance", eta=0.3, generator=[torch.Generator().manual_seed(102)]
    )
    torch.testing.assert_close(full.prev_sample[2:3], alone.prev_sample)
    assert not torch.allclose(full.prev_sample[0], full.prev_sample[1])
    with pytest.raises(ValueError):
        flow_step(v, x, 0.5, 0.4, sde_type="dance", eta=0.3, generator=gens[:2])


def test_explicit_noise_is_used():
    v, x = _inputs()
    noise = torch.randn_like(x)
    out = flow_step(v, x, 0.5, 0.4, sde_type="dance", eta=0.3, noise=noise)
    torch.testing.assert_close(out.prev_sample, out.mean + out.std * noise)


def test_unknown_sde_type_and_bad_time_shape_raise():
    v, x = _inputs()
    with pytest.raises(ValueError):
        flow_step(v, x, 0.5, 0.4, sde_type="euler", eta=0.3)
    with pytest.raises(ValueError):
        flow_step(v, x, torch.tensor([0.5, 0.5]), 0.4, sde_type="dance", eta=0.3)
    with pytest.raises(ValueError):
        flow_step(v, x, 0.5, 0.4, sde_type="dance", eta=0.3, noise=torch.zeros(3, 1, 1, 1))


def test_pred_x0_helpers():
    v, x = _inputs()
    torch.testing.assert_close(pred_x0_flow(v, x, 0.3), x - 0.3 * v)
    alpha_bar = torch.tensor([0.2, 0.5, 0.9])
    expected = (x - (1 - alpha_bar).sqrt().view(-1, 1, 1, 1) * v) / alpha_bar.sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(pred_x0_ddim(v, x, alpha_bar), expected)


def _ddim_scheduler():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )
    scheduler.set_timesteps(50)
    return scheduler


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_reference_scheduler(eta):
    scheduler = _ddim_scheduler()
    eps, x = _inputs()
    noise = torch.randn_like(x)
    for index in [0, 10, 30, 49]:
        t = int(scheduler.timesteps[index])
        prev_t = t - 1000 // 50
        alpha_bar = scheduler.alphas_cumprod[t]
        alpha_bar_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        ours = ddim_step(eps, x, float(alpha_bar), float(alpha_bar_prev), eta=eta, noise=noise)
        kwargs = {"variance_noise": noise} if eta > 0 else {}
        reference = scheduler.step(eps, t, x, eta=eta, **kwargs).prev_sample
        torch.testing.assert_close(ours.prev_sample, reference, rtol=1e-5, atol=1e-5)


def test_flow_ode_trajectory_converges_to_the_exact_solution():
    """Gaussian data x0 ~ N(m, s^2): the exact flow maps noise z to m + s z. Euler error ~ 1/S."""
    m, s = 1.0, 0.5

    def velocity(x, sigma):
        a = 1.0 - sigma
        return -m + (sigma - a * s * s) / (a * a * s * s + sigma * sigma) * (x - a * m)

    z = torch.linspace(-3, 3, 13).reshape(13, 1)
    errors = []
    for num_steps in (40, 80, 160):
        sigmas = flow_sigmas(num_steps, 1.0).tolist()
        x = z.clone()
        for i in range(num_steps):
            x = flow_step(
                velocity(x, sigmas[i]), x, sigmas[i], sigmas[i + 1], sde_type="ode", eta=0.0
            ).prev_sample
        errors.append((x - (m + s * z)).abs().max().item())
    assert errors[2] < 0.02  # measured 0.014
    assert errors[0] / errors[1] > 1.8 and errors[1] / errors[2] > 1.8  # first order: halves
