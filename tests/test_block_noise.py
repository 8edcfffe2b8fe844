"""Low-frequency (block) exploration noise: subspace algebra, log-prob, ratio 1, marginals, FLUX layout."""

from __future__ import annotations

import pytest
import torch

from fastvideo.grpo.block_noise import BlockNoise
from fastvideo.grpo.sde import flow_step
from tests.test_grpo_marginals import DATA_MEAN, DATA_STD, assert_gaussian, exact_velocity


def _inputs(shape=(3, 4, 8, 8), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen), torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)


def test_reduce_expand_is_an_orthogonal_projection():
    block = BlockNoise(2)
    x, y, _ = _inputs()
    coarse, grid = block.reduce(x)
    assert coarse.shape == (3, 4, 4, 4)
    torch.testing.assert_close(block.reduce(block.expand(coarse, grid))[0], coarse)  # R U = I
    px = block.project(x)
    torch.testing.assert_close(block.project(px), px)  # idempotent
    torch.testing.assert_close((px * y).sum(), (x * block.project(y)).sum())  # self-adjoint
    assert torch.equal(px[..., 0::2, 0::2], px[..., 1::2, 1::2])  # constant on blocks


def test_structured_noise_is_block_constant_and_unit_variance():
    block = BlockNoise(4)
    white = torch.randn(20_000, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    noise = block.structure(white)
    assert torch.equal(noise[:, :, :4, :4].amin((-1, -2)), noise[:, :, :4, :4].amax((-1, -2)))
    assert abs(noise.var().item() - 1.0) < 0.03 and abs(noise.mean().item()) < 0.02


def test_factor_one_is_the_iid_step():
    v, x, noise = _inputs()
    plain = flow_step(v, x, 0.7, 0.6, sde_type="dance", eta=0.5, noise=noise)
    block = flow_step(v, x, 0.7, 0.6, sde_type="dance", eta=0.5, noise=noise, block_noise=BlockNoise(1))
    for a, b in zip(plain, block):
        torch.testing.assert_close(a, b)


def test_log_prob_is_the_coarse_gaussian_density_and_ratio_is_one():
    block = BlockNoise(2)
    v, x, noise = _inputs()
    out = flow_step(v, x, 0.7, 0.6, sde_type="dance", eta=0.5, noise=noise, block_noise=block)
    coarse_prev, _ = block.reduce(out.prev_sample)
    coarse_mean, _ = block.reduce(out.mean)
    std = out.std.reshape(-1, 1, 1, 1)
    expected = torch.distributions.Normal(coarse_mean, std).log_prob(coarse_prev).reshape(3, -1).mean(1)
    torch.testing.assert_close(out.log_prob, expected)
    again = flow_step(v, x, 0.7, 0.6, sde_type="dance", eta=0.5, prev_sample=out.prev_sample, block_noise=block)
    assert torch.equal(again.log_prob, out.log_prob)
    # the fine-scale part of the step is deterministic: (I - P)(x' - mean) = 0
    residual = out.prev_sample - out.mean
    torch.testing.assert_close(residual, block.project(residual))


def test_log_prob_gradient_only_sees_the_coarse_mean():
    block = BlockNoise(2)
    v, x, noise = _inputs()
    out = flow_step(v, x, 0.7, 0.6, sde_type="dance", eta=0.5, noise=noise, block_noise=block)
    v_fine = v.clone().requires_grad_(True)
    flow_step(v_fine, x, 0.7, 0.6, sde_type="dance", eta=0.5, prev_sample=out.prev_sample,
              block_noise=block).log_prob.sum().backward()
    grad = v_fine.grad
    torch.testing.assert_close(grad, block.project(grad))  # no gradient along fine-scale directions


def test_other_sdes_refuse_block_noise():
    v, x, noise = _inputs()
    with pytest.raises(ValueError, match="dance"):
        flow_step(v, x, 0.7, 0.6, sde_type="flow_grpo", eta=0.5, noise=noise, block_noise=BlockNoise(2))
    with pytest.raises(ValueError, match="divide"):
        BlockNoise(3).reduce(x)


def test_block_dance_sde_preserves_gaussian_marginals():
    """Data N(m, s^2) per element (independent): the subspace SDE with the projected score correction
    lands on the data law (200 steps, 25,000 trajectories of a 2x2 grid pooled by 2)."""
    block = BlockNoise(2)
    from fastvideo.grpo.schedule import flow_sigmas

    sigmas = flow_sigmas(200, 1.0).double().tolist()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(25_000, 1, 2, 2, generator=gen)
    for i in range(200):
        x = flow_step(exact_velocity(x, sigmas[i]), x, sigmas[i], sigmas[i + 1], sde_type="dance", eta=0.7,
                      generator=gen, block_noise=block).prev_sample
    assert_gaussian(x.flatten(), DATA_MEAN, DATA_STD**2)
    # block noise correlates the elements of a block only through the data law: their covariance is 0
    centred = x.flatten(1) - x.flatten(1).mean(0)
    assert abs((centred[:, 0] * centred[:, 3]).mean().item()) < 0.02 * DATA_STD**2


def test_flux_layout_round_trip_and_blocks_in_image_space():
    from fastvideo.models.flux import FluxAdapter

    adapter = FluxAdapter.from_config(_tiny_flux_cfg(), torch.device("cpu"))
    block = BlockNoise(4, *adapter.latent_grid())
    tokens = torch.randn(2, *adapter.latent_shape())
    torch.testing.assert_close(adapter.pack(adapter.unpack(tokens)), tokens)
    noise = block.structure(tokens)
    image = adapter.unpack(noise)
    assert torch.equal(image[..., :4, :4].amin((-1, -2)), image[..., :4, :4].amax((-1, -2)))


def _tiny_flux_cfg():
    from fastvideo.config import ModelConfig

    cfg = ModelConfig()
    cfg.name, cfg.tiny, cfg.height, cfg.width = "flux", True, 32, 32
    return cfg
