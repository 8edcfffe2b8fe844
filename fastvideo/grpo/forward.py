"""Forward-process objectives: learn from a reward with the flow-matching (denoising) loss on the final
samples, instead of the likelihood ratio of the sampling steps (``fastvideo.grpo.loss``). Pure torch.

Only each rollout sample's final clean latent x0 and its advantage A are kept. Training draws K
timesteps t and noises eps per sample and re-noises x0 with the model's forward process
(``FlowSampler.add_noise`` / ``DDIMSampler.add_noise``):

    flow (rectified flow, velocity v = eps - x0):   x_t = (1 - t) x0 + t eps,         x0_hat = x_t - t v
    diffusion (epsilon prediction):                 x_t = sqrt(abar) x0 + sqrt(1 - abar) eps,
                                                    x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)

The objectives (``grpo.objective``; ``OBJECTIVES``):

- ``nft``: DiffusionNFT (Zheng et al. 2025, "Online Diffusion Reinforcement with Forward Process",
  arXiv 2509.16117): optimality weight r = clip(A, -c, c) / (2c) + 1/2, implicit positive and negative
  policies v+ = beta v_theta + (1 - beta) v_old and v- = (1 + beta) v_old - beta v_theta, and the
  adaptively weighted x0 losses of both (``nft_loss``). Needs the frozen old policy v_old.
- ``awm``: Advantage Weighted Matching (Xue et al. 2025, "Advantage Weighted Matching: Aligning RL with
  Pretraining in Diffusion Models", arXiv 2509.25050): the flow-matching error as a log-likelihood
  l = -(t / p) ((MSE + e)^p - e^p), loss -A exp(l - sg l), i.e. gradient A grad l (``awm_loss``).
- ``rft``: rejection fine-tuning, the plain baseline: the flow-matching (denoising) loss on the samples
  whose advantage is positive (``rft_loss``); DiffusionNFT's positive-only ("one_only") variant.
- ``grpo``: the PPO-clipped likelihood ratio over the SDE transitions (``fastvideo.grpo.loss.grpo_loss``).

All math in float32. Per-sample quantities are means (not sums) over the non-batch dimensions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fastvideo.grpo.rollout import PURPOSE_FORWARD, SampleIds, sample_seed

AWM_POWER = 0.25
"""p of AWM's generalised-Huber log-likelihood (its published setting)."""
AWM_EPS = 1e-10
"""e of AWM's log-likelihood: keeps the derivative of (MSE + e)^p finite at MSE = 0."""
AWM_ADV_CLIP = 1.0
"""AWM clips |A| to 1 (its published setting)."""
NFT_MIN_WEIGHT = 1e-5
"""Lower bound of DiffusionNFT's adaptive weight mean|x0_hat - x0|."""


@dataclass(frozen=True)
class Objective:
    """What the trainer needs to know of a training objective."""

    name: str
    forward_process: bool
    """Trained on the re-noised final samples (no stored transitions); else on the SDE transitions."""
    old_policy: bool
    """Needs the frozen, soft-updated old policy (``fastvideo.training.optim.SoftCopy``)."""
    positive_only: bool
    """Trains only the samples whose advantage is positive."""
    timesteps: int
    """Published number of forward-process timesteps per sample (``grpo.forward_timesteps: 0``)."""


OBJECTIVE_SPECS = {spec.name: spec for spec in (
    Objective("grpo", forward_process=False, old_policy=False, positive_only=False, timesteps=0),
    Objective("nft", forward_process=True, old_policy=True, positive_only=False, timesteps=9),
    Objective("awm", forward_process=True, old_policy=False, positive_only=False, timesteps=6),
    Objective("rft", forward_process=True, old_policy=False, positive_only=True, timesteps=6),
)}
OBJECTIVES = tuple(OBJECTIVE_SPECS)
"""``grpo.objective``: grpo | nft | awm | rft."""


def _per_sample_mean(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


def _broadcast(values: Tensor, like: Tensor) -> Tensor:
    """(B,) values as (B, 1, ..., 1) against ``like``."""
    return values.float().reshape(-1, *([1] * (like.ndim - 1))).to(like.device)


# ----------------------------------------------------------------------------- forward process
def flow_add_noise(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """x_t = (1 - t) x0 + t eps, t = sigma (B,) (float32)."""
    t = _broadcast(sigma, x0)
    return (1.0 - t) * x0.float() + t * noise.float()


def ddim_add_noise(x0: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, abar (B,) (float32)."""
    a = _broadcast(alpha_bar, x0)
    return torch.sqrt(a) * x0.float() + torch.sqrt(1.0 - a) * noise.float()


@dataclass
class ForwardDraws:
    """The timesteps and noises of one training pass: K per sample."""

    steps: Tensor  # (B, K) long, sampler step indices
    noise: Tensor  # (B, K, *latent) float32


def forward_draws(ids: SampleIds, num_steps: int, k: int, latent_shape: Sequence[int], *, seed: int,
                  iteration: int, pass_index: int = 0, device=None) -> ForwardDraws:
    """K step indices of the sampler's schedule and K noises per sample, for training pass ``pass_index``.

    The steps are a random permutation of the S = ``num_steps`` sampling steps (DiffusionNFT trains
    on the sampler's own timesteps), repeated when K > S; each sample draws from a CPU generator
    seeded by ``sample_seed(seed, iteration, prompt, sample, PURPOSE_FORWARD + pass_index)``, so the
    draws do not depend on the batch composition or the number of ranks (and a resume redraws them).
    """
    steps, noises = [], []
    for p, s in zip(ids.prompt_index.tolist(), ids.sample_index.tolist()):
        gen = torch.Generator().manual_seed(sample_seed(seed, iteration, p, s, PURPOSE_FORWARD + pass_index))
        perms = torch.cat([torch.randperm(num_steps, generator=gen) for _ in range(-(-k // num_steps))])
        steps.append(perms[:k])
        noises.append(torch.randn((k, *latent_shape), generator=gen))
    if not steps:
        return ForwardDraws(torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k, *latent_shape, device=device))
    return ForwardDraws(torch.stack(steps), torch.stack(noises).to(device))


# ----------------------------------------------------------------------------- DiffusionNFT
def optimality_weight(advantages: Tensor, adv_clip: float) -> Tensor:
    """DiffusionNFT's optimality probability r = clip(A, -c, c) / (2c) + 1/2 in [0, 1] (c = ``adv_clip``;
    c = 5 gives r = A/10 + 1/2)."""
    return (advantages.float().clamp(-adv_clip, adv_clip) / (2.0 * adv_clip) + 0.5).clamp(0.0, 1.0)


def adaptive_x0_error(x0_pred: Tensor, x0: Tensor, min_weight: float = NFT_MIN_WEIGHT) -> Tensor:
    """DiffusionNFT's adaptively weighted x0 error per sample (B,):

        mean (x0_hat - x0)^2 / w,   w = sg(max(mean |x0_hat - x0|, min_weight))

    (means over the non-batch dims; the weight carries no gradient)."""
    diff = x0_pred.float() - x0.float()
    with torch.no_grad():
        weight = _per_sample_mean(diff.abs()).clamp(min=min_weight)
    return _per_sample_mean(diff**2) / weight


def implicit_policies(out: Tensor, old_out: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """DiffusionNFT's implicit positive and negative policies (the old prediction is a constant):

        v+ = beta v_theta + (1 - beta) v_old,    v- = (1 + beta) v_old - beta v_theta
    """
    old = old_out.detach().float()
    out = out.float()
    return beta * out + (1.0 - beta) * old, (1.0 + beta) * old - beta * out


def nft_loss(out: Tensor, old_out: Tensor, to_x0: Callable[[Tensor], Tensor], x0: Tensor, advantages: Tensor,
             *, beta: float = 1.0, adv_clip: float = 5.0) -> tuple[Tensor, dict[str, Tensor]]:
    """DiffusionNFT loss of a batch of (sample, timestep) items (arXiv 2509.16117, eq. 9 and its code):

        loss = mean_items (c / beta) [ r L(x0_hat(v+)) + (1 - r) L(x0_hat(v-)) ]

    with r = ``optimality_weight(A, c)``, c = ``adv_clip``, v+/v- = ``implicit_policies(out, old_out, beta)``,
    L = ``adaptive_x0_error`` against the clean sample ``x0``, and ``to_x0`` the model's x0 prediction
    from a model output at the item's x_t (``sampler.pred_x0``). ``out``: the trained policy's output
    (with gradient), ``old_out``: the old policy's (constant), ``x0`` (B, ...), ``advantages`` (B,).

    At theta = theta_old both implicit policies equal v_old, grad v+ = beta grad v and grad v- = -beta
    grad v, so the gradient is c (2r - 1) grad L(x0_hat(v_theta)) = clip(A, -c, c) grad L, whatever
    beta: the advantage-weighted (adaptively weighted) flow-matching gradient; with r = 1 for every item
    it is c times the flow-matching gradient.
    Metrics: ``policy_loss``, ``r_mean`` (mean r), ``positive_fraction`` (A > 0), ``old_deviation``
    (mean (v_theta - v_old)^2).
    """
    r = optimality_weight(advantages, adv_clip).to(out.device)
    positive, negative = implicit_policies(out, old_out, beta)
    loss_pos = adaptive_x0_error(to_x0(positive), x0)
    loss_neg = adaptive_x0_error(to_x0(negative), x0)
    loss = (adv_clip / beta * (r * loss_pos + (1.0 - r) * loss_neg)).mean()
    with torch.no_grad():
        metrics = {"policy_loss": loss.detach(), "r_mean": r.mean(),
                   "positive_fraction": (advantages > 0).float().mean(),
                   "old_deviation": ((out.float() - old_out.float()) ** 2).mean()}
    return loss, metrics


# ----------------------------------------------------------------------------- AWM
def matching_error(out: Tensor, target: Tensor) -> Tensor:
    """Flow-matching (denoising) error per sample (B,): mean (model output - target)^2, the target being
    the velocity eps - x0 (flow) or the noise eps (diffusion; ``sampler.output_target``)."""
    return _per_sample_mean((out.float() - target.float()) ** 2)


def awm_log_likelihood(out: Tensor, target: Tensor, noise_level: Tensor, *, power: float = AWM_POWER,
                       eps: float = AWM_EPS) -> Tensor:
    """AWM's per-sample log-likelihood surrogate (B,): l = -(t / p) ((MSE + e)^p - e^p), MSE =
    ``matching_error(out, target)``, t = the noise level (flow sigma; sqrt(1 - abar) for diffusion)."""
    mse = matching_error(out, target)
    t = noise_level.float().to(mse.device)
    return -(t / power) * ((mse + eps) ** power - eps**power)


def awm_loss(log_likelihood: Tensor, advantages: Tensor, *, adv_clip: float = AWM_ADV_CLIP
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """AWM loss (on-policy): mean -A exp(l - sg l) with |A| clipped to ``adv_clip``. Its value is -mean A
    and its gradient -mean A grad l: each sample's log-likelihood is raised in proportion to its advantage.
    Metrics: ``policy_loss``, ``log_likelihood`` (mean l), ``positive_fraction``."""
    adv = advantages.float().clamp(-adv_clip, adv_clip).to(log_likelihood.device)
    loss = (-adv * torch.exp(log_likelihood - log_likelihood.detach())).mean()
    with torch.no_grad():
        metrics = {"policy_loss": loss.detach(), "log_likelihood": log_likelihood.mean(),
                   "positive_fraction": (advantages > 0).float().mean()}
    return loss, metrics


# ----------------------------------------------------------------------------- rejection fine-tuning
def rft_loss(out: Tensor, target: Tensor, advantages: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Positive-only rejection fine-tuning: mean_items 1[A > 0] MSE(out, target) (``matching_error``):
    the plain flow-matching loss of the accepted samples; the others contribute 0. (The trainer passes
    only the samples with A > 0, so this is the mean over them.) Metrics: ``fm_loss`` (mean MSE of the
    accepted items), ``positive_fraction``."""
    mse = matching_error(out, target)
    accepted = (advantages > 0).float().to(mse.device)
    loss = (accepted * mse).mean()
    with torch.no_grad():
        metrics = {"fm_loss": (accepted * mse).sum() / accepted.sum().clamp(min=1.0),
                   "positive_fraction": accepted.mean()}
    return loss, metrics


def prediction_kl(out: Tensor, ref_out: Tensor) -> Tensor:
    """The forward objectives' regulariser to the reference policy, per sample (B,): mean (out - ref_out)^2
    (DiffusionNFT's ``||v_theta - v_ref||^2`` term; the reference output is a constant)."""
    return _per_sample_mean((out.float() - ref_out.detach().float()) ** 2)
