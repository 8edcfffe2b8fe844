"""Pretraining of the tiny HunyuanVideo pipeline of the moving-shapes world: tokenizers, budget, smoke run."""

from __future__ import annotations

import json

import pytest
import torch

from fastvideo.shapes.motion import all_motion_prompts, motion_prompt_splits, motion_vocabulary
from fastvideo.shapes.pretrain.components import build_clip_tokenizer, count_params
from fastvideo.shapes.pretrain.video_components import (
    LLAMA_MAX_LENGTH,
    TEMPLATE_CROP_START,
    VIDEO_FULL,
    VIDEO_SMOKE,
    build_llama_encoder,
    build_llama_tokenizer,
    build_video_clip_encoder,
    build_video_transformer,
    build_video_vae,
    clip_pooled,
    llama_text,
    motion_batch,
    prompt_template,
    repatch_transformer,
    rope_axes_3d,
)

WEIGHT_BUDGET_BYTES = 25 * 2**20


def test_llama_tokenizer_keeps_the_pipelines_crop_start_and_one_token_per_word():
    tokenizer = build_llama_tokenizer(motion_vocabulary())
    template = prompt_template()
    assert template["crop_start"] == TEMPLATE_CROP_START
    prefix = template["template"].split("{}")[0]
    assert len(tokenizer(prefix).input_ids) == TEMPLATE_CROP_START
    for word in motion_vocabulary():
        assert tokenizer.tokenize(word) == [word]
    longest = max(len(p.text.split()) for p in all_motion_prompts())
    ids = tokenizer(template["template"].format("a red circle moving right while a blue square stays")).input_ids
    assert len(ids) - TEMPLATE_CROP_START == 11 and longest + 1 <= LLAMA_MAX_LENGTH  # words + <|eot_id|>
    assert tokenizer.unk_token_id not in ids


def test_full_size_weights_fit_the_budget():
    llama_tok, clip_tok = build_llama_tokenizer(motion_vocabulary()), build_clip_tokenizer(motion_vocabulary())
    fp16 = count_params(build_video_vae(VIDEO_FULL)) + count_params(build_video_transformer(VIDEO_FULL))
    fp32 = count_params(build_llama_encoder(VIDEO_FULL, llama_tok)) + count_params(
        build_video_clip_encoder(VIDEO_FULL, clip_tok))
    assert 2 * fp16 + 4 * fp32 <= WEIGHT_BUDGET_BYTES
    assert rope_axes_3d(32) == (8, 12, 12) and sum(rope_axes_3d(16)) == 16
    with pytest.raises(ValueError):
        rope_axes_3d(20)


def test_motion_batch_is_deterministic_and_uses_train_prompts_only():
    prompts, videos = motion_batch(6, seed=1, step=3, size=32, num_frames=5)
    again = motion_batch(6, seed=1, step=3, size=32, num_frames=5)
    assert prompts == again[0] and torch.equal(videos, again[1])
    assert videos.shape == (6, 3, 5, 32, 32) and videos.min() >= -1 and videos.max() <= 1
    assert set(prompts) <= {p.text for p in motion_prompt_splits(0)[0]}
    assert motion_batch(6, seed=1, step=4, size=32, num_frames=5)[0] != prompts


@pytest.mark.slow
def test_smoke_run_writes_a_stock_pipeline_the_adapter_and_verifier_can_use(tmp_path):
    from diffusers import HunyuanVideoPipeline

    from fastvideo.config import ModelConfig
    from fastvideo.models import build_adapter
    from fastvideo.shapes.motion_verifier import verify_video
    from fastvideo.shapes.pretrain.video import main

    out, work = tmp_path / "out", tmp_path / "work"
    main(["--stage", "all", "--smoke", "--size", "32", "--num_frames", "5", "--threads", "1",
          "--work_dir", str(work), "--output_dir", str(out)])
    stats = json.loads((work / "vae" / "stats.json").read_text())
    assert stats["scaling_factor"] > 0 and 0 <= stats["verifier_acc_reconstruction"] <= 1
    assert (work / "hunyuan" / "state.pt").exists() and (work / "hunyuan" / "step_000002").is_dir()
    info = json.loads((out / "pretrain.json").read_text())
    assert info["sampling"] == {"height": 32, "width": 32, "num_frames": 5, "guidance_scale": 6.0,
                                "max_sequence_length": LLAMA_MAX_LENGTH, "true_cfg_scale": 4.0,
                                "negative_prompt": ""}

    pipe = HunyuanVideoPipeline.from_pretrained(out).to(torch.float32)  # stock diffusers, offline
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a red circle moving right", "a blue square moving up while a green triangle stays"]
    with torch.no_grad():
        embeds, pooled, mask = pipe.encode_prompt(prompt=prompts, device=torch.device("cpu"))  # 256 tokens
        sequence, own_mask = llama_text(pipe.text_encoder, pipe.tokenizer, prompts)
        torch.testing.assert_close(embeds[:, :LLAMA_MAX_LENGTH], sequence)
        assert torch.equal(mask[:, :LLAMA_MAX_LENGTH], own_mask) and mask[:, LLAMA_MAX_LENGTH:].sum() == 0
        torch.testing.assert_close(pooled, clip_pooled(pipe.text_encoder_2, pipe.tokenizer_2, prompts))
        frames = pipe(prompts[:1], num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                      output_type="pt", **info["sampling"]).frames
    assert frames.shape == (1, 5, 3, 32, 32) and 0 <= frames.min() and frames.max() <= 1
    assert 0 <= verify_video(frames[0], prompts[0]).score <= 1

    cfg = ModelConfig(name="hunyuan", tiny=False, path=str(out), height=32, width=32, num_frames=5,
                      guidance_scale=6.0, dtype="fp32")
    adapter = build_adapter(cfg, "cpu")
    assert adapter.crop_start == TEMPLATE_CROP_START and adapter.latent_shape() == (16, 2, 8, 8)
    cond = adapter.encode_prompts(prompts)
    torch.testing.assert_close(cond["prompt_embeds"], embeds)
    torch.testing.assert_close(cond["pooled_prompt_embeds"], pooled)

    # warm start into a patch-1 transformer: its text encoders start as the saved ones
    from fastvideo.shapes.pretrain.video import VideoBundle, video_tokenizers

    work_p1 = tmp_path / "work_p1"
    (work_p1 / "vae").mkdir(parents=True)
    (work_p1 / "vae" / "model").symlink_to(work / "vae" / "model")
    (work_p1 / "vae" / "stats.json").symlink_to(work / "vae" / "stats.json")
    bundle = VideoBundle(VIDEO_SMOKE, video_tokenizers(), patch_size=1)
    bundle.warm_start(out)
    assert all(torch.equal(a, b) for a, b in zip(bundle.llama.state_dict().values(),
                                                 pipe.text_encoder.state_dict().values()))
    main(["--stage", "hunyuan", "--smoke", "--size", "32", "--num_frames", "5", "--threads", "1", "--patch_size",
          "1", "--init_from", str(out), "--work_dir", str(work_p1), "--output_dir", str(tmp_path / "out_p1"),
          "--train_shift", "1", "--sample_shift", "3"])
    info = json.loads((tmp_path / "out_p1" / "pretrain.json").read_text())
    assert info["patch_size"] == 1 and info["init_from"] == str(out)
    assert info["train_shift"] == 1.0 and info["sample_shift"] == 3.0
    warm = HunyuanVideoPipeline.from_pretrained(tmp_path / "out_p1")
    assert warm.transformer.config.patch_size == 1 and warm.scheduler.config.shift == 3.0
    assert pipe.scheduler.config.shift == 5.0  # the default stays the shipped scheduler's


class _TimeRecorder(torch.nn.Module):
    """A transformer stand-in that records the timesteps it is called with and predicts zeros."""

    def __init__(self):
        super().__init__()
        self.timesteps = []

    def forward(self, hidden_states, timestep, **kwargs):
        self.timesteps.append(timestep.clone())
        return (torch.zeros_like(hidden_states),)


@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_flow_loss_draws_time_through_the_training_shift(shift):
    from fastvideo.shapes.pretrain.video import VideoBundle, flow_loss, video_tokenizers

    tokenizers = video_tokenizers()
    bundle = VideoBundle(VIDEO_SMOKE, tokenizers)
    bundle.transformer = _TimeRecorder()
    x0 = torch.randn(64, 16, 2, 4, 4)
    loss = flow_loss(bundle, tokenizers, x0, ["a red circle moving right"] * 64, torch.Generator().manual_seed(3),
                     shift=shift)
    u = torch.sigmoid(torch.randn(64, generator=torch.Generator().manual_seed(3)))  # logit-normal, then shifted
    torch.testing.assert_close(bundle.transformer.timesteps[0], 1000 * shift * u / (1 + (shift - 1) * u))
    noise = torch.randn(x0.shape, generator=_after_time(torch.Generator().manual_seed(3), 64))
    torch.testing.assert_close(loss, (noise - x0).square().mean())  # zero prediction: |eps - x0|^2


def _after_time(generator: torch.Generator, batch: int) -> torch.Generator:
    torch.randn(batch, generator=generator)
    return generator


def test_repatching_keeps_the_embedding_of_flat_patches_and_averages_the_output():
    """Patch 2 -> 1: a latent constant on each 2x2 patch embeds every pixel as its patch did, and the new
    output row of a channel is the mean of its 4 sub-position rows; every other weight is copied."""
    old = build_video_transformer(VIDEO_SMOKE, patch_size=2).eval()
    new = repatch_transformer(old, 1)
    assert new.config.patch_size == 1 and repatch_transformer(new, 1) is new
    flat = torch.randn(1, 16, 1, 2, 2).repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)  # (1,16,1,4,4)
    with torch.no_grad():
        coarse = old.x_embedder.proj(flat)  # (1, D, 1, 2, 2)
        fine = new.x_embedder.proj(flat)    # (1, D, 1, 4, 4)
        torch.testing.assert_close(fine, coarse.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4))
        hidden = torch.randn(3, old.proj_out.in_features)
        expected = old.proj_out(hidden).reshape(3, 16, 4).mean(-1)
        torch.testing.assert_close(new.proj_out(hidden), expected)
    same = [name for name in old.state_dict() if not name.startswith(("x_embedder.proj", "proj_out"))]
    assert same and all(torch.equal(old.state_dict()[n], new.state_dict()[n]) for n in same)
    with pytest.raises(ValueError, match="patch 2 -> 1"):
        repatch_transformer(new, 2)
