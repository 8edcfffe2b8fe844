"""fastvideo.inference.sample: a seed gives the same image whatever the batch; batched, sized, deterministic."""

from __future__ import annotations

import pytest
import torch

from fastvideo.config import ModelConfig

PROMPTS = ["a red fox", "a blue lake", "a green hill"]


@pytest.fixture(scope="module")
def flux():
    from fastvideo.inference import load_policy

    return load_policy(ModelConfig(name="flux", tiny=True, height=32, width=32), None, "cpu")


@pytest.mark.parametrize("sampler", ["ode", "sde", "dpm2"])
def test_same_seed_same_image_whatever_the_batch(flux, sampler):
    from fastvideo.inference import sample

    alone = sample(flux, PROMPTS[1:2], [7], num_steps=3, batch_size=1, sampler=sampler)
    batched = sample(flux, PROMPTS, [3, 7, 9], num_steps=3, batch_size=3, sampler=sampler)
    split = sample(flux, PROMPTS[::-1] + PROMPTS[1:2], [9, 7, 3, 7], num_steps=3, batch_size=2, sampler=sampler)
    assert alone.shape == (1, 3, 32, 32) and batched.shape == (3, 3, 32, 32)
    torch.testing.assert_close(batched[1], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(split[1], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(split[3], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(split[0], batched[2], rtol=0, atol=1e-5)
    assert (batched[0] - batched[2]).abs().max() > 1e-3  # other seeds and prompts give other images


def test_seed_prompt_size_and_sampler_all_matter(flux):
    from fastvideo.inference import sample

    ode = sample(flux, [PROMPTS[0]] * 3, [1, 2, 1], num_steps=3, batch_size=0)
    assert (ode[0] - ode[1]).abs().max() > 1e-3
    other_prompt = sample(flux, [PROMPTS[2]], [1], num_steps=3)
    assert (ode[0] - other_prompt[0]).abs().max() > 1e-3
    sde = sample(flux, [PROMPTS[0]], [1], num_steps=3, sampler="sde", eta=0.7)
    assert (ode[0] - sde[0]).abs().max() > 1e-3
    wide = sample(flux, [PROMPTS[0]], [1], num_steps=3, height=16, width=48)
    assert wide.shape == (1, 3, 16, 48) and flux.model_cfg.height == 32  # the override is undone
    assert 0 <= float(ode.min()) and float(ode.max()) <= 1


def test_sd_ode_is_deterministic_ddim_and_batch_independent():
    from fastvideo.inference import load_policy, sample

    sd = load_policy(ModelConfig(name="sd", tiny=True, height=32, width=32, guidance_scale=5.0), None, "cpu")
    one = sample(sd, PROMPTS[:1], [5], num_steps=3, batch_size=1)
    two = sample(sd, PROMPTS[:2][::-1], [4, 5], num_steps=3, batch_size=2)
    torch.testing.assert_close(two[1], one[0], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="flow models"):
        sample(sd, PROMPTS[:1], [5], num_steps=3, sampler="dpm2")


def test_prompts_and_seeds_must_pair_up():
    from fastvideo.inference import sample

    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        sample(object(), PROMPTS[:2], [0], num_steps=3)  # type: ignore[arg-type]
