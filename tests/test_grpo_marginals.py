"""Marginal preservation: samplers driven by the exact model of Gaussian data land on the data law.

Data x0 ~ N(m, s^2) per element. Flow: x_sigma = (1 - sigma) x0 + sigma eps, and with a = 1 - sigma
the exact velocity E[eps - x0 | x_sigma = x] is linear in x:

    v(x, sigma) = -m + (sigma - a s^2) / (a^2 s^2 + sigma^2) * (x - a m)

Diffusion: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, exact eps_hat(x) = sqrt(1 - ab) / (ab s^2 + 1 - ab) * (x - sqrt(ab) m).
10^5 trajectories from the exact initial law must end on the exact final law: mean and variance within
2% and a Kolmogorov-Smirnov test that does not reject at 1% (fixed seeds).
"""

import pytest
import torch
from scipy import stats

from fastvideo.grpo.schedule import ddim_schedule, flow_sigmas, scaled_linear_alphas_cumprod
from fastvideo.grpo.sde import ddim_step, flow_step

DATA_MEAN, DATA_STD = 1.0, 0.5
NUM_SAMPLES = 100_000


def exact_velocity(x: torch.Tensor, sigma: float, data_std: float = DATA_STD) -> torch.Tensor:
    a = 1.0 - sigma
    return -DATA_MEAN + (sigma - a * data_std**2) / (a * a * data_std**2 + sigma * sigma) * (
        x - a * DATA_MEAN
    )


def exact_epsilon(x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    return (
        (1 - alpha_bar) ** 0.5 / (alpha_bar * DATA_STD**2 + 1 - alpha_bar) * (x - alpha_bar**0.5 * DATA_MEAN)
    )


def assert_gaussian(samples: torch.Tensor, mean: float, var: float) -> None:
    empirical_mean, empirical_var = samples.mean().item(), samples.var().item()
    assert abs(empirical_mean - mean) <= 0.02 * abs(mean), f"mean {empirical_mean:.4f} vs {mean:.4f}"
    assert abs(empirical_var - var) <= 0.02 * var, f"variance {empirical_var:.4f} vs {var:.4f}"
    standardised = ((samples.double() - mean) / var**0.5).numpy()
    p_value = stats.kstest(standardised, "norm").pvalue
    assert p_value > 0.01, f"KS rejects N({mean}, {var}): p = {p_value:.3g}"


def run_flow(sde_type: str, eta: float, num_steps: int, shift: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    sigmas = flow_sigmas(num_steps, shift).double().tolist()
    x = torch.randn(NUM_SAMPLES, generator=generator)
    for i in range(num_steps):
        velocity = exact_velocity(x, sigmas[i])
        x = flow_step(
            velocity, x, sigmas[i], sigmas[i + 1], sde_type=sde_type, eta=eta, generator=generator
        ).prev_sample
    return x


CPS_REASON = (
    "CPS re-noises a fixed fraction sin(a*pi/2) of the noise at every step around the posterior mean "
    "x0_hat = E[x0|x]; the posterior spread of x0 is lost each step, so marginals shrink and do not "
    "converge with more steps (measured, m=1, s=0.5, shift 1, 200 steps: variance -16.4% (a=0.5), -36.2% "
    "(a=0.8), KS p < 1e-40; a=0.8: -39% at 50 and -37% at 100 steps). It is exact only for point-mass data."
)


@pytest.mark.parametrize(
    "sde_type,eta",
    [
        ("ode", 0.0),
        ("dance", 0.3),
        ("dance", 0.7),
        ("flow_grpo", 0.5),
        ("flow_grpo", 0.7),
        pytest.param("cps", 0.5, marks=pytest.mark.xfail(strict=True, reason=CPS_REASON)),
        pytest.param("cps", 0.8, marks=pytest.mark.xfail(strict=True, reason=CPS_REASON)),
    ],
)
def test_flow_sde_preserves_gaussian_marginals(sde_type, eta):
    samples = run_flow(sde_type, eta, num_steps=200, shift=1.0)
    assert_gaussian(samples, DATA_MEAN, DATA_STD**2)


def test_shifted_schedule_dance_preserves_marginals():
    samples = run_flow("dance", 0.7, num_steps=400, shift=3.0, seed=1)
    assert_gaussian(samples, DATA_MEAN, DATA_STD**2)


@pytest.mark.parametrize("eta", [0.5, 0.8])
def test_cps_is_exact_for_point_mass_data_at_every_step(eta):
    """With x0 = m fixed, x0_hat is exact and every CPS step lands on N((1 - sigma') m, sigma'^2)."""
    generator = torch.Generator().manual_seed(2)
    sigmas = flow_sigmas(8, 3.0).double().tolist()
    x = torch.randn(NUM_SAMPLES, generator=generator)
    for i in range(7):
        velocity = exact_velocity(x, sigmas[i], data_std=0.0)
        x = flow_step(
            velocity, x, sigmas[i], sigmas[i + 1], sde_type="cps", eta=eta, generator=generator
        ).prev_sample
        assert_gaussian(x, (1 - sigmas[i + 1]) * DATA_MEAN, sigmas[i + 1] ** 2)


@pytest.mark.slow
@pytest.mark.parametrize("eta,num_steps,steps_offset", [(0.0, 500, 1), (1.0, 1000, 0)])
def test_ddim_preserves_gaussian_marginals(eta, num_steps, steps_offset):
    """The scaled-linear schedule needs many steps: the first-order error of the variance is -9% (eta 0)
    and -18% (eta 1) at 50 steps, -1.0% / -1.6% at 500 / 1000 steps (exact linear-Gaussian recursion)."""
    schedule = ddim_schedule(scaled_linear_alphas_cumprod(), num_steps, steps_offset=steps_offset)
    alpha_bar = schedule.alpha_bar.double().tolist()
    alpha_bar_prev = schedule.alpha_bar_prev.double().tolist()
    generator = torch.Generator().manual_seed(3)
    start = alpha_bar[0]
    x = start**0.5 * DATA_MEAN + (start * DATA_STD**2 + 1 - start) ** 0.5 * torch.randn(
        NUM_SAMPLES, generator=generator
    )
    for i in range(num_steps):
        x = ddim_step(
            exact_epsilon(x, alpha_bar[i]), x, alpha_bar[i], alpha_bar_prev[i], eta=eta, generator=generator
        ).prev_sample
    final = alpha_bar_prev[-1]
    assert_gaussian(x, final**0.5 * DATA_MEAN, final * DATA_STD**2 + 1 - final)
