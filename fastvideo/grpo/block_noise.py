"""Low-frequency exploration: SDE noise constant on f x f blocks of the latent grid.

Why: the score-function gradient of a Gaussian step is A * eps / std * d(mean)/d(theta), with eps
over all D latent elements. When the reward depends on a few coarse directions (how many shapes,
where, which colour), the other directions of eps only add variance to the estimate: with N samples
its cosine to the true gradient is of order sqrt(N / D) (docs/shapes_grpo_findings.md). Drawing the
noise in the subspace of block-constant fields shrinks D to D / f^2.

Let ``U`` be the nearest-neighbour upsampling of a coarse grid by f (``expand``) and
``R`` = f x f average pooling (``reduce``), so that ``R U = I`` and ``P = U R`` is the orthogonal
projection onto block-constant fields. A step draws

    z ~ N(0, I_d),   x' = mean + std * U z                       (per-element variance std^2)

so the noise covariance is std^2 * U U^T = std^2 f^2 P, and its log-density is that of the coarse
coordinates ``R x' ~ N(R mean, std^2 I_d)``:

    log p = mean_d [ -(R(x' - mean))^2 / (2 std^2) - log std - log sqrt(2 pi) ].

The fine-scale part of x' (``(I - P) x' = (I - P) mean``) is deterministic given x, like the ODE
steps outside a MixGRPO window: it carries no policy-gradient signal. For the DanceGRPO SDE the
marginal-preserving drift correction acts in the subspace only: ``-eta^2/2 * f^2 P(score) * Delta``
(the reverse SDE for a constant diffusion matrix eta^2 f^2 P). f = 1 is the i.i.d. step exactly.

Latents may be stored in a model's own layout (FLUX packs 2x2 patches into tokens): ``to_grid``
maps them to (B, ..., H, W) and ``from_grid`` back; both are the identity for (B, C, [T,] H, W).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK_NOISE_SDE = "dance"
"""The one SDE whose noise may be block-constant (its drift correction is derived for it)."""


def block_noise_problem(noise_block: int, sde_type: str) -> str | None:
    """Why ``noise_block`` cannot be used with ``sde_type`` (None when it can)."""
    if noise_block > 1 and sde_type != BLOCK_NOISE_SDE:
        return f"block noise (noise_block={noise_block}) needs the {BLOCK_NOISE_SDE!r} SDE, got {sde_type!r}"
    return None


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class BlockNoise:
    """The block-constant subspace of factor ``factor`` over the last two dims of the latent grid."""

    factor: int
    to_grid: Callable[[Tensor], Tensor] = field(default=_identity, compare=False)
    """Latents (model layout) -> grid (B, ..., H, W)."""
    from_grid: Callable[[Tensor], Tensor] = field(default=_identity, compare=False)
    """Grid (B, ..., H, W) -> latents (model layout)."""

    def __post_init__(self) -> None:
        if int(self.factor) != self.factor or self.factor < 1:
            raise ValueError(f"block noise factor must be a positive integer, got {self.factor!r}")

    def reduce(self, latents: Tensor) -> tuple[Tensor, torch.Size]:
        """Block averages ``R x``: (B, M, H/f, W/f) float32, and the grid shape for ``expand``."""
        grid = self.to_grid(latents.float().contiguous())
        if grid.ndim < 3:
            raise ValueError(f"block noise needs latents with a (H, W) grid, got grid shape {tuple(grid.shape)}")
        height, width = grid.shape[-2:]
        if height % self.factor or width % self.factor:
            raise ValueError(f"block noise factor {self.factor} must divide the latent grid {height}x{width} "
                             f"(sampler.noise_block)")
        flat = grid.reshape(grid.shape[0], -1, height, width)
        return F.avg_pool2d(flat, self.factor), grid.shape

    def expand(self, coarse: Tensor, grid_shape: torch.Size) -> Tensor:
        """``U z``: every coarse value repeated over its f x f block, in the latents' layout."""
        fine = coarse.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)
        return self.from_grid(fine.reshape(grid_shape).contiguous())

    def project(self, latents: Tensor) -> Tensor:
        """``P x = U R x``: the orthogonal projection onto block-constant fields."""
        return self.expand(*self.reduce(latents))

    def structure(self, white_noise: Tensor) -> Tensor:
        """Block noise ``U z`` from i.i.d. N(0, 1) ``white_noise`` of the latents' shape.

        ``z = f * R(white_noise)`` is exactly N(0, I_d) (a block mean of f^2 unit normals has variance
        1 / f^2), so the rollout's per-sample seeded draws keep their rank independence.
        """
        coarse, grid_shape = self.reduce(white_noise)
        return self.expand(coarse * self.factor, grid_shape)

    def log_prob(self, sample: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """(B,) log-density of the coarse coordinates, averaged over the d = D / f^2 of them."""
        residual, _ = self.reduce(sample - mean)
        std = std.reshape(-1, *([1] * (residual.ndim - 1))).float()
        elementwise = torch.distributions.Normal(torch.zeros_like(residual), std).log_prob(residual)
        return elementwise.reshape(residual.shape[0], -1).mean(dim=1)
