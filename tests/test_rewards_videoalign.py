"""VideoAlign reward at a tiny Qwen2-VL config, written in the published checkpoint layout and loaded
through the real loader: shape, determinism, batching, sensitivity, heads/normalisation, LoRA merge
and missing-file errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from fastvideo.rewards import RewardWeightsNotFoundError, build_reward
from fastvideo.rewards.video_tiny import (
    TINY_INFERENCE_CONFIG,
    TINY_LORA_ALPHA,
    TINY_LORA_RANK,
    write_tiny_videoalign,
)
from fastvideo.rewards.videoalign import frame_size, sample_frame_indices

PROMPTS = ["a cat walks on the grass", "a red car in the city", "a dog!"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_tiny_videoalign(tmp_path_factory.mktemp("videoalign"))


@pytest.fixture(scope="module")
def reward(files):
    return build_reward("videoalign", **files, batch_size=3)


def _videos(seed=0, count=3):
    return torch.rand(count, 5, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_scores_shape_finite_deterministic(reward):
    assert reward.input_kind == "video"
    videos = _videos()
    scores = reward(videos, PROMPTS)
    assert scores.shape == (3,) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert torch.equal(reward(videos, PROMPTS), scores)


def test_batch_equals_one_by_one(reward):
    videos = _videos()
    singles = torch.cat([reward(videos[i:i + 1], PROMPTS[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(reward(videos, PROMPTS), singles, rtol=1e-4, atol=1e-5)


def test_scores_change_with_the_video_and_the_prompt(reward):
    videos = _videos()
    raw = reward.raw_scores(videos, [PROMPTS[0]] * 3)
    assert (raw[0] - raw[1]).abs().min() > 1e-4  # every head sees the video
    other_prompt = reward.raw_scores(videos[:1], [PROMPTS[1]])
    assert abs(float(other_prompt[0, 2] - raw[0, 2])) > 1e-4  # text alignment reads the prompt
    torch.testing.assert_close(other_prompt[0, :2], raw[0, :2])  # VQ/MQ tokens come before the prompt


def test_heads_and_normalisation(files, reward):
    videos = _videos()
    raw = reward.raw_scores(videos, PROMPTS)
    mean = torch.tensor([TINY_INFERENCE_CONFIG[f"{h}_mean"] for h in ("VQ", "MQ", "TA")])
    std = torch.tensor([TINY_INFERENCE_CONFIG[f"{h}_std"] for h in ("VQ", "MQ", "TA")])
    normalised = (raw - mean) / std
    for index, head in enumerate(("vq", "mq", "ta")):
        scorer = build_reward("videoalign", **files, head=head)
        torch.testing.assert_close(scorer(videos, PROMPTS), normalised[:, index], rtol=1e-4, atol=1e-5)
    weighted = build_reward("videoalign", **files, head="weighted", weights={"VQ": 1.0, "MQ": 0.5, "TA": 0.0})
    torch.testing.assert_close(weighted(videos, PROMPTS), normalised[:, 0] + 0.5 * normalised[:, 1],
                               rtol=1e-4, atol=1e-5)
    custom = build_reward("videoalign", **files, head="mq", mean=[0, 1, 0], std=[1, 3, 1])
    torch.testing.assert_close(custom(videos, PROMPTS), (raw[:, 1] - 1) / 3, rtol=1e-4, atol=1e-5)
    unnormalised = build_reward("videoalign", **files, head="ta", normalize=False)
    torch.testing.assert_close(unnormalised(videos, PROMPTS), raw[:, 2], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="head"):
        build_reward("videoalign", **files, head="overall")


def test_checkpoint_lora_is_merged_and_overrides_the_base(files, reward):
    state = torch.load(f"{files['checkpoint_dir']}/checkpoint-7/model.pth", weights_only=True)
    prefix = "base_model.model.model.layers.0.self_attn.q_proj."
    expected = state[prefix + "base_layer.weight"] + TINY_LORA_ALPHA / TINY_LORA_RANK * (
        state[prefix + "lora_B.default.weight"] @ state[prefix + "lora_A.default.weight"])
    backbone = reward.model.backbone
    torch.testing.assert_close(backbone.language_model.layers[0].self_attn.q_proj.weight, expected)
    torch.testing.assert_close(backbone.visual.patch_embed.proj.weight,
                               state["base_model.model.visual.patch_embed.proj.weight"])
    torch.testing.assert_close(reward.model.rm_head.weight, state["base_model.model.rm_head.weight"])


def test_frame_sampling_follows_qwen_vl_utils():
    assert sample_frame_indices(53, 24.0, 2.0).tolist() == [0, 17, 35, 52]  # 53/24*2 = 4.4 -> 4 frames
    assert sample_frame_indices(240, 24.0, 2.0).shape == (20,)
    assert sample_frame_indices(5, 24.0, 2.0).tolist() == [0, 1, 3, 4]  # at least 4 frames
    assert sample_frame_indices(1, 24.0, 2.0).tolist() == [0, 0]  # a single image: 2 identical frames
    assert sample_frame_indices(53, 24.0, 2.0, fixed=8).shape == (8,)
    height, width = frame_size(480, 640, 128 * 28 * 28, 200704)
    assert height % 28 == 0 and width % 28 == 0 and height * width <= 200704 and abs(width / height - 4 / 3) < 0.1


def test_missing_files_raise_with_the_download_command(files, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(files["checkpoint_dir"], copy)
    kwargs = dict(files, checkpoint_dir=str(copy))
    with pytest.raises(RewardWeightsNotFoundError, match="Qwen/Qwen2-VL-2B-Instruct"):
        build_reward("videoalign", **dict(kwargs, base_model_path=str(tmp_path / "no_base")))
    (copy / "checkpoint-7" / "model.pth").rename(copy / "checkpoint-7" / "moved.pth")
    with pytest.raises(RewardWeightsNotFoundError, match="KwaiVGI/VideoReward"):
        build_reward("videoalign", **kwargs)
    shutil.rmtree(copy / "checkpoint-7")
    with pytest.raises(RewardWeightsNotFoundError, match="checkpoint-<step>.*\n.*KwaiVGI/VideoReward"):
        build_reward("videoalign", **kwargs)
    (copy / "model_config.json").unlink()
    with pytest.raises(RewardWeightsNotFoundError, match="model_config.json.*\n.*KwaiVGI/VideoReward"):
        build_reward("videoalign", **kwargs)


def test_checkpoint_without_normalisation_constants_needs_them(files, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(files["checkpoint_dir"], copy)
    config = json.loads((copy / "model_config.json").read_text())
    del config["inference_config"]
    (copy / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="mean and std"):
        build_reward("videoalign", **dict(files, checkpoint_dir=str(copy)))
    raw = build_reward("videoalign", **dict(files, checkpoint_dir=str(copy)), normalize=False)
    assert torch.isfinite(raw(_videos(count=1), PROMPTS[:1])).all()


def test_images_are_refused(reward):
    with pytest.raises(ValueError, match="video input"):
        reward(torch.rand(2, 3, 32, 32), PROMPTS[:2])
