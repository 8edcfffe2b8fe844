"""HunyuanVideo adapter on the tiny model: shapes, equality with diffusers' HunyuanVideoPipeline,
frame-count and size validation, the text-to-image mode, directory loading, the embedding cache and
one on-policy GRPO iteration."""

from __future__ import annotations

import shutil

import pytest
import torch

from fastvideo.config import ModelConfig
from fastvideo.models import ModelNotFoundError, build_adapter
from fastvideo.models.base import linear_module_names
from fastvideo.models.tiny_video import save_tiny_video_pipeline, tiny_video_pipeline

PROMPTS = ["a cat walks on the grass", "a red car in the city"]


def hunyuan_cfg(**overrides) -> ModelConfig:
    values = dict(name="hunyuan", tiny=True, height=32, width=32, num_frames=5, guidance_scale=6.0, dtype="fp32")
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def adapter():
    return build_adapter(hunyuan_cfg(), "cpu")


@pytest.fixture(scope="module")
def pipe():
    return tiny_video_pipeline("hunyuan", seed=0)


@pytest.fixture(scope="module")
def cond(adapter):
    return adapter.encode_prompts(PROMPTS)


def _latents(adapter, seed=0):
    return torch.randn(len(PROMPTS), *adapter.latent_shape(), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_value_ranges(adapter, cond):
    assert set(cond) == set(adapter.cond_batch_keys)
    assert cond["prompt_embeds"].shape == (2, 256, 16)
    assert cond["prompt_attention_mask"].shape == (2, 256) and cond["prompt_attention_mask"].dtype == torch.long
    assert cond["pooled_prompt_embeds"].shape == (2, 32)
    # 5 frames -> (5 - 1) / 4 + 1 = 2 latent frames; 32 px / VAE factor 4 = 8
    assert adapter.latent_shape() == (4, 2, 8, 8)
    latents = _latents(adapter)
    velocity = adapter.predict(latents, torch.tensor([0.9, 0.2]), cond)
    assert velocity.shape == latents.shape and velocity.dtype == torch.float32
    videos = adapter.decode(latents)
    assert videos.shape == (2, 5, 3, 32, 32) and videos.dtype == torch.float32
    assert videos.min() >= 0 and videos.max() <= 1 and videos.std() > 0


def test_prompt_mask_covers_the_prompt_tokens_after_the_template(adapter, cond):
    tokenizer = adapter.component("tokenizer")
    prefix = adapter.prompt_template["template"].split("{}")[0]
    assert adapter.crop_start == len(tokenizer(prefix).input_ids)
    # after the crop: the prompt's tokens and the closing <|eot_id|>, then padding
    for prompt, mask in zip(PROMPTS, cond["prompt_attention_mask"]):
        prompt_tokens = len(tokenizer(prompt, add_special_tokens=False).input_ids)
        assert int(mask.sum()) == prompt_tokens + 1 and bool(mask[: prompt_tokens + 1].all())


def test_encode_equals_hunyuan_pipeline(adapter, pipe, cond):
    template = {"template": adapter.prompt_template["template"], "crop_start": adapter.crop_start}
    with torch.no_grad():
        embeds, pooled, mask = pipe.encode_prompt(PROMPTS, prompt_template=template, device=torch.device("cpu"))
    torch.testing.assert_close(cond["prompt_embeds"], embeds)
    torch.testing.assert_close(cond["pooled_prompt_embeds"], pooled)
    assert torch.equal(cond["prompt_attention_mask"], mask.long())


def test_short_max_sequence_length_equals_the_pipeline_and_leaves_the_velocity(adapter, pipe, cond):
    """``model.max_sequence_length`` is the pipeline's argument: 16 tokens encode as the pipeline's 16, and since
    the padding is masked, the velocity equals the one over 256 tokens (the shapes video configs use 16)."""
    short = build_adapter(hunyuan_cfg(max_sequence_length=16), "cpu")
    short_cond = short.encode_prompts(PROMPTS)
    assert short_cond["prompt_embeds"].shape == (2, 16, 16) and short_cond["prompt_attention_mask"].shape == (2, 16)
    template = {"template": adapter.prompt_template["template"], "crop_start": adapter.crop_start}
    with torch.no_grad():
        embeds, _, mask = pipe.encode_prompt(PROMPTS, prompt_template=template, device=torch.device("cpu"),
                                             max_sequence_length=16)
    torch.testing.assert_close(short_cond["prompt_embeds"], embeds)
    assert torch.equal(short_cond["prompt_attention_mask"], mask.long())
    latents, t = _latents(adapter), torch.tensor([0.9, 0.2])
    torch.testing.assert_close(short.predict(latents, t, short_cond), adapter.predict(latents, t, cond),
                               rtol=1e-4, atol=1e-5)


def _pipeline_step(pipe, cond, latents, output_type, **kwargs):
    """HunyuanVideoPipeline for one step from the (shifted) sigma it derives from 0.7."""
    return pipe(prompt_embeds=cond["prompt_embeds"], pooled_prompt_embeds=cond["pooled_prompt_embeds"],
                prompt_attention_mask=cond["prompt_attention_mask"], latents=latents, height=32, width=32,
                num_frames=5, num_inference_steps=1, sigmas=[0.7], guidance_scale=6.0,
                output_type=output_type, **kwargs).frames


def test_one_euler_step_and_decode_equal_hunyuan_pipeline(adapter, pipe, cond):
    """One pipeline step from sigma s is x - s * v (then decode); our predict/decode must agree."""
    latents = _latents(adapter)
    with torch.no_grad():
        stepped = _pipeline_step(pipe, cond, latents, "latent")
        sigma = float(pipe.scheduler.sigmas[0])
        assert 0 < sigma < 1
        ours = latents - sigma * adapter.predict(latents, torch.full((2,), sigma), cond)
        torch.testing.assert_close(ours, stepped, rtol=1e-4, atol=1e-4)
        videos = _pipeline_step(pipe, cond, latents, "pt")
    torch.testing.assert_close(adapter.decode(ours), videos.float(), rtol=1e-4, atol=1e-4)


def test_true_cfg_equals_hunyuan_pipeline_and_the_formula(cond):
    """true_cfg_scale s: v_u + s (v_c - v_u) against the empty prompt, as the stock pipeline's true_cfg_scale."""
    guided = build_adapter(hunyuan_cfg(true_cfg_scale=4.0), "cpu")
    pipe, latents, sigma = tiny_video_pipeline("hunyuan", seed=0), _latents(guided), torch.full((2,), 0.6)
    negative = {key: value.expand(2, *value.shape[1:]) for key, value in guided.negative_cond().items()}
    with torch.no_grad():
        velocity = guided.predict(latents, sigma, cond)
        v_c, v_u = (guided.transformer_call(latents, sigma, c, 6.0) for c in (cond, negative))
        torch.testing.assert_close(velocity, v_u + 4.0 * (v_c - v_u), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(velocity, v_c, atol=1e-3)
        stepped = _pipeline_step(pipe, cond, latents, "latent", true_cfg_scale=4.0,
                                 negative_prompt_embeds=negative["prompt_embeds"],
                                 negative_pooled_prompt_embeds=negative["pooled_prompt_embeds"],
                                 negative_prompt_attention_mask=negative["prompt_attention_mask"])
        step_sigma = float(pipe.scheduler.sigmas[0])
        ours = latents - step_sigma * guided.predict(latents, torch.full((2,), step_sigma), cond)
    torch.testing.assert_close(ours, stepped, rtol=1e-4, atol=1e-4)
    assert build_adapter(hunyuan_cfg(), "cpu").cache_extras() == {}  # no CFG: nothing extra in the cache
    extras = guided.cache_extras()
    fresh = build_adapter(hunyuan_cfg(true_cfg_scale=4.0), "cpu")
    fresh.load_cache_extras(extras)
    torch.testing.assert_close(fresh.negative_cond()["prompt_embeds"], negative["prompt_embeds"][:1])
    with pytest.raises(KeyError, match="empty prompt"):
        build_adapter(hunyuan_cfg(true_cfg_scale=4.0), "cpu").load_cache_extras({})


def test_guidance_scale_reaches_the_guidance_embedding(adapter, cond):
    latents, t = _latents(adapter), torch.tensor([0.5, 0.5])
    with torch.no_grad():
        base = adapter.predict(latents, t, cond)
        adapter.model_cfg.guidance_scale = 1.0
        try:
            other = adapter.predict(latents, t, cond)
        finally:
            adapter.model_cfg.guidance_scale = 6.0
    assert not torch.allclose(base, other)


@pytest.mark.parametrize("frames, nearest", [(52, ("49", "53")), (6, ("5", "9")), (2, ("1", "5"))])
def test_frame_count_must_be_4k_plus_1(frames, nearest):
    adapter = build_adapter(hunyuan_cfg(num_frames=frames), "cpu")
    with pytest.raises(ValueError, match="4k\\+1") as error:
        adapter.latent_shape()
    assert all(count in str(error.value) for count in nearest)
    assert build_adapter(hunyuan_cfg(num_frames=53), "cpu").latent_shape()[1] == 14


@pytest.mark.parametrize("height, width", [(36, 32), (32, 28), (20, 20)])
def test_size_must_be_a_multiple_of_vae_factor_times_patch(height, width):
    adapter = build_adapter(hunyuan_cfg(height=height, width=width), "cpu")
    with pytest.raises(ValueError, match="divisible by 8.*crop"):
        adapter.latent_shape()


def test_one_frame_is_the_text_to_image_mode(cond):
    adapter = build_adapter(hunyuan_cfg(num_frames=1), "cpu")
    assert adapter.latent_shape() == (4, 1, 8, 8)
    latents = _latents(adapter)
    assert adapter.predict(latents, torch.tensor([0.5, 0.5]), cond).shape == latents.shape
    images = adapter.decode(latents)
    assert images.shape == (2, 3, 32, 32)


def test_blocks_and_lora_targets(adapter):
    module = adapter.transformer
    assert adapter.transformer_blocks() == list(module.transformer_blocks) + list(module.single_transformer_blocks)
    names = set(linear_module_names(module))
    for target in adapter.default_lora_targets:
        assert any(name.endswith("." + target) for name in names), target


def test_directory_round_trip_and_missing_files(tmp_path, adapter, cond):
    directory = save_tiny_video_pipeline("hunyuan", tmp_path / "HunyuanVideo", seed=0)
    loaded = build_adapter(hunyuan_cfg(tiny=False, path=str(directory)), "cpu")
    assert loaded.crop_start == adapter.crop_start
    loaded_cond = loaded.encode_prompts(PROMPTS)
    for key in cond:
        torch.testing.assert_close(loaded_cond[key], cond[key])
    latents, t = _latents(adapter), torch.tensor([0.9, 0.4])
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(latents, t, cond), adapter.predict(latents, t, cond))
    shutil.rmtree(directory / "vae")
    command = "huggingface-cli download hunyuanvideo-community/HunyuanVideo"
    with pytest.raises(ModelNotFoundError, match=f"(?s)vae/.*{command}"):
        build_adapter(hunyuan_cfg(tiny=False, path=str(directory)), "cpu")
    with pytest.raises(ModelNotFoundError, match="model directory not found"):
        build_adapter(hunyuan_cfg(tiny=False, path=str(tmp_path / "nowhere")), "cpu")


def test_preprocess_cache_holds_the_adapter_encoding(tmp_path, adapter, cond):
    from fastvideo.data.cache import EmbeddingCache
    from fastvideo.data.preprocess import preprocess
    from fastvideo.distributed import DistEnv

    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    model_cfg = hunyuan_cfg()
    directory, loaded = preprocess(model_cfg, str(prompt_file), str(tmp_path / "emb"), 8, DistEnv())
    assert loaded == {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"}
    cached = EmbeddingCache(directory, model_cfg).get([0, 1])
    for key in cond:
        torch.testing.assert_close(cached[key], cond[key])


def test_one_grpo_iteration_is_on_policy_and_updates_the_transformer(tmp_path):
    from fastvideo.distributed import DistEnv
    from fastvideo.rewards import RewardSet, RewardTerm
    from fastvideo.rewards.rule_based import BrightnessReward
    from fastvideo.training.trainer import GRPOTrainer
    from tests.trainer_utils import toy_config

    cfg = toy_config(tmp_path)
    cfg.model = hunyuan_cfg(dtype="auto")
    cfg.sampler.num_steps, cfg.sampler.shift, cfg.sampler.eta = 4, 5.0, 0.25
    cfg.grpo.group_size, cfg.grpo.timestep_fraction = 2, 0.7
    cfg.train.prompts_per_iteration, cfg.train.max_iterations = 2, 1
    rewards = RewardSet([RewardTerm("brightness", BrightnessReward(), 1.0)])
    trainer = GRPOTrainer(cfg, DistEnv(), rewards=rewards)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    metrics = trainer.train_iteration()
    assert abs(metrics["ratio_mean"] - 1.0) < 1e-5 and abs(metrics["ratio_max"] - 1.0) < 1e-5
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert len(changed) > len(before) // 2
