"""Qwen-Image adapter on the tiny model: encoding (padded for the cache, cropped back in predict), one Euler
step with and without true CFG and the decode equal diffusers' QwenImagePipeline; packing; the negative
prompt and the cache; directory loading; one on-policy GRPO iteration and exports the stock pipeline loads."""

from __future__ import annotations

import shutil

import pytest
import torch

from fastvideo.config import ModelConfig
from fastvideo.models import ModelNotFoundError, build_adapter
from fastvideo.models.base import linear_module_names
from fastvideo.models.tiny_more import save_tiny_more_pipeline, tiny_more_pipeline
from tests import family_checks

PROMPTS = ["a photo of a cat", "a red car in the city under a blue sky"]  # different lengths: masks matter
SCALE = 4.0


def qwen_cfg(**overrides) -> ModelConfig:
    values = dict(name="qwen_image", tiny=True, height=32, width=32, true_cfg_scale=SCALE, dtype="fp32")
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def adapter():
    return build_adapter(qwen_cfg(), "cpu")


@pytest.fixture(scope="module")
def pipe():
    pipe = tiny_more_pipeline("qwen_image", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def cond(adapter):
    return adapter.encode_prompts(PROMPTS)


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    return save_tiny_more_pipeline("qwen_image", tmp_path_factory.mktemp("qwen") / "qwen_image", seed=0)


def _latents(adapter, seed=0):
    return torch.randn(len(PROMPTS), *adapter.latent_shape(), generator=torch.Generator().manual_seed(seed))


def _stock(pipe, prompts):
    with torch.no_grad():
        embeds, mask = pipe.encode_prompt(prompts, device=torch.device("cpu"))
    return embeds, (torch.ones(embeds.shape[:2], dtype=torch.long) if mask is None else mask)


def test_shapes_and_value_ranges(adapter, cond):
    assert set(cond) == set(adapter.cond_batch_keys)
    assert cond["prompt_embeds"].shape == (2, 1024, 16) and cond["prompt_embeds_mask"].shape == (2, 1024)
    assert adapter.latent_shape() == (16, 64)  # 32 px / VAE factor 4 = 8x8 latent -> 4x4 tokens of 4 x 16
    latents = _latents(adapter)
    velocity = adapter.predict(latents, torch.tensor([0.9, 0.2]), cond)
    assert velocity.shape == latents.shape and velocity.dtype == torch.float32
    images = adapter.decode(latents)
    assert images.shape == (2, 3, 32, 32) and images.min() >= 0 and images.max() <= 1 and images.std() > 0


def test_pack_unpack_roundtrip(adapter, pipe):
    latents = torch.randn(3, 16, 8, 8)
    packed = adapter.pack(latents)
    assert torch.equal(packed, pipe._pack_latents(latents, 3, 16, 8, 8))
    assert torch.equal(adapter.unpack(packed), latents)


def test_encode_equals_pipeline_padded_to_the_cache_length(adapter, pipe, cond):
    embeds, mask = _stock(pipe, PROMPTS)
    length = embeds.shape[1]
    torch.testing.assert_close(cond["prompt_embeds"][:, :length], embeds)
    assert torch.equal(cond["prompt_embeds_mask"][:, :length], mask.long())
    assert cond["prompt_embeds"][:, length:].abs().sum() == 0 and cond["prompt_embeds_mask"][:, length:].sum() == 0
    assert int(mask[0].sum()) < int(mask[1].sum())  # the shorter prompt is padded inside the batch too
    negative, _ = _stock(pipe, [" "])
    torch.testing.assert_close(adapter.negative_cond()["prompt_embeds"][:, : negative.shape[1]], negative)


def _pipeline_step(pipe, latents, prompts_cond, negative=None, scale=1.0, output_type="latent"):
    embeds, mask = prompts_cond
    kwargs = {}
    if negative is not None:
        kwargs = dict(negative_prompt_embeds=negative[0].expand(2, -1, -1),
                      negative_prompt_embeds_mask=negative[1].expand(2, -1))
    return pipe(prompt_embeds=embeds, prompt_embeds_mask=mask, latents=latents, height=32, width=32,
                num_inference_steps=1, sigmas=[0.7], true_cfg_scale=scale, output_type=output_type, **kwargs).images


@pytest.mark.parametrize("scale", [1.0, SCALE])
def test_one_euler_step_and_decode_equal_qwen_image_pipeline(pipe, cond, scale):
    """QwenImagePipeline for one step from its shifted sigma s: x - s * v (true CFG with the norm rescale at
    scale 4, against the negative prompt " "), then decode; ours must agree."""
    adapter = build_adapter(qwen_cfg(true_cfg_scale=scale), "cpu")
    stock, negative = _stock(pipe, PROMPTS), (_stock(pipe, [" "]) if scale > 1 else None)
    latents = _latents(adapter)
    with torch.no_grad():
        stepped = _pipeline_step(pipe, latents, stock, negative, scale)
        sigma = float(pipe.scheduler.sigmas[0])
        assert 0 < sigma < 1
        ours = latents - sigma * adapter.predict(latents, torch.full((2,), sigma), cond)
        torch.testing.assert_close(ours, stepped, rtol=1e-4, atol=1e-5)
        images = _pipeline_step(pipe, latents, stock, negative, scale, output_type="pt")
    torch.testing.assert_close(adapter.decode(ours), images, rtol=1e-4, atol=2e-5)


def test_true_cfg_by_hand(adapter, cond):
    latents, t = _latents(adapter), torch.tensor([0.8, 0.3])
    negative = {k: v.expand(2, *v.shape[1:]) for k, v in adapter.negative_cond().items()}
    with torch.no_grad():
        guided = adapter.predict(latents, t, cond)
        v_c, v_u = adapter.transformer_call(latents, t, cond), adapter.transformer_call(latents, t, negative)
    combined = v_u + SCALE * (v_c - v_u)
    expected = combined * v_c.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(guided, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(guided.norm(dim=-1), v_c.norm(dim=-1), rtol=1e-4, atol=1e-5)


def test_padding_does_not_change_the_output(adapter, cond):
    """Cropping to the batch's longest prompt: one prompt alone gives the same velocity as in the batch."""
    latents, t = _latents(adapter), torch.tensor([0.6, 0.6])
    with torch.no_grad():
        both = adapter.transformer_call(latents, t, cond)
        alone = adapter.transformer_call(latents[:1], t[:1], {k: v[:1] for k, v in cond.items()})
    torch.testing.assert_close(alone, both[:1], rtol=1e-4, atol=1e-5)


def test_negative_prompt_comes_from_cache_extras(adapter, cond):
    extras = adapter.cache_extras()
    assert set(extras) == {"negative_prompt_embeds", "negative_prompt_embeds_mask"}
    fresh = build_adapter(qwen_cfg(), "cpu")
    fresh.load_cache_extras(extras)
    latents, t = _latents(adapter), torch.tensor([0.5, 0.5])
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict(latents, t, cond), adapter.predict(latents, t, cond))
    assert fresh.loaded_components() == {"transformer"}
    with pytest.raises(KeyError, match="negative_prompt_embeds"):
        build_adapter(qwen_cfg(), "cpu").load_cache_extras({})


def test_blocks_lora_targets_and_size_check(adapter):
    module = adapter.transformer
    assert adapter.transformer_blocks() == list(module.transformer_blocks) and len(module.transformer_blocks) == 2
    names = set(linear_module_names(module))
    for target in adapter.default_lora_targets:
        assert any(name.endswith("." + target) for name in names), target
    with pytest.raises(ValueError, match="divisible by 8"):
        build_adapter(qwen_cfg(height=36), "cpu").latent_shape()


def test_directory_roundtrip_and_missing_files(adapter, cond, saved_dir, tmp_path):
    loaded = build_adapter(qwen_cfg(tiny=False, path=str(saved_dir)), "cpu")
    loaded_cond = loaded.encode_prompts(PROMPTS)
    for key in cond:
        torch.testing.assert_close(loaded_cond[key], cond[key])
    latents, t = _latents(adapter), torch.tensor([0.9, 0.4])
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(latents, t, cond), adapter.predict(latents, t, cond))
        torch.testing.assert_close(loaded.decode(latents), adapter.decode(latents))
    copy = shutil.copytree(saved_dir, tmp_path / "qwen")
    (copy / "model_index.json").unlink()
    with pytest.raises(ModelNotFoundError) as info:
        build_adapter(qwen_cfg(tiny=False, path=str(copy)), "cpu")
    assert "'model_index.json'" in str(info.value)
    assert f"huggingface-cli download Qwen/Qwen-Image --local-dir {copy}" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="--local-dir ./data/Qwen-Image"):
        build_adapter(qwen_cfg(tiny=False, path=None), "cpu")


def test_preprocess_cache_holds_the_adapter_encoding(tmp_path, adapter, cond):
    """fastvideo.data.preprocess (batches of 1, text encoders only) writes what the adapter encodes, and the
    negative prompt as cache extras."""
    from fastvideo.data.cache import EmbeddingCache
    from fastvideo.data.preprocess import preprocess
    from fastvideo.distributed import DistEnv

    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    model_cfg = qwen_cfg()
    directory, loaded = preprocess(model_cfg, str(prompt_file), str(tmp_path / "emb"), 1, DistEnv())
    assert loaded == set(adapter.text_component_names)
    cache = EmbeddingCache(directory, model_cfg)
    cached = cache.get([0, 1])
    for key in cond:
        torch.testing.assert_close(cached[key], cond[key])
    assert set(cache.extras) == set(adapter.cache_extras())


def test_grpo_iteration_is_on_policy_and_full_export_loads_in_stock_pipeline(tmp_path, saved_dir):
    from diffusers import QwenImagePipeline

    trainer = family_checks.tiny_trainer(tmp_path, qwen_cfg(dtype="auto"))
    moved = family_checks.run_on_policy_iteration(trainer)
    # the last block's text-stream output is discarded, so its text output projection and MLP get no gradient
    dead = {f"transformer_blocks.1.{m}.{p}" for m in ("attn.to_add_out", "txt_mlp.net.0.proj", "txt_mlp.net.2")
            for p in ("weight", "bias")}
    assert set(dict(trainer.model.named_parameters())) - moved == dead
    family_checks.full_export_loads_in_stock_pipeline(trainer, tmp_path, saved_dir, QwenImagePipeline)


def test_lora_moves_only_lora_and_exports_for_load_lora_weights(tmp_path):
    trainer = family_checks.tiny_trainer(tmp_path, qwen_cfg(dtype="auto"), model__lora_rank=4, model__lora_alpha=8.0)
    moved = family_checks.run_on_policy_iteration(trainer)
    lora = {n for n, _ in trainer.model.named_parameters() if "lora_" in n}
    assert lora and moved == lora, sorted(lora - moved)
    family_checks.lora_export_loads_with_load_lora_weights(trainer, tmp_path, tiny_more_pipeline("qwen_image", seed=0))
