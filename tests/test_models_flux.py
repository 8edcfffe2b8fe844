"""FLUX adapter on the tiny model: shapes, equality with diffusers' FluxPipeline, directory loading."""

from __future__ import annotations

import shutil

import pytest
import torch

from fastvideo.config import ModelConfig
from fastvideo.models import ModelNotFoundError, build_adapter
from fastvideo.models.base import linear_module_names
from fastvideo.models.tiny import save_tiny_pipeline, tiny_pipeline

PROMPTS = ["a photo of a cat", "a red car in the city"]


def flux_cfg(**overrides) -> ModelConfig:
    values = dict(name="flux", tiny=True, height=32, width=32, guidance_scale=3.5, dtype="fp32")
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def adapter():
    return build_adapter(flux_cfg(), "cpu")


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline("flux", seed=0)


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    return save_tiny_pipeline("flux", tmp_path_factory.mktemp("flux") / "flux", seed=0)


def test_shapes_and_value_ranges(adapter):
    cond = adapter.encode_prompts(PROMPTS)
    assert set(cond) == set(adapter.cond_batch_keys)
    assert cond["prompt_embeds"].shape == (2, adapter.max_sequence_length, 32)
    assert cond["pooled_prompt_embeds"].shape == (2, 32)
    # 32 px / VAE factor 2 = 16x16 latent, 2x2 patches of 4 channels -> 64 tokens of 16 features
    assert adapter.latent_shape() == (64, 16)
    latents = torch.randn(2, *adapter.latent_shape())
    velocity = adapter.predict(latents, torch.tensor([0.9, 0.2]), cond)
    assert velocity.shape == latents.shape and velocity.dtype == torch.float32
    images = adapter.decode(latents)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0


def test_pack_unpack_roundtrip(adapter):
    latents = torch.randn(3, 4, 16, 16)
    packed = adapter.pack(latents)
    assert packed.shape == (3, *adapter.latent_shape())
    assert torch.equal(adapter.unpack(packed), latents)


def test_encode_equals_flux_pipeline(adapter, pipe):
    embeds, pooled, _ = pipe.encode_prompt(PROMPTS, prompt_2=None, device=torch.device("cpu"),
                                           max_sequence_length=adapter.max_sequence_length)
    cond = adapter.encode_prompts(PROMPTS)
    torch.testing.assert_close(cond["prompt_embeds"], embeds)
    torch.testing.assert_close(cond["pooled_prompt_embeds"], pooled)


def test_one_euler_step_and_decode_equal_flux_pipeline(adapter, pipe):
    """FluxPipeline for one step from sigma s: x - s * v, then decode; our predict/decode must agree."""
    cond = adapter.encode_prompts(PROMPTS)
    latents = torch.randn(2, *adapter.latent_shape(), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = pipe(prompt_embeds=cond["prompt_embeds"], pooled_prompt_embeds=cond["pooled_prompt_embeds"],
                      latents=latents, height=32, width=32, num_inference_steps=1, sigmas=[0.7],
                      guidance_scale=3.5, output_type="pt").images
        sigma = float(pipe.scheduler.sigmas[0])  # the pipeline's (shifted) first sigma
        assert 0 < sigma < 1
        velocity = adapter.predict(latents, torch.full((2,), sigma), cond)
        ours = adapter.decode(latents - sigma * velocity)
    torch.testing.assert_close(ours, images, atol=2e-5, rtol=1e-4)


def test_guidance_value_reaches_the_transformer(adapter):
    cond = adapter.encode_prompts(PROMPTS[:1])
    latents = torch.randn(1, *adapter.latent_shape())
    other = build_adapter(flux_cfg(guidance_scale=7.0), "cpu")
    with torch.no_grad():
        assert not torch.allclose(adapter.predict(latents, torch.tensor([0.5]), cond),
                                  other.predict(latents, torch.tensor([0.5]), cond))


def test_lazy_loading_and_freeing_text_encoders():
    fresh = build_adapter(flux_cfg(), "cpu")
    assert fresh.loaded_components() == set()
    cond = fresh.encode_prompts(PROMPTS[:1])
    assert fresh.loaded_components() == {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"}
    fresh.free_text_encoders()
    assert fresh.loaded_components() == set()
    fresh.predict(torch.randn(1, *fresh.latent_shape()), torch.tensor([0.5]), cond)
    assert fresh.loaded_components() == {"transformer"}


def test_blocks_and_lora_targets(adapter):
    blocks = adapter.transformer_blocks()
    transformer = adapter.transformer
    assert blocks == list(transformer.transformer_blocks) + list(transformer.single_transformer_blocks)
    assert len(blocks) == 4
    names = list(linear_module_names(transformer))
    for target in adapter.default_lora_targets:
        assert any(name.endswith("." + target) for name in names), target


def test_directory_roundtrip_matches_in_memory_model(adapter, saved_dir):
    loaded = build_adapter(flux_cfg(tiny=False, path=str(saved_dir)), "cpu")
    cond, cond_loaded = adapter.encode_prompts(PROMPTS), loaded.encode_prompts(PROMPTS)
    for key in cond:
        torch.testing.assert_close(cond_loaded[key], cond[key])
    latents = torch.randn(2, *adapter.latent_shape())
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(latents, torch.tensor([0.8, 0.4]), cond),
                                   adapter.predict(latents, torch.tensor([0.8, 0.4]), cond))
        torch.testing.assert_close(loaded.decode(latents), adapter.decode(latents))


def test_save_transformer_module_and_state_dict(adapter, tmp_path):
    from diffusers import FluxTransformer2DModel

    reference = adapter.transformer.state_dict()
    for source, name in [(adapter.transformer, "module"), (reference, "state_dict")]:
        out = adapter.save_transformer(source, tmp_path / name)
        assert list(out.glob("*.safetensors"))
        reloaded = FluxTransformer2DModel.from_pretrained(out).state_dict()
        assert all(torch.equal(reloaded[k], v) for k, v in reference.items())


def test_missing_directory_names_download_command(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelNotFoundError) as info:
        build_adapter(flux_cfg(tiny=False, path=str(missing)), "cpu")
    message = str(info.value)
    assert str(missing) in message
    assert f"huggingface-cli download black-forest-labs/FLUX.1-dev --local-dir {missing}" in message
    with pytest.raises(ModelNotFoundError, match="--local-dir ./data/flux"):
        build_adapter(flux_cfg(tiny=False, path=None), "cpu")


@pytest.mark.parametrize("remove, named", [("text_encoder_2", "'text_encoder_2/'"),
                                           ("vae/diffusion_pytorch_model.safetensors", "'vae/'"),
                                           ("model_index.json", "'model_index.json'")])
def test_incomplete_directory_names_missing_piece(saved_dir, tmp_path, remove, named):
    copy = shutil.copytree(saved_dir, tmp_path / "flux")
    target = copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ModelNotFoundError) as info:
        build_adapter(flux_cfg(tiny=False, path=str(copy)), "cpu")
    assert named in str(info.value)
    assert "huggingface-cli download black-forest-labs/FLUX.1-dev" in str(info.value)


def test_image_size_must_fit_the_patches():
    with pytest.raises(ValueError, match="divisible"):
        build_adapter(flux_cfg(height=30), "cpu").latent_shape()


def test_bf16_frozen_parts_with_fp32_transformer():
    """dtype=bf16 (the GPU default): text encoders and VAE in bf16, the trained transformer in fp32."""
    half = build_adapter(flux_cfg(dtype="bf16"), "cpu")
    cond = half.encode_prompts(PROMPTS[:1])
    assert all(value.dtype == torch.bfloat16 for value in cond.values())
    velocity = half.predict(torch.randn(1, *half.latent_shape()), torch.tensor([0.5]), cond)
    assert velocity.dtype == torch.float32 and half.transformer.x_embedder.weight.dtype == torch.float32
    assert half.component("vae").dtype == torch.bfloat16
    images = half.decode(torch.randn(1, *half.latent_shape()))
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1


def test_replacing_the_transformer_before_first_use(adapter):
    """The trainer may install a (wrapped) transformer itself; predict must still pass the guidance."""
    import copy

    fresh = build_adapter(flux_cfg(), "cpu")
    fresh.transformer = copy.deepcopy(adapter.transformer)
    cond = adapter.encode_prompts(PROMPTS[:1])
    latents = torch.randn(1, *adapter.latent_shape())
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict(latents, torch.tensor([0.3]), cond),
                                   adapter.predict(latents, torch.tensor([0.3]), cond))
