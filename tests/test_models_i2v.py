"""SkyReels-I2V adapter on the tiny model: the image-latent conditioning, CFG with the empty prompt,
equality with diffusers' HunyuanSkyreelsImageToVideoPipeline, the first-frame sources and one
on-policy GRPO iteration."""

from __future__ import annotations

import json

import pytest
import torch

from fastvideo.config import ModelConfig
from fastvideo.models import build_adapter
from fastvideo.models.skyreels_i2v import (
    FIRST_FRAME_ENV,
    SkyReelsI2VAdapter,
    T2IFirstFrames,
    first_frames_from_t2i,
    fit_frames,
    synthetic_first_frames,
)
from fastvideo.models.tiny_video import save_tiny_video_pipeline, tiny_video_pipeline, tiny_video_source

PROMPTS = ["a cat walks on the grass", "a red car in the city"]


def i2v_cfg(**overrides) -> ModelConfig:
    values = dict(name="skyreels_i2v", tiny=True, height=32, width=32, num_frames=5, guidance_scale=5.0,
                  dtype="fp32")
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def adapter():
    return build_adapter(i2v_cfg(), "cpu")


@pytest.fixture(scope="module")
def cond(adapter):
    return adapter.encode_prompts(PROMPTS)


def _latents(adapter, seed=0):
    return torch.randn(len(PROMPTS), *adapter.latent_shape(), generator=torch.Generator().manual_seed(seed))


def _predict(adapter, cond, scale, sigma=0.6):
    latents = _latents(adapter)
    saved, adapter.model_cfg.guidance_scale = adapter.model_cfg.guidance_scale, scale
    try:
        with torch.no_grad():
            return adapter.predict(latents, torch.full((len(PROMPTS),), sigma), cond)
    finally:
        adapter.model_cfg.guidance_scale = saved


def test_conditioning_shapes(adapter, cond):
    assert set(cond) == set(adapter.cond_batch_keys)
    assert cond["image_latents"].shape == (2, 4, 1, 8, 8)  # the first frame's one-frame latent
    assert adapter.latent_shape() == (4, 2, 8, 8)  # noisy latents: half the transformer's input channels
    assert adapter.transformer_config["in_channels"] == 8
    assert _predict(adapter, cond, 5.0).shape == (2, *adapter.latent_shape())


def test_a_text_to_video_transformer_is_refused():
    source = tiny_video_source("hunyuan")
    with pytest.raises(ValueError, match="SkyReels-I2V transformer"):
        SkyReelsI2VAdapter(source, i2v_cfg(), torch.device("cpu"), source.load_config("vae"),
                           source.load_config("transformer"))


def test_changing_the_first_frame_changes_the_output(adapter, cond):
    same = dict(cond, image_latents=adapter.encode_first_frames(adapter.first_frames(PROMPTS)))
    other = dict(cond, image_latents=adapter.encode_first_frames(1 - adapter.first_frames(PROMPTS)))
    base = _predict(adapter, cond, 5.0)
    torch.testing.assert_close(_predict(adapter, same, 5.0), base)
    assert (_predict(adapter, other, 5.0) - base).abs().max() > 1e-3


def test_cfg_with_the_empty_prompt(adapter, cond):
    """predict(s) = u + s (c - u), u = the prediction for the empty prompt (one batched call)."""
    conditional = _predict(adapter, cond, 1.0)
    negative = {key: value.expand(2, *value.shape[1:]) for key, value in adapter.negative_cond().items()}
    uncond = _predict(adapter, dict(negative, image_latents=cond["image_latents"]), 1.0)
    torch.testing.assert_close(_predict(adapter, cond, 5.0), uncond + 5.0 * (conditional - uncond),
                               rtol=1e-4, atol=1e-4)
    assert (conditional - uncond).abs().max() > 1e-4


def test_one_step_equals_skyreels_pipeline(adapter, cond, monkeypatch):
    """The pipeline samples the image posterior; with its mode (ours) one step must agree."""
    import diffusers.pipelines.hunyuan_video.pipeline_hunyuan_skyreels_image2video as module

    monkeypatch.setattr(module, "retrieve_latents", lambda output, generator=None: output.latent_dist.mode())
    pipe, negative = tiny_video_pipeline("skyreels_i2v", seed=0), adapter.negative_cond()
    latents = _latents(adapter)
    with torch.no_grad():
        stepped = pipe(
            image=adapter.first_frames(PROMPTS), prompt_embeds=cond["prompt_embeds"],
            pooled_prompt_embeds=cond["pooled_prompt_embeds"], prompt_attention_mask=cond["prompt_attention_mask"],
            negative_prompt_embeds=negative["prompt_embeds"].expand(2, -1, -1),
            negative_pooled_prompt_embeds=negative["pooled_prompt_embeds"].expand(2, -1),
            negative_prompt_attention_mask=negative["prompt_attention_mask"].expand(2, -1),
            true_cfg_scale=5.0, guidance_scale=1.0, latents=latents, height=32, width=32, num_frames=5,
            num_inference_steps=1, sigmas=[0.7], output_type="latent").frames
        sigma = float(pipe.scheduler.sigmas[0])
        ours = latents - sigma * adapter.predict(latents, torch.full((2,), sigma), cond)
    torch.testing.assert_close(ours, stepped, rtol=1e-4, atol=1e-4)


def test_negative_embedding_travels_with_the_cache(adapter, cond):
    extras = adapter.cache_extras()
    assert set(extras) == {"negative_prompt_embeds", "negative_prompt_attention_mask",
                           "negative_pooled_prompt_embeds"}
    fresh = build_adapter(i2v_cfg(), "cpu")
    with pytest.raises(KeyError, match="re-run the skyreels_i2v preprocessing"):
        fresh.load_cache_extras({})
    fresh.load_cache_extras(extras)
    fresh.transformer.load_state_dict(adapter.transformer.state_dict())
    torch.testing.assert_close(_predict(fresh, cond, 5.0), _predict(adapter, cond, 5.0))
    assert fresh.loaded_components() == {"transformer"}  # no text encoder needed for CFG


def test_preprocess_cache_holds_image_latents_and_the_empty_prompt(tmp_path, adapter, cond):
    from fastvideo.data.cache import EmbeddingCache
    from fastvideo.data.preprocess import preprocess
    from fastvideo.distributed import DistEnv

    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    directory, loaded = preprocess(i2v_cfg(), str(prompt_file), str(tmp_path / "emb"), 8, DistEnv())
    assert "vae" in loaded and "transformer" not in loaded  # the first frames are VAE-encoded once, here
    cache = EmbeddingCache(directory, i2v_cfg())
    for key, value in cache.get([0, 1]).items():
        torch.testing.assert_close(value, cond[key])
    for key, value in adapter.cache_extras().items():
        torch.testing.assert_close(cache.extras[key], value)


def test_image_latents_of_another_size_are_refused(adapter, cond):
    wrong = dict(cond, image_latents=torch.zeros(2, 4, 1, 6, 6))
    with pytest.raises(ValueError, match="model.height/width"):
        _predict(adapter, wrong, 5.0)


def test_first_frame_file_json_and_csv(tmp_path, monkeypatch):
    from PIL import Image

    for i, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new("RGB", (48, 32), color).save(tmp_path / f"frame{i}.png")
    (tmp_path / "frames.json").write_text(json.dumps([{"prompt": p, "image": f"frame{i}.png"}
                                                      for i, p in enumerate(PROMPTS)]))
    (tmp_path / "frames.csv").write_text("prompt,image\n" + "".join(f'"{p}",frame{i}.png\n'
                                                                     for i, p in enumerate(PROMPTS)))
    for name in ("frames.json", "frames.csv"):
        monkeypatch.setenv(FIRST_FRAME_ENV, str(tmp_path / name))
        frames = build_adapter(i2v_cfg(), "cpu").first_frames(PROMPTS[::-1])
        assert frames.shape == (2, 3, 32, 32)
        assert frames[0, 2].mean() > 0.99 and frames[0, 0].mean() < 0.01  # blue first (order follows prompts)
        assert frames[1, 0].mean() > 0.99
    with pytest.raises(KeyError, match="no first frame for prompt 'a dog'"):
        build_adapter(i2v_cfg(), "cpu").first_frames(["a dog"])


def test_synthetic_frames_are_deterministic_per_prompt_and_fit_crops_to_aspect():
    first, again = synthetic_first_frames(PROMPTS, 32, 32), synthetic_first_frames(PROMPTS[::-1], 32, 32)
    torch.testing.assert_close(first, again.flip(0))
    assert (first[0] - first[1]).abs().max() > 0.05
    wide = torch.zeros(1, 3, 10, 40)
    wide[..., 15:25] = 1.0  # a bright centre band survives the centre crop to a square
    assert fit_frames(wide, 8, 8).shape == (1, 3, 8, 8) and fit_frames(wide, 8, 8).mean() > 0.99


def test_first_frames_from_our_text_to_image_model(adapter):
    t2i = build_adapter(ModelConfig(name="flux", tiny=True, height=32, width=32, dtype="fp32"), "cpu")
    images = first_frames_from_t2i(t2i, PROMPTS, [1, 2], num_steps=2)
    assert images.shape == (2, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    torch.testing.assert_close(first_frames_from_t2i(t2i, PROMPTS, [1, 2], num_steps=2), images)
    assert (first_frames_from_t2i(t2i, PROMPTS, [3, 2], num_steps=2)[0] - images[0]).abs().max() > 1e-3
    adapter.set_first_frame_source(T2IFirstFrames(t2i, num_steps=2))
    try:
        from_t2i = adapter.encode_prompts(PROMPTS)["image_latents"]
    finally:
        adapter.set_first_frame_source(None)
    synthetic = adapter.encode_first_frames(adapter.first_frames(PROMPTS))
    assert (from_t2i - synthetic).abs().max() > 1e-3


def test_directory_model_needs_a_first_frame_source(tmp_path, monkeypatch):
    monkeypatch.delenv(FIRST_FRAME_ENV, raising=False)
    directory = save_tiny_video_pipeline("skyreels_i2v", tmp_path / "skyreels", seed=0)
    loaded = build_adapter(i2v_cfg(tiny=False, path=str(directory)), "cpu")
    with pytest.raises(ValueError, match="model.first_frame_file"):
        loaded.encode_prompts(PROMPTS)
    assert "Skywork/SkyReels-V1-Hunyuan-I2V" in loaded.download_hint(str(directory))


def test_one_grpo_iteration_is_on_policy(tmp_path):
    from fastvideo.distributed import DistEnv
    from fastvideo.rewards import RewardSet, RewardTerm
    from fastvideo.rewards.rule_based import BrightnessReward
    from fastvideo.training.trainer import GRPOTrainer
    from tests.trainer_utils import toy_config

    cfg = toy_config(tmp_path)
    cfg.model = i2v_cfg(dtype="auto")
    cfg.sampler.num_steps, cfg.sampler.shift, cfg.sampler.eta = 4, 7.0, 0.3
    cfg.grpo.group_size, cfg.grpo.timestep_fraction = 2, 0.7
    cfg.train.prompts_per_iteration, cfg.train.max_iterations = 2, 1
    rewards = RewardSet([RewardTerm("brightness", BrightnessReward(), 1.0)])
    trainer = GRPOTrainer(cfg, DistEnv(), rewards=rewards)
    metrics = trainer.train_iteration()
    assert abs(metrics["ratio_mean"] - 1.0) < 1e-5 and abs(metrics["ratio_max"] - 1.0) < 1e-5
    assert metrics["grad_norm"] > 0
