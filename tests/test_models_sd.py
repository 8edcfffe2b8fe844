"""Stable Diffusion adapter on the tiny model: CFG, schedule, equality with StableDiffusionPipeline."""

from __future__ import annotations

import shutil

import pytest
import torch

from fastvideo.config import ModelConfig
from fastvideo.models import ModelNotFoundError, build_adapter
from fastvideo.models.base import linear_module_names
from fastvideo.models.tiny import save_tiny_pipeline, tiny_pipeline

PROMPTS = ["a photo of a cat", "a red car in the city"]


def sd_cfg(**overrides) -> ModelConfig:
    values = dict(name="sd", tiny=True, height=32, width=32, guidance_scale=5.0, dtype="fp32")
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def adapter():
    return build_adapter(sd_cfg(), "cpu")


@pytest.fixture(scope="module")
def cond(adapter):
    return adapter.encode_prompts(PROMPTS)


def test_shapes_and_value_ranges(adapter, cond):
    assert cond["prompt_embeds"].shape == (2, 77, 32)
    assert adapter.negative_prompt_embeds.shape == (1, 77, 32)
    assert adapter.latent_shape() == (4, 16, 16)
    latents = torch.randn(2, *adapter.latent_shape())
    eps = adapter.predict(latents, torch.tensor([999, 10]), cond)
    assert eps.shape == latents.shape and eps.dtype == torch.float32
    images = adapter.decode(latents)
    assert images.shape == (2, 3, 32, 32) and images.min() >= 0 and images.max() <= 1 and images.std() > 0


def test_cfg_combination_by_hand(adapter, cond):
    latents = torch.randn(2, *adapter.latent_shape())
    t = torch.tensor([700, 300])
    unet = adapter.transformer
    with torch.no_grad():
        ours = adapter.predict(latents, t, cond)
        uncond = unet(latents, t, encoder_hidden_states=adapter.negative_prompt_embeds.expand(2, -1, -1)).sample
        conditional = unet(latents, t, encoder_hidden_states=cond["prompt_embeds"]).sample
    torch.testing.assert_close(ours, uncond + 5.0 * (conditional - uncond), atol=1e-5, rtol=1e-4)
    no_cfg = build_adapter(sd_cfg(guidance_scale=1.0), "cpu")
    with torch.no_grad():
        torch.testing.assert_close(no_cfg.predict(latents, t, cond), conditional, atol=1e-5, rtol=1e-4)


def test_schedule_from_scheduler_config(adapter):
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    expected = torch.cumprod(1 - betas, 0).float()
    assert adapter.num_train_timesteps == 1000
    torch.testing.assert_close(adapter.alphas_cumprod, expected)
    # SD v1-4 sets set_alpha_to_one=False: the final alpha is alphas_cumprod[0], not 1
    assert adapter.final_alpha_cumprod == pytest.approx(float(expected[0]))


def test_encode_and_one_ddim_step_equal_sd_pipeline(adapter, cond):
    """StableDiffusionPipeline (DDIM, 1 step, CFG 5) from given latents == our predict + DDIM step + decode."""
    from diffusers import DDIMScheduler

    pipe = tiny_pipeline("sd", seed=0)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    embeds, negative = pipe.encode_prompt(PROMPTS, torch.device("cpu"), 1, True)
    torch.testing.assert_close(cond["prompt_embeds"], embeds)
    torch.testing.assert_close(adapter.negative_prompt_embeds.expand(2, -1, -1), negative)
    latents = torch.randn(2, *adapter.latent_shape(), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, latents=latents, height=32,
                      width=32, num_inference_steps=1, guidance_scale=5.0, output_type="pt").images
        t = int(pipe.scheduler.timesteps[0])
        eps = adapter.predict(latents, torch.full((2,), t), cond)
        stepper = DDIMScheduler.from_config(pipe.scheduler.config)
        stepper.set_timesteps(1)
        previous = stepper.step(eps, t, latents).prev_sample
        ours = adapter.decode(previous)
    torch.testing.assert_close(ours, images, atol=2e-5, rtol=1e-4)


def test_negative_embedding_survives_freeing_and_comes_from_cache_extras(adapter, cond):
    extras = adapter.cache_extras()
    assert set(extras) == {"negative_prompt_embeds"}
    fresh = build_adapter(sd_cfg(), "cpu")
    fresh.load_cache_extras(extras)
    latents = torch.randn(1, *adapter.latent_shape())
    row = {"prompt_embeds": cond["prompt_embeds"][:1]}
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict(latents, torch.tensor([500]), row),
                                   adapter.predict(latents, torch.tensor([500]), row))
    assert fresh.loaded_components() == {"unet"}  # no text encoder was needed
    with pytest.raises(KeyError, match="negative_prompt_embeds"):
        fresh.load_cache_extras({})


def test_blocks_and_lora_targets(adapter):
    unet = adapter.transformer
    blocks = adapter.transformer_blocks()
    assert blocks == [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    names = list(linear_module_names(unet))
    for target in adapter.default_lora_targets:
        assert any(name.endswith("." + target) for name in names), target


def test_directory_roundtrip_and_missing_pieces(adapter, cond, tmp_path):
    saved = save_tiny_pipeline("sd", tmp_path / "sd", seed=0)
    loaded = build_adapter(sd_cfg(tiny=False, path=str(saved)), "cpu")
    torch.testing.assert_close(loaded.encode_prompts(PROMPTS)["prompt_embeds"], cond["prompt_embeds"])
    torch.testing.assert_close(loaded.alphas_cumprod, adapter.alphas_cumprod)
    latents = torch.randn(2, *adapter.latent_shape())
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(latents, torch.tensor([900, 100]), cond),
                                   adapter.predict(latents, torch.tensor([900, 100]), cond))
    shutil.rmtree(saved / "unet")
    with pytest.raises(ModelNotFoundError) as info:
        build_adapter(sd_cfg(tiny=False, path=str(saved)), "cpu")
    assert "'unet/'" in str(info.value)
    assert f"huggingface-cli download CompVis/stable-diffusion-v1-4 --local-dir {saved}" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="--local-dir ./data/stable-diffusion-v1-4"):
        build_adapter(sd_cfg(tiny=False, path=None), "cpu")
