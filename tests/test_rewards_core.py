"""Reward interface, registry, rule-based rewards, RewardSet arithmetic and tensor preprocessing."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastvideo.config import RewardsConfig, RewardTermConfig
from fastvideo.rewards import (
    Reward,
    RewardSet,
    ThresholdReward,
    available_rewards,
    build_reward,
    register_reward,
    resolve_device,
)
from fastvideo.rewards.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess_images
from fastvideo.rewards.reward_set import unique_keys

BUILTIN = {
    "brightness",
    "jpeg_compressibility",
    "jpeg_incompressibility",
    "shapes_verifier",
    "hps",
    "pickscore",
    "clip_score",
    "image_reward",
}


class FixedReward(Reward):
    """Returns a fixed score per prompt (for RewardSet arithmetic)."""

    input_kind = "image"

    def __init__(self, table: dict[str, float], device=None, batch_size: int = 16):
        super().__init__(device="cpu", batch_size=batch_size)
        self.table = table
        self.calls = 0

    def score_batch(self, images, prompts):
        self.calls += 1
        return torch.tensor([self.table[p] for p in prompts])


@pytest.mark.slow  # a fresh interpreter imports torch
def test_import_does_not_load_open_clip_or_transformers():
    code = (
        "import sys, fastvideo.rewards as r; r.available_rewards(); "
        "print(sorted(m for m in ('open_clip', 'transformers', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert BUILTIN <= set(available_rewards())
    with pytest.raises(ValueError) as error:
        build_reward("no_such_reward")
    for name in BUILTIN:
        assert name in str(error.value)
    with pytest.raises(ValueError, match="already registered"):
        register_reward("brightness")(FixedReward)


def test_device_resolution_auto_means_cuda_if_available():
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert build_reward("brightness", device="auto").device == expected


def test_brightness_is_mean_pixel_value_and_averages_video_frames():
    reward = build_reward("brightness")
    images = torch.stack([torch.full((3, 8, 8), 0.25), torch.zeros(3, 8, 8)])
    images[1, 0] = 0.9  # mean = 0.9 / 3
    assert torch.allclose(reward(images, ["a", "b"]), torch.tensor([0.25, 0.3]))
    video = torch.stack([torch.full((4, 3, 8, 8), v) for v in (0.0, 1.0)])  # (2, T=4, 3, 8, 8)
    video[0, :2] = 1.0  # half of the frames white -> 0.5
    scores = reward(video, ["a", "b"])
    assert scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert torch.allclose(scores, torch.tensor([0.5, 1.0]))


def test_reward_chunks_batches_and_validates_inputs():
    reward = FixedReward({"x": 1.0, "y": 2.0}, batch_size=2)
    scores = reward(torch.zeros(5, 3, 4, 4), ["x", "y", "x", "y", "x"])
    assert reward.calls == 3 and scores.tolist() == [1.0, 2.0, 1.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="prompts"):
        reward(torch.zeros(2, 3, 4, 4), ["x"])
    with pytest.raises(ValueError, match="shape"):
        reward(torch.zeros(2, 4, 4), ["x", "y"])


def test_jpeg_rewards_flat_images_compress_better_than_noise():
    generator = torch.Generator().manual_seed(0)
    images = torch.stack([torch.full((3, 64, 64), 0.5), torch.rand(3, 64, 64, generator=generator)])
    compressibility = build_reward("jpeg_compressibility")(images, ["", ""])
    incompressibility = build_reward("jpeg_incompressibility")(images, ["", ""])
    assert torch.equal(compressibility, -incompressibility)
    assert incompressibility[1] > 5 * incompressibility[0] > 0  # noise: several kB, flat: well under 1 kB
    assert 0.2 < incompressibility[0] < 1.5 and 5 < incompressibility[1] < 20


def test_threshold_reward_is_binary_strictly_above():
    inner = FixedReward({"low": 0.27, "at": 0.28, "high": 0.3})
    binary = ThresholdReward(inner, 0.28)
    scores = binary(torch.zeros(3, 3, 4, 4), ["low", "at", "high"])
    assert scores.tolist() == [0.0, 0.0, 1.0] and binary.input_kind == "image"


def _fixed_set(aggregation: str) -> RewardSet:
    from fastvideo.rewards.reward_set import RewardTerm

    a = FixedReward({"p0": 1.0, "p1": 2.0, "p2": 3.0, "p3": 5.0})
    b = FixedReward({"p0": 10.0, "p1": 0.0, "p2": 0.0, "p3": 0.0})
    return RewardSet([RewardTerm("a", a, 2.0), RewardTerm("b", b, 0.5)], aggregation=aggregation)


def test_reward_set_weighted_sum_and_breakdown():
    reward_set = _fixed_set("sum")
    total, breakdown = reward_set(torch.zeros(4, 3, 4, 4), ["p0", "p1", "p2", "p3"])
    assert list(breakdown) == ["a", "b"]
    assert total.tolist() == [2 * 1 + 0.5 * 10, 4.0, 6.0, 10.0]


def test_reward_set_advantages_sum_versus_advantage_aggregation():
    images, prompts = torch.zeros(4, 3, 4, 4), ["p0", "p1", "p2", "p3"]
    # groups of 2: (p0, p1) and (p2, p3); sample std of two values x, y is |x - y| / sqrt(2)
    unit = 1 / math.sqrt(2)  # (x - mean) / std for a pair = +-1/sqrt(2)
    summed = _fixed_set("sum")
    total, breakdown = summed(images, prompts)  # totals 7, 4 | 6, 10
    expected_sum = torch.tensor([unit, -unit, -unit, unit])
    assert torch.allclose(summed.advantages(breakdown, 2), expected_sum, atol=1e-6)
    assert torch.allclose(summed.advantages(total, 2), expected_sum, atol=1e-6)
    aggregated = _fixed_set("advantage")
    # a: (1,2) -> (-u, u), (3,5) -> (-u, u); b: (10,0) -> (u, -u), (0,0) -> (0, 0)
    expected = torch.tensor([2 * -unit + 0.5 * unit, 2 * unit - 0.5 * unit, -2 * unit, 2 * unit])
    assert torch.allclose(aggregated.advantages(breakdown, 2), expected, atol=1e-6)
    with pytest.raises(ValueError, match="breakdown"):
        aggregated.advantages(total, 2)


def test_reward_set_from_config_keys_thresholds_and_weights():
    cfg = RewardsConfig(
        terms=[
            RewardTermConfig("brightness", 1.0),
            RewardTermConfig("brightness", 3.0, threshold=0.5),
            RewardTermConfig("jpeg_compressibility", 0.0, kwargs={"quality": 80}),
        ],
        aggregation="advantage",
    )
    reward_set = RewardSet.from_config(cfg, device="cpu")
    assert reward_set.weights == {"brightness": 1.0, "brightness_2": 3.0, "jpeg_compressibility": 0.0}
    assert reward_set.terms[2].reward.quality == 80
    images = torch.stack([torch.full((3, 8, 8), 0.25), torch.full((3, 8, 8), 0.75)])
    total, breakdown = reward_set(images, ["", ""])
    assert breakdown["brightness_2"].tolist() == [0.0, 1.0]
    assert torch.allclose(total, torch.tensor([0.25, 0.75 + 3.0]))
    assert unique_keys(["a", "b", "a", "a"]) == ["a", "b", "a_2", "a_3"]


def test_shapes_verifier_scores_ground_truth_renders():
    render = pytest.importorskip("fastvideo.shapes.render", reason="fastvideo.shapes.render not written yet")
    rng = np.random.default_rng(0)
    prompts = ["a red circle", "two blue squares", "a green triangle left of a red circle"]
    images = torch.stack(
        [
            torch.from_numpy(render.render_prompt(p, rng, size=64)).permute(2, 0, 1).float() / 255
            for p in prompts
        ]
    )
    score = build_reward("shapes_verifier", mode="score")
    binary = build_reward("shapes_verifier", mode="binary")
    assert score(images, prompts).tolist() == [1.0, 1.0, 1.0]
    assert binary(images, prompts).tolist() == [1.0, 1.0, 1.0]
    wrong = ["a blue circle", "two blue squares", "a green triangle right of a red circle"]
    wrong_scores = score(images, wrong)
    assert wrong_scores[1] == 1.0 and (wrong_scores[[0, 2]] < 1).all()
    assert binary(images, wrong).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="mode"):
        build_reward("shapes_verifier", mode="soft")


def _pil_reference(image: np.ndarray, size: int, mode: str) -> torch.Tensor:
    """The published PIL pipelines: Resize+CenterCrop (CLIP) or ResizeMaxSize+pad (HPS), ToTensor, Normalize."""
    from PIL import Image
    from torchvision import transforms

    pil = Image.fromarray(image)
    if mode == "shortest_crop":
        pil = transforms.CenterCrop(size)(transforms.Resize(size, transforms.InterpolationMode.BICUBIC)(pil))
    else:
        width, height = pil.size
        scale = size / max(width, height)
        new_width, new_height = round(width * scale), round(height * scale)
        resized = pil.resize((new_width, new_height), Image.BICUBIC)
        pil = Image.new("RGB", (size, size))
        pil.paste(resized, ((size - new_width) // 2, (size - new_height) // 2))
    tensor = transforms.ToTensor()(pil)
    return transforms.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)(tensor)


@pytest.mark.parametrize("mode", ["shortest_crop", "longest_pad"])
def test_tensor_preprocessing_matches_pil_pipeline(mode):
    rng = np.random.default_rng(0)
    coarse = rng.random((12, 18, 3))  # smooth-ish non-square content, upsampled 8x
    image = (np.kron(coarse, np.ones((8, 8, 1))) * 255).astype(np.uint8)  # (96, 144, 3)
    reference = _pil_reference(image, 64, mode)
    ours = preprocess_images(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, 64, mode=mode)[0]
    assert ours.shape == reference.shape == (3, 64, 64)
    difference = (ours - reference).abs() * 0.27  # back to [0, 1] pixel units
    assert difference.mean() < 3e-3 and difference.max() < 0.06
