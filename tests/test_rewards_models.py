"""Model-based rewards (HPS-v2.1, PickScore, CLIP score, ImageReward) at tiny size.

Each test builds the real model class small, saves it in the published file layout under a temp
dir (fastvideo.rewards.tiny) and loads it through the reward's production loader.
"""

from __future__ import annotations

import pytest
import torch

from fastvideo.config import RewardsConfig, RewardTermConfig
from fastvideo.rewards import RewardSet, RewardWeightsError, RewardWeightsNotFoundError, build_reward, tiny

pytestmark = pytest.mark.slow  # the module fixture imports open_clip and transformers (5-20 s here)

MODEL_REWARDS = ["hps", "pickscore", "clip_score", "image_reward"]
PROMPTS = ["a red circle", "a blue square on the cat", "photo of a dog", "green triangle", "a cat"]
DOWNLOAD_HINTS = {
    "hps": "hf download xswu/HPSv2 HPS_v2.1_compressed.pt --local-dir hps_ckpt",
    "pickscore": "hf download yuvalkirstain/PickScore_v1",
    "clip_score": "hf download openai/clip-vit-large-patch14",
    "image_reward": "hf download THUDM/ImageReward ImageReward.pt med_config.json",
}


@pytest.fixture(scope="module")
def tiny_kwargs(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("tiny_rewards")
    clip = tiny.write_tiny_clip(root / "clip")
    return {
        "hps": tiny.write_tiny_hps(root / "hps"),
        "pickscore": clip,
        "clip_score": clip,
        "image_reward": tiny.write_tiny_image_reward(root / "image_reward"),
    }


@pytest.fixture(scope="module")
def rewards(tiny_kwargs) -> dict:
    return {name: build_reward(name, **tiny_kwargs[name]) for name in MODEL_REWARDS}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(5, 3, 40, 48, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_scores_are_finite_deterministic_float32_cpu(rewards, images, name):
    first = rewards[name](images, PROMPTS)
    second = rewards[name](images, PROMPTS)
    assert first.shape == (5,) and first.dtype == torch.float32 and first.device.type == "cpu"
    assert torch.isfinite(first).all() and torch.equal(first, second)
    assert first.std() > 1e-4  # not a constant


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_scores_depend_on_image_and_prompt(rewards, images, name):
    reference = rewards[name](images, PROMPTS)
    other_images = torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    assert ((rewards[name](other_images, PROMPTS) - reference).abs() > 1e-4).all()
    shifted = PROMPTS[1:] + PROMPTS[:1]
    assert ((rewards[name](images, shifted) - reference).abs() > 1e-4).all()


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_batched_scores_equal_one_by_one(rewards, images, name):
    reward = rewards[name]
    batched = reward(images, PROMPTS)
    single = torch.cat([reward(images[i : i + 1], PROMPTS[i : i + 1]) for i in range(len(PROMPTS))])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_missing_weights_error_prints_the_download_command(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # the default relative paths do not exist here
    with pytest.raises(RewardWeightsNotFoundError) as error:
        build_reward(name, device="cpu")
    assert isinstance(error.value, FileNotFoundError)
    assert DOWNLOAD_HINTS[name] in str(error.value)


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_wrong_weights_file_is_a_clear_error(tmp_path, tiny_kwargs, name):
    kwargs = dict(tiny_kwargs[name])
    if name == "hps":
        (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
        kwargs["checkpoint"] = str(tmp_path / "garbage.pt")
    elif name == "image_reward":  # a readable checkpoint of another model: the HPS one
        kwargs["checkpoint"] = tiny_kwargs["hps"]["checkpoint"]
    else:  # a directory without config.json
        kwargs["model_dir"] = str(tmp_path)
    with pytest.raises(RewardWeightsError) as error:
        build_reward(name, **kwargs)
    assert DOWNLOAD_HINTS[name] in str(error.value)


def test_hps_loads_the_checkpoint_and_scores_the_cosine(tiny_kwargs, rewards, images):
    import open_clip

    from fastvideo.rewards.preprocess import preprocess_images

    reward = rewards["hps"]
    saved = torch.load(tiny_kwargs["hps"]["checkpoint"], weights_only=True)["state_dict"]
    for key, value in reward.model.state_dict().items():
        torch.testing.assert_close(value, saved[key], atol=0, rtol=0)
    model = reward.model
    tokens = open_clip.get_tokenizer(tiny_kwargs["hps"]["model_name"])(PROMPTS)
    image_features = model.encode_image(preprocess_images(images, 32, mode="longest_pad"))
    text_features = model.encode_text(tokens)
    expected = torch.nn.functional.cosine_similarity(image_features, text_features, dim=-1)
    torch.testing.assert_close(reward(images, PROMPTS), expected.detach(), atol=1e-5, rtol=0)


def test_hps_checkpoint_from_another_seed_gives_other_scores(tmp_path, rewards, images):
    other = build_reward("hps", **tiny.write_tiny_hps(tmp_path, seed=1))
    assert not torch.allclose(other(images, PROMPTS), rewards["hps"](images, PROMPTS), atol=1e-3)


def test_image_reward_scores_a_video_as_the_mean_over_frames(rewards, images):
    reward = rewards["image_reward"]
    video = torch.stack([images[:3], images[1:4]])  # (2, T=3, 3, H, W)
    frame_scores = reward(images[:4], PROMPTS[:4])
    expected = torch.stack(
        [reward(images[:3], ["a cat"] * 3).mean(), reward(images[1:4], ["a dog"] * 3).mean()]
    )
    torch.testing.assert_close(reward(video, ["a cat", "a dog"]), expected, atol=1e-5, rtol=0)
    assert frame_scores.shape == (4,)


def test_pickscore_and_clip_score_conventions(tiny_kwargs, rewards, images):
    logit = rewards["pickscore"](images, PROMPTS)
    cosine = build_reward("pickscore", convention="cosine", **tiny_kwargs["pickscore"])(images, PROMPTS)
    scale = rewards["pickscore"].scorer.model.logit_scale.exp().item()
    assert abs(scale - 1 / 0.07) < 1e-3  # CLIP's initial temperature in the tiny model
    torch.testing.assert_close(logit, scale * cosine, atol=1e-5, rtol=1e-5)
    assert cosine.abs().max() <= 1
    clip_cosine = rewards["clip_score"](images, PROMPTS)
    torch.testing.assert_close(clip_cosine, cosine, atol=1e-6, rtol=0)  # same tiny CLIP here
    torchmetrics = build_reward("clip_score", convention="torchmetrics", **tiny_kwargs["clip_score"])
    torch.testing.assert_close(
        torchmetrics(images, PROMPTS), 100 * clip_cosine.clamp(min=0), atol=1e-4, rtol=0
    )
    with pytest.raises(ValueError, match="convention"):
        build_reward("pickscore", convention="softmax", **tiny_kwargs["pickscore"])


def test_reward_set_with_a_thresholded_model_reward(tiny_kwargs, images):
    cfg = RewardsConfig(
        terms=[
            RewardTermConfig("hps", 1.0, kwargs=tiny_kwargs["hps"]),
            RewardTermConfig("hps", 2.0, threshold=-0.2, kwargs=tiny_kwargs["hps"]),
        ]
    )
    total, breakdown = RewardSet.from_config(cfg, device="cpu")(images, PROMPTS)
    raw = breakdown["hps"]
    assert torch.equal(breakdown["hps_2"], (raw > -0.2).float()) and 0 < breakdown["hps_2"].sum() < 5
    torch.testing.assert_close(total, raw + 2 * (raw > -0.2).float())


@pytest.mark.optin
def test_full_size_vit_h_14_hps_scores_two_images(tmp_path):
    import open_clip

    model = open_clip.create_model("ViT-H-14", pretrained=None)
    torch.save({"state_dict": {k: v.half() for k, v in model.state_dict().items()}}, tmp_path / "hps.pt")
    del model
    reward = build_reward("hps", checkpoint=str(tmp_path / "hps.pt"), device="auto", batch_size=2)
    scores = reward(torch.rand(2, 3, 512, 512), ["a photo of a cat", "a red car"])
    assert scores.shape == (2,) and torch.isfinite(scores).all() and (scores.abs() <= 1).all()
