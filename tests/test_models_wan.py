"""Wan2.1 T2V adapter on the tiny model: encoding, two Euler steps with CFG and the decode equal diffusers'
WanPipeline; frame-count and size validation and the text-to-image mode; the empty-prompt embedding and the
cache; directory loading; one on-policy GRPO iteration and exports that the stock pipeline loads."""

from __future__ import annotations

import shutil

import pytest
import torch

from fastvideo.config import ModelConfig
from fastvideo.models import ModelNotFoundError, build_adapter
from fastvideo.models.base import linear_module_names
from fastvideo.models.tiny_more import save_tiny_more_pipeline, tiny_more_pipeline
from tests import family_checks

PROMPTS = ["a cat walks on the grass", "a red car in the city &amp; the   sky"]  # the pipeline cleans prompts
SCALE = 5.0


def wan_cfg(**overrides) -> ModelConfig:
    values = dict(name="wan", tiny=True, height=32, width=32, num_frames=5, guidance_scale=SCALE, dtype="fp32")
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def adapter():
    return build_adapter(wan_cfg(), "cpu")


@pytest.fixture(scope="module")
def pipe():
    pipe = tiny_more_pipeline("wan", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def cond(adapter):
    return adapter.encode_prompts(PROMPTS)


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    return save_tiny_more_pipeline("wan", tmp_path_factory.mktemp("wan") / "wan", seed=0)


def _latents(adapter, seed=0):
    return torch.randn(len(PROMPTS), *adapter.latent_shape(), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_value_ranges(adapter, cond):
    assert set(cond) == {"prompt_embeds"} and cond["prompt_embeds"].shape == (2, 512, 32)
    # 5 frames -> (5 - 1) / 4 + 1 = 2 latent frames; 32 px / VAE factor 8 = 4
    assert adapter.latent_shape() == (16, 2, 4, 4)
    latents = _latents(adapter)
    velocity = adapter.predict(latents, torch.tensor([0.9, 0.2]), cond)
    assert velocity.shape == latents.shape and velocity.dtype == torch.float32
    videos = adapter.decode(latents)
    assert videos.shape == (2, 5, 3, 32, 32) and videos.dtype == torch.float32
    assert videos.min() >= 0 and videos.max() <= 1 and videos.std() > 0


def test_encode_equals_wan_pipeline(adapter, pipe, cond):
    with torch.no_grad():
        embeds, negative = pipe.encode_prompt(PROMPTS, device=torch.device("cpu"), max_sequence_length=512)
    torch.testing.assert_close(cond["prompt_embeds"], embeds)
    torch.testing.assert_close(adapter.negative_cond()["prompt_embeds"].expand(2, -1, -1), negative)
    assert cond["prompt_embeds"][:, 20:].abs().sum() == 0  # zero past the prompts' tokens


def _pipeline(pipe, cond, negative, latents, output_type, **kwargs):
    return pipe(prompt_embeds=cond["prompt_embeds"], negative_prompt_embeds=negative, latents=latents, height=32,
                width=32, num_frames=5, num_inference_steps=2, guidance_scale=SCALE, output_type=output_type,
                **kwargs).frames


def test_two_euler_steps_with_cfg_and_decode_equal_wan_pipeline(adapter, pipe, cond):
    """WanPipeline, 2 steps (sigma 1 -> s1 -> 0, CFG 5): each step is x + (s' - s) v; ours must agree."""
    negative = adapter.negative_cond()["prompt_embeds"].expand(2, -1, -1)
    latents, middle = _latents(adapter), []

    def keep(pipeline, step, timestep, tensors):
        middle.append(tensors["latents"].clone())
        return tensors

    with torch.no_grad():
        final = _pipeline(pipe, cond, negative, latents, "latent", callback_on_step_end=keep)
        s0, s1 = (float(s) for s in pipe.scheduler.sigmas[:2])
        assert s0 == 1.0 and 0 < s1 < 1
        x1 = latents + (s1 - s0) * adapter.predict(latents, torch.full((2,), s0), cond)
        torch.testing.assert_close(x1, middle[0], rtol=1e-4, atol=1e-5)
        x2 = x1 - s1 * adapter.predict(x1, torch.full((2,), s1), cond)
        torch.testing.assert_close(x2, final, rtol=1e-4, atol=1e-5)
        videos = _pipeline(pipe, cond, negative, latents, "pt")
    torch.testing.assert_close(adapter.decode(x2), videos.float(), rtol=1e-4, atol=2e-5)


def test_cfg_by_hand_and_scale_one_is_the_conditional_branch(adapter, cond):
    latents, t = _latents(adapter), torch.tensor([0.8, 0.3])
    negative = {"prompt_embeds": adapter.negative_cond()["prompt_embeds"].expand(2, -1, -1)}
    with torch.no_grad():
        guided = adapter.predict(latents, t, cond)
        v_c, v_u = adapter.transformer_call(latents, t, cond), adapter.transformer_call(latents, t, negative)
        torch.testing.assert_close(guided, v_u + SCALE * (v_c - v_u), rtol=1e-4, atol=1e-5)
        plain = build_adapter(wan_cfg(guidance_scale=1.0), "cpu").predict(latents, t, cond)
    torch.testing.assert_close(plain, v_c, rtol=1e-5, atol=1e-6)


def test_negative_embedding_comes_from_cache_extras(adapter, cond):
    extras = adapter.cache_extras()
    assert set(extras) == {"negative_prompt_embeds"}
    fresh = build_adapter(wan_cfg(), "cpu")
    fresh.load_cache_extras(extras)
    latents, t = _latents(adapter), torch.tensor([0.5, 0.5])
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict(latents, t, cond), adapter.predict(latents, t, cond))
    assert fresh.loaded_components() == {"transformer"}
    with pytest.raises(KeyError, match="negative_prompt_embeds"):
        build_adapter(wan_cfg(), "cpu").load_cache_extras({})


@pytest.mark.parametrize("frames, nearest", [(6, ("5", "9")), (2, ("1", "5"))])
def test_frame_count_must_be_4k_plus_1(frames, nearest):
    with pytest.raises(ValueError, match="4k\\+1") as error:
        build_adapter(wan_cfg(num_frames=frames), "cpu").latent_shape()
    assert all(count in str(error.value) for count in nearest)
    assert build_adapter(wan_cfg(num_frames=81), "cpu").latent_shape()[1] == 21


def test_size_must_be_a_multiple_of_16():
    with pytest.raises(ValueError, match="divisible by 16"):
        build_adapter(wan_cfg(height=40), "cpu").latent_shape()


def test_one_frame_is_the_text_to_image_mode(cond):
    image_adapter = build_adapter(wan_cfg(num_frames=1), "cpu")
    assert image_adapter.latent_shape() == (16, 1, 4, 4)
    latents = _latents(image_adapter)
    assert image_adapter.predict(latents, torch.tensor([0.5, 0.5]), cond).shape == latents.shape
    assert image_adapter.decode(latents).shape == (2, 3, 32, 32)


def test_blocks_and_lora_targets(adapter):
    module = adapter.transformer
    assert adapter.transformer_blocks() == list(module.blocks) and len(module.blocks) == 2
    names = set(linear_module_names(module))
    for target in adapter.default_lora_targets:
        assert any(name.endswith("." + target) for name in names), target


def test_directory_roundtrip_and_missing_files(adapter, cond, saved_dir, tmp_path):
    loaded = build_adapter(wan_cfg(tiny=False, path=str(saved_dir)), "cpu")
    torch.testing.assert_close(loaded.encode_prompts(PROMPTS)["prompt_embeds"], cond["prompt_embeds"])
    latents, t = _latents(adapter), torch.tensor([0.9, 0.4])
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(latents, t, cond), adapter.predict(latents, t, cond))
        torch.testing.assert_close(loaded.decode(latents), adapter.decode(latents))
    copy = shutil.copytree(saved_dir, tmp_path / "wan")
    shutil.rmtree(copy / "vae")
    command = f"huggingface-cli download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --local-dir {copy}"
    with pytest.raises(ModelNotFoundError) as info:
        build_adapter(wan_cfg(tiny=False, path=str(copy)), "cpu")
    assert "'vae/'" in str(info.value) and command in str(info.value)
    with pytest.raises(ModelNotFoundError, match="--local-dir ./data/Wan2.1-T2V-1.3B-Diffusers"):
        build_adapter(wan_cfg(tiny=False, path=None), "cpu")


def test_preprocess_cache_holds_the_adapter_encoding(tmp_path, adapter, cond):
    """fastvideo.data.preprocess (batches of 1, text encoders only) writes what the adapter encodes, and the
    negative prompt as cache extras."""
    from fastvideo.data.cache import EmbeddingCache
    from fastvideo.data.preprocess import preprocess
    from fastvideo.distributed import DistEnv

    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    model_cfg = wan_cfg()
    directory, loaded = preprocess(model_cfg, str(prompt_file), str(tmp_path / "emb"), 1, DistEnv())
    assert loaded == set(adapter.text_component_names)
    cache = EmbeddingCache(directory, model_cfg)
    cached = cache.get([0, 1])
    for key in cond:
        torch.testing.assert_close(cached[key], cond[key])
    assert set(cache.extras) == set(adapter.cache_extras())


def test_grpo_iteration_is_on_policy_and_full_export_loads_in_stock_pipeline(tmp_path, saved_dir):
    from diffusers import WanPipeline

    trainer = family_checks.tiny_trainer(tmp_path, wan_cfg(dtype="auto"))
    moved = family_checks.run_on_policy_iteration(trainer)
    assert len(moved) == len(dict(trainer.model.named_parameters()))
    family_checks.full_export_loads_in_stock_pipeline(trainer, tmp_path, saved_dir, WanPipeline)


def test_lora_moves_only_lora_and_exports_for_load_lora_weights(tmp_path):
    trainer = family_checks.tiny_trainer(tmp_path, wan_cfg(dtype="auto"), model__lora_rank=4, model__lora_alpha=8.0)
    moved = family_checks.run_on_policy_iteration(trainer)
    lora = {n for n, _ in trainer.model.named_parameters() if "lora_" in n}
    assert lora and moved == lora
    family_checks.lora_export_loads_with_load_lora_weights(trainer, tmp_path, tiny_more_pipeline("wan", seed=0))
