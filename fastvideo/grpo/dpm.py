"""Second-order multistep DPM-Solver++ (2M) for rectified-flow ODEs (MixGRPO-Flash).

With x_sigma = alpha * x0 + sigma * eps, alpha = 1 - sigma, and log-SNR lambda = log(alpha / sigma),
the data-prediction update from sigma_i to sigma_{i+1} is (Lu et al., DPM-Solver++):

    h     = lambda_{i+1} - lambda_i
    x'    = (sigma_{i+1} / sigma_i) * x  -  alpha_{i+1} * (exp(-h) - 1) * D
    D     = x0_i                                         (first order; equals the Euler step)
    D     = (1 + 1/(2r)) * x0_i - 1/(2r) * x0_{i-1},  r = h_{i-1} / h_i   (second order, 2M)

where x0_i = x - sigma_i * v is the model's data prediction. A step to sigma = 0 returns D
(first order there: lower-order final step). All math in fp32.
"""

from __future__ import annotations

import math

from torch import Tensor


def _log_snr(sigma: float) -> float:
    """lambda = log((1 - sigma) / sigma)."""
    return math.log((1.0 - sigma) / sigma)


def dpm_solver_2m_step(sample: Tensor, x0: Tensor, sigma: float, sigma_next: float, *,
                       x0_prev: Tensor | None = None, sigma_prev: float | None = None) -> Tensor:
    """One DPM-Solver++(2M) step; first order when no previous data prediction is given."""
    sample, x0 = sample.float(), x0.float()
    if sigma_next <= 0.0:
        return x0
    if sigma >= 1.0:  # lambda(1) = -inf: the first step from pure noise is the (exact) Euler step
        return (sigma_next / sigma) * sample + (1.0 - sigma_next / sigma) * x0
    h = _log_snr(sigma_next) - _log_snr(sigma)
    data = x0
    if x0_prev is not None and sigma_prev is not None and sigma_prev < 1.0:
        r = (_log_snr(sigma) - _log_snr(sigma_prev)) / h
        data = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev.float()
    alpha_next = 1.0 - sigma_next
    return (sigma_next / sigma) * sample - alpha_next * math.expm1(-h) * data
