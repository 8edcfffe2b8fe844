"""SD3.5 adapter on the tiny model: encoding, one Euler step with CFG and the decode equal diffusers'
StableDiffusion3Pipeline; the empty-prompt embedding and the cache; directory loading; one on-policy GRPO
iteration and exports that the stock pipeline loads."""

from __future__ import annotations

import shutil

import pytest
import torch

from fastvideo.config import ModelConfig
from fastvideo.models import ModelNotFoundError, build_adapter
from fastvideo.models.base import linear_module_names
from fastvideo.models.tiny_more import save_tiny_more_pipeline, tiny_more_pipeline
from tests import family_checks

PROMPTS = ["a photo of a cat", "a red car in the city"]
SCALE = 4.5


def sd3_cfg(**overrides) -> ModelConfig:
    values = dict(name="sd3", tiny=True, height=32, width=32, guidance_scale=SCALE, dtype="fp32")
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def adapter():
    return build_adapter(sd3_cfg(), "cpu")


@pytest.fixture(scope="module")
def pipe():
    pipe = tiny_more_pipeline("sd3", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def cond(adapter):
    return adapter.encode_prompts(PROMPTS)


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    return save_tiny_more_pipeline("sd3", tmp_path_factory.mktemp("sd3") / "sd3", seed=0)


def _latents(adapter, seed=0):
    return torch.randn(len(PROMPTS), *adapter.latent_shape(), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_value_ranges(adapter, cond):
    assert set(cond) == set(adapter.cond_batch_keys)
    assert cond["prompt_embeds"].shape == (2, 77 + 256, 64)  # CLIP tokens then T5 tokens, T5 width
    assert cond["pooled_prompt_embeds"].shape == (2, 64)  # CLIP-L + CLIP-G projections
    assert adapter.latent_shape() == (16, 16, 16)  # 32 px / VAE factor 2, 16 channels
    latents = _latents(adapter)
    velocity = adapter.predict(latents, torch.tensor([0.9, 0.2]), cond)
    assert velocity.shape == latents.shape and velocity.dtype == torch.float32
    images = adapter.decode(latents)
    assert images.shape == (2, 3, 32, 32) and images.min() >= 0 and images.max() <= 1 and images.std() > 0


def test_encode_equals_sd3_pipeline(adapter, pipe, cond):
    with torch.no_grad():
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(PROMPTS, None, None, device=torch.device("cpu"))
    torch.testing.assert_close(cond["prompt_embeds"], embeds)
    torch.testing.assert_close(cond["pooled_prompt_embeds"], pooled)
    neg = adapter.negative_cond()
    torch.testing.assert_close(neg["prompt_embeds"].expand(2, -1, -1), negative)
    torch.testing.assert_close(neg["pooled_prompt_embeds"].expand(2, -1), negative_pooled)


def test_one_euler_step_with_cfg_and_decode_equal_sd3_pipeline(adapter, pipe, cond):
    """StableDiffusion3Pipeline for one step from sigma s (CFG 4.5): x - s * v, then decode; ours must agree."""
    neg = {k: v.expand(2, *v.shape[1:]) for k, v in adapter.negative_cond().items()}
    latents = _latents(adapter)
    kwargs = dict(prompt_embeds=cond["prompt_embeds"], pooled_prompt_embeds=cond["pooled_prompt_embeds"],
                  negative_prompt_embeds=neg["prompt_embeds"], negative_pooled_prompt_embeds=neg["pooled_prompt_embeds"],
                  latents=latents, height=32, width=32, num_inference_steps=1, sigmas=[0.7], guidance_scale=SCALE)
    with torch.no_grad():
        stepped = pipe(output_type="latent", **kwargs).images
        sigma = float(pipe.scheduler.sigmas[0])  # the pipeline's shifted sigma (shift 3)
        assert 0.7 < sigma < 1
        ours = latents - sigma * adapter.predict(latents, torch.full((2,), sigma), cond)
        torch.testing.assert_close(ours, stepped, rtol=1e-4, atol=1e-5)
        images = pipe(output_type="pt", **kwargs).images
    torch.testing.assert_close(adapter.decode(ours), images, rtol=1e-4, atol=2e-5)


def test_cfg_by_hand_and_scale_one_is_the_conditional_branch(adapter, cond):
    latents, t = _latents(adapter), torch.tensor([0.8, 0.3])
    neg = {k: v.expand(2, *v.shape[1:]) for k, v in adapter.negative_cond().items()}
    with torch.no_grad():
        guided = adapter.predict(latents, t, cond)
        v_c, v_u = adapter.transformer_call(latents, t, cond), adapter.transformer_call(latents, t, neg)
        torch.testing.assert_close(guided, v_u + SCALE * (v_c - v_u), rtol=1e-4, atol=1e-5)
        plain = build_adapter(sd3_cfg(guidance_scale=1.0), "cpu").predict(latents, t, cond)
    torch.testing.assert_close(plain, v_c, rtol=1e-5, atol=1e-6)


def test_negative_embedding_comes_from_cache_extras(adapter, cond):
    extras = adapter.cache_extras()
    assert set(extras) == {"negative_prompt_embeds", "negative_pooled_prompt_embeds"}
    fresh = build_adapter(sd3_cfg(), "cpu")
    fresh.load_cache_extras(extras)
    latents, t = _latents(adapter), torch.tensor([0.5, 0.5])
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict(latents, t, cond), adapter.predict(latents, t, cond))
    assert fresh.loaded_components() == {"transformer"}  # no text encoder was needed
    with pytest.raises(KeyError, match="negative_prompt_embeds"):
        build_adapter(sd3_cfg(), "cpu").load_cache_extras({})
    build_adapter(sd3_cfg(guidance_scale=1.0), "cpu").load_cache_extras({})  # no CFG: nothing needed


def test_lazy_loading_and_freeing_text_encoders():
    fresh = build_adapter(sd3_cfg(), "cpu")
    assert fresh.loaded_components() == set()
    cond = fresh.encode_prompts(PROMPTS[:1])
    assert fresh.loaded_components() == set(fresh.text_component_names)
    fresh.free_text_encoders()
    fresh.predict(torch.randn(1, *fresh.latent_shape()), torch.tensor([0.5]), cond)
    assert fresh.loaded_components() == {"transformer"}


def test_blocks_and_lora_targets(adapter):
    transformer = adapter.transformer
    assert adapter.transformer_blocks() == list(transformer.transformer_blocks) and len(transformer.transformer_blocks) == 2
    names = list(linear_module_names(transformer))
    for target in adapter.default_lora_targets:
        assert any(name.endswith("." + target) for name in names), target


def test_image_size_must_fit_vae_factor_times_patch():
    with pytest.raises(ValueError, match="divisible by 4"):
        build_adapter(sd3_cfg(height=30), "cpu").latent_shape()


def test_directory_roundtrip_and_missing_pieces(adapter, cond, saved_dir, tmp_path):
    loaded = build_adapter(sd3_cfg(tiny=False, path=str(saved_dir)), "cpu")
    loaded_cond = loaded.encode_prompts(PROMPTS)
    for key in cond:
        torch.testing.assert_close(loaded_cond[key], cond[key])
    latents, t = _latents(adapter), torch.tensor([0.9, 0.4])
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(latents, t, cond), adapter.predict(latents, t, cond))
        torch.testing.assert_close(loaded.decode(latents), adapter.decode(latents))
    copy = shutil.copytree(saved_dir, tmp_path / "sd3")
    shutil.rmtree(copy / "text_encoder_3")
    with pytest.raises(ModelNotFoundError) as info:
        build_adapter(sd3_cfg(tiny=False, path=str(copy)), "cpu")
    assert "'text_encoder_3/'" in str(info.value)
    assert f"huggingface-cli download stabilityai/stable-diffusion-3.5-medium --local-dir {copy}" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="--local-dir ./data/stable-diffusion-3.5-medium"):
        build_adapter(sd3_cfg(tiny=False, path=None), "cpu")


def test_preprocess_cache_holds_the_adapter_encoding(tmp_path, adapter, cond):
    """fastvideo.data.preprocess (batches of 1, text encoders only) writes what the adapter encodes, and the
    negative prompt as cache extras."""
    from fastvideo.data.cache import EmbeddingCache
    from fastvideo.data.preprocess import preprocess
    from fastvideo.distributed import DistEnv

    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    model_cfg = sd3_cfg()
    directory, loaded = preprocess(model_cfg, str(prompt_file), str(tmp_path / "emb"), 1, DistEnv())
    assert loaded == set(adapter.text_component_names)
    cache = EmbeddingCache(directory, model_cfg)
    cached = cache.get([0, 1])
    for key in cond:
        torch.testing.assert_close(cached[key], cond[key])
    assert set(cache.extras) == set(adapter.cache_extras())


def test_grpo_iteration_is_on_policy_and_full_export_loads_in_stock_pipeline(tmp_path, saved_dir):
    from diffusers import StableDiffusion3Pipeline

    trainer = family_checks.tiny_trainer(tmp_path, sd3_cfg(dtype="auto"))
    moved = family_checks.run_on_policy_iteration(trainer)
    assert len(moved) == len(dict(trainer.model.named_parameters()))  # every parameter moved
    family_checks.full_export_loads_in_stock_pipeline(trainer, tmp_path, saved_dir, StableDiffusion3Pipeline)


def test_lora_moves_only_lora_and_exports_for_load_lora_weights(tmp_path):
    trainer = family_checks.tiny_trainer(tmp_path, sd3_cfg(dtype="auto"), model__lora_rank=4, model__lora_alpha=8.0)
    moved = family_checks.run_on_policy_iteration(trainer)
    lora = {n for n, _ in trainer.model.named_parameters() if "lora_" in n}
    # the last joint block is context_pre_only: its text queries (add_q_proj) feed nothing, so that LoRA's B
    # (initialised at 0) gets no gradient; every other LoRA weight moves, no base weight does
    assert moved <= lora and lora - moved == {"transformer_blocks.1.attn.add_q_proj.lora_B.default.weight"}
    family_checks.lora_export_loads_with_load_lora_weights(trainer, tmp_path, tiny_more_pipeline("sd3", seed=0))
