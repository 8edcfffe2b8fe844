"""Image-to-video derivation of the tiny shapes HunyuanVideo (``fastvideo.shapes.pretrain.video_i2v``): zero-init
equivalence with the T2V transformer, the conditioning layout, and a smoke run loaded by stock diffusers
and by our ``skyreels_i2v`` adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fastvideo.shapes.pretrain.video_components import (
    TEXT_DROPOUT,
    VIDEO_SMOKE,
    build_video_transformer,
    drop_prompts,
)
from fastvideo.shapes.pretrain.video_i2v import expand_input_channels, pad_image_latents


def _transformer_inputs(channels: int, batch: int = 2, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "timestep": torch.tensor([300.0, 800.0][:batch]),
        "encoder_hidden_states": torch.randn(batch, 6, VIDEO_SMOKE.llama_hidden, generator=generator),
        "encoder_attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]][:batch]),
        "pooled_projections": torch.randn(batch, VIDEO_SMOKE.clip_hidden, generator=generator),
        "guidance": torch.full((batch,), 1000.0), "return_dict": False,
    }


@torch.no_grad()
def test_zero_init_i2v_transformer_computes_the_t2v_output_for_any_image_latents():
    torch.manual_seed(0)
    t2v = build_video_transformer(VIDEO_SMOKE).eval()
    i2v = expand_input_channels(t2v).eval()
    channels = t2v.config.in_channels
    assert i2v.config.in_channels == 2 * channels and i2v.config.out_channels == t2v.config.out_channels
    assert i2v.x_embedder.proj.weight[:, channels:].abs().max() == 0
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, channels, 2, 8, 8, generator=generator)
    kwargs = _transformer_inputs(channels)
    reference = t2v(hidden_states=x, **kwargs)[0]
    assert reference.std() > 0.1
    for scale in (0.0, 1.0, 100.0):
        image = pad_image_latents(scale * torch.randn(2, channels, 1, 8, 8, generator=generator), 2)
        torch.testing.assert_close(i2v(hidden_states=torch.cat([x, image], 1), **kwargs)[0], reference,
                                   rtol=1e-5, atol=1e-5)
    i2v.x_embedder.proj.weight[:, channels:].normal_(0, 0.02)  # once trained, the first frame matters
    image = pad_image_latents(torch.randn(2, channels, 1, 8, 8, generator=generator), 2)
    changed = i2v(hidden_states=torch.cat([x, image], 1), **kwargs)[0]
    assert (changed - reference).abs().max() > 1e-3


def test_conditioning_pads_the_first_frame_and_drops_about_a_tenth_of_the_prompts():
    image = torch.randn(3, 4, 1, 2, 2)
    padded = pad_image_latents(image, 3)
    assert padded.shape == (3, 4, 3, 2, 2) and torch.equal(padded[:, :, :1], image) and padded[:, :, 1:].eq(0).all()
    texts = drop_prompts(["a red circle moving right"] * 10_000, np.random.default_rng(0), TEXT_DROPOUT)
    assert set(texts) == {"a red circle moving right", ""} and abs(texts.count("") / 10_000 - 0.1) < 0.01


@pytest.fixture(scope="module")
def smoke_dirs(tmp_path_factory):
    from fastvideo.shapes.pretrain import video, video_i2v

    root = tmp_path_factory.mktemp("i2v")
    video.main(["--stage", "all", "--smoke", "--size", "32", "--num_frames", "5", "--threads", "1",
                "--work_dir", str(root / "w"), "--output_dir", str(root / "t2v")])
    video_i2v.main(["--stage", "all", "--smoke", "--threads", "1", "--t2v_dir", str(root / "t2v"),
                    "--work_dir", str(root / "wi"), "--output_dir", str(root / "i2v")])
    return root


@pytest.mark.slow
def test_smoke_run_writes_a_stock_skyreels_pipeline(smoke_dirs):
    from diffusers import HunyuanSkyreelsImageToVideoPipeline

    out = smoke_dirs / "i2v"
    assert (smoke_dirs / "wi" / "i2v" / "state.pt").exists() and (smoke_dirs / "wi" / "i2v" / "step_000002").is_dir()
    info = json.loads((out / "pretrain.json").read_text())
    assert info["sampling"] == {"height": 32, "width": 32, "num_frames": 5, "guidance_scale": 1.0,
                                "true_cfg_scale": 5.0, "negative_prompt": "", "max_sequence_length": 16}
    result = json.loads((out / "eval.json").read_text())
    assert result["overall"]["n"] == 4 and 0 <= result["overall"]["acc"] <= 1 and "t2v" in result
    pipe = HunyuanSkyreelsImageToVideoPipeline.from_pretrained(out).to(torch.float32)  # stock, offline
    pipe.set_progress_bar_config(disable=True)
    assert pipe.transformer.config.in_channels == 2 * pipe.vae.config.latent_channels
    with torch.no_grad():
        frames = pipe(image=torch.rand(1, 3, 32, 32), prompt="a red circle moving right", num_inference_steps=1,
                      generator=torch.Generator().manual_seed(0), output_type="pt", **info["sampling"]).frames
    assert frames.shape == (1, 5, 3, 32, 32) and 0 <= frames.min() and frames.max() <= 1


@pytest.mark.slow
@torch.no_grad()
def test_adapter_loads_the_smoke_model_and_the_first_frame_matters_after_training(smoke_dirs):
    from fastvideo.shapes.pretrain.video_components import motion_batch
    from fastvideo.shapes.pretrain.video_i2v import build_i2v_adapter, first_frame_latents

    adapter = build_i2v_adapter(smoke_dirs / "i2v", cfg_scale=1.0)
    assert adapter.latent_shape() == (16, 2, 8, 8)
    channels = adapter.latent_channels
    assert adapter.transformer.x_embedder.proj.weight[:, channels:].abs().max() > 0  # trained away from zero
    prompts, videos = motion_batch(2, seed=5, step=0, size=32, num_frames=5)
    frames = (videos[:, :, 0] + 1) / 2
    adapter.set_first_frame_source(lambda texts: frames)
    cond = adapter.encode_prompts(prompts)
    # the training conditioning is exactly what the adapter computes from the same first frames
    torch.testing.assert_close(cond["image_latents"], first_frame_latents(adapter.component("vae"), videos),
                               rtol=1e-4, atol=1e-4)
    x = torch.randn(2, *adapter.latent_shape(), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.7, 0.7])
    velocity = adapter.predict(x, t, cond)
    assert velocity.shape == x.shape and torch.isfinite(velocity).all()
    flipped = {**cond, "image_latents": cond["image_latents"].flip(0)}
    assert (adapter.predict(x, t, flipped) - velocity).abs().max() > 1e-6
    adapter.model_cfg.guidance_scale = 5.0  # real CFG with the empty prompt
    assert (adapter.predict(x, t, cond) - velocity).abs().max() > 0
