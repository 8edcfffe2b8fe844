"""Statistics of scored samples: mean, std and 95% confidence interval; expected best-of-N.

Confidence intervals treat the *prompt* as the unit: the n samples of a prompt are averaged first and
the interval is Student's t over the P per-prompt means,

    mean ± t_{0.975, P-1} * std(per-prompt means) / sqrt(P),

which stays honest when samples of one prompt are correlated (with one sample per prompt it is the
usual interval over samples). ``std`` is the sample standard deviation over all P * n samples.

Best-of-N (``expected_best_of_n``): with n scored samples of a prompt sorted increasingly,
r_(1) <= ... <= r_(n), the expected maximum of N samples drawn without replacement from them is

    E[max_N] = sum_{i=N}^{n} C(i-1, N-1) / C(n, N) * r_(i),

an unbiased estimate of the model's best-of-N reward (the pass@k estimator, for real rewards). It is
non-decreasing in N, equals the plain mean at N = 1 and the maximum at N = n. ``estimator="first"``
instead takes the maximum of the first N samples (one draw, higher variance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ESTIMATORS = ("unbiased", "first")


def t_quantile(dof: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile (nan for dof < 1)."""
    if dof < 1:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, dof))


def summarize(per_prompt: Sequence[Sequence[float]]) -> dict:
    """mean, std, 95% CI (over prompts, see the module docstring), sem, numbers of samples and prompts."""
    groups = [np.asarray(values, dtype=float) for values in per_prompt if len(values)]
    if not groups:
        nan = float("nan")
        return {"mean": nan, "std": nan, "sem": nan, "ci95": [nan, nan], "n_samples": 0, "n_prompts": 0}
    flat = np.concatenate(groups)
    prompt_means = np.array([g.mean() for g in groups])
    p = len(prompt_means)
    mean = float(flat.mean())
    sem = float(prompt_means.std(ddof=1) / math.sqrt(p)) if p > 1 else float("nan")
    half = t_quantile(p - 1) * sem
    return {"mean": mean, "std": float(flat.std(ddof=1)) if len(flat) > 1 else float("nan"), "sem": sem,
            "ci95": [mean - half, mean + half], "n_samples": int(len(flat)), "n_prompts": p}


def expected_best_of_n(values: Sequence[float], n: int, estimator: str = "unbiased") -> float:
    """Expected best-of-``n`` reward of one prompt from its scored samples (see the module docstring)."""
    values = np.asarray(values, dtype=float)
    if not 1 <= n <= len(values):
        raise ValueError(f"best-of-{n} needs 1 <= N <= {len(values)} samples")
    if estimator == "first":
        return float(values[:n].max())
    if estimator != "unbiased":
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    ordered = np.sort(values)
    total = len(values)
    subsets = math.comb(total, n)  # exact integers: the ratios stay accurate for large n
    weights = np.array([math.comb(i - 1, n - 1) / subsets for i in range(n, total + 1)])
    return float((weights * ordered[n - 1:]).sum())


def n_values(n_max: int) -> list[int]:
    """1, 2, 4, ... up to n_max (n_max itself always included)."""
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    values, n = [], 1
    while n < n_max:
        values.append(n)
        n *= 2
    return values + [n_max]


def best_of_n_curve(per_prompt: Sequence[Sequence[float]], ns: Sequence[int],
                    estimator: str = "unbiased") -> list[dict]:
    """Per N: mean over prompts of the expected best-of-N reward, with its 95% CI over prompts."""
    curve = []
    for n in ns:
        per_prompt_best = [[expected_best_of_n(values, n, estimator)] for values in per_prompt]
        stats = summarize(per_prompt_best)
        curve.append({"n": int(n), "mean": stats["mean"], "sem": stats["sem"], "ci95": stats["ci95"]})
    return curve


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a markdown table ('n/a' for None / NaN)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"
