"""The crisp reward of the shapes world (fastvideo/shapes/quality.py, shapes_verifier mode crisp)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy import ndimage

from fastvideo.shapes.grammar import SKILLS, sample_prompts
from fastvideo.shapes.quality import crisp_batch, crisp_verdict, ideal_shape
from fastvideo.shapes.render import Shape, render_prompt, render_scene
from fastvideo.shapes.verifier import detect, verify

CLEAN = {
    "a red circle": [Shape("circle", "red", 30, 30, 16)],
    "a blue square": [Shape("square", "blue", 30, 34, 15)],
    "a green triangle": [Shape("triangle", "green", 30, 30, 16)],
}


def _float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def _blurred(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return ndimage.gaussian_filter(_float(image), (sigma, sigma, 0))


def _shifted(image: np.ndarray, shift=(0.15, 0.1, 0.0)) -> np.ndarray:
    """Every non-background pixel moved off its palette colour (still the nearest palette colour)."""
    pixels = _float(image)
    ink = np.abs(pixels - 235 / 255).sum(-1) > 0.05
    pixels[ink] = np.clip(pixels[ink] + np.asarray(shift, dtype=np.float32), 0, 1)
    return pixels


def _merged(shape: Shape) -> np.ndarray:
    """The shape fused with a smaller copy of itself: one lumpy blob."""
    other = Shape(shape.kind, shape.color, shape.cx + 0.45 * shape.size, shape.cy + 0.2 * shape.size, 0.8 * shape.size)
    return render_scene([shape, other])


def _texts(num: int, seed: int) -> list[str]:
    return [p.text for p in sample_prompts(num, np.random.default_rng(seed), split="all")]


def test_ground_truth_renders_are_crisp():
    rng = np.random.default_rng(0)
    texts = _texts(150, 0)
    verdicts = [crisp_verdict(render_prompt(text, rng), text) for text in texts]
    assert all(v.correct for v in verdicts)
    assert min(v.crisp for v in verdicts) >= 0.95
    assert min(s.quality for v in verdicts for s in v.shapes) >= 0.95


@pytest.mark.parametrize("text", list(CLEAN))
def test_blur_colour_shift_and_merging_cost_crisp_credit(text):
    clean = render_scene(CLEAN[text])
    base = crisp_verdict(clean, text)
    assert base.crisp >= 0.98
    degraded = {"blur": _blurred(clean), "colour shift": _shifted(clean), "merged": _merged(CLEAN[text][0])}
    for name, image in degraded.items():
        verdict = crisp_verdict(image, text)
        assert verdict.crisp <= base.crisp - 0.04, (name, verdict.crisp)
        assert verdict.crisp <= verdict.score
    # the verifier itself accepts the blurred version: only crisp tells it apart
    blurred = crisp_verdict(degraded["blur"], text)
    assert blurred.score == 1.0 and blurred.correct and blurred.crisp < 0.95


def test_shifted_circle_and_merged_blob_pass_the_verifier_but_not_crisp():
    shape = CLEAN["a red circle"][0]
    for image in (_shifted(render_scene([shape])), _merged(shape)):
        verdict = crisp_verdict(image, "a red circle")
        assert verdict.correct and verdict.score == 1.0
        assert verdict.crisp < 0.9


def test_crisp_is_bounded_by_score_and_in_unit_interval():
    rng = np.random.default_rng(1)
    texts = _texts(120, 1)
    images = []
    for i, text in enumerate(texts):
        image = render_prompt(texts[(i + 1) % len(texts)] if i % 3 == 0 else text, rng)  # some wrong scenes
        images.append(_blurred(image, 0.5 + (i % 4) * 0.4) if i % 2 else _float(image))
    images.append(rng.random((64, 64, 3)).astype(np.float32))  # noise
    images.append(np.full((64, 64, 3), 235 / 255, dtype=np.float32))  # empty
    texts += ["a red circle left of a blue square", "two green triangles"]
    for image, text in zip(images, texts):
        strict = crisp_verdict(image, text)
        partial = crisp_verdict(image, text, partial=True)
        assert 0.0 <= strict.crisp <= strict.score <= 1.0
        assert 0.0 <= partial.crisp <= 1.0 and partial.crisp >= strict.crisp - 1e-9
        assert strict.score == verify(image, text).score and strict.correct == verify(image, text).correct


def test_partial_credit_counts_found_shapes():
    shapes = [Shape("circle", "red", 14, 14, 14), Shape("circle", "red", 46, 14, 14)]
    image = render_scene(shapes)
    strict = crisp_verdict(image, "three red circles")
    partial = crisp_verdict(image, "three red circles", partial=True)
    assert strict.crisp == pytest.approx(0.5)  # count claim 0, nothing else 1
    quality = np.mean([s.quality for s in partial.shapes])
    assert partial.crisp == pytest.approx(((2 / 3) * quality + 1.0) / 2)


def test_ideal_shape_matches_the_rendered_one():
    for kind in ("circle", "square", "triangle"):
        truth = Shape(kind, "purple", 31.3, 28.7, 17.0)
        (detection,) = detect(render_scene([truth]))
        ideal = ideal_shape(detection)
        assert ideal.kind == kind
        assert ideal.size == pytest.approx(truth.size, abs=0.3)
        assert (ideal.cx, ideal.cy) == pytest.approx((truth.cx, truth.cy), abs=0.2)


def test_reward_mode_crisp():
    from fastvideo.rewards import build_reward

    rng = np.random.default_rng(2)
    texts = ["a red circle", "two blue squares", "a green triangle left of a red circle", "a blue triangle"]
    clean = [render_prompt(t, rng) for t in texts]
    batch = torch.from_numpy(np.stack([_float(c) for c in clean] + [_blurred(c, 1.2) for c in clean]))
    batch = batch.permute(0, 3, 1, 2)
    prompts = texts + texts
    crisp = build_reward("shapes_verifier", mode="crisp")(batch, prompts)
    score = build_reward("shapes_verifier", mode="score")(batch, prompts)
    partial = build_reward("shapes_verifier", mode="crisp_partial")(batch, prompts)
    assert crisp.shape == (8,) and crisp.dtype == torch.float32
    assert torch.all(crisp <= score + 1e-6) and torch.all(crisp[:4] >= 0.95)
    assert torch.all(crisp[4:] < crisp[:4]) and torch.all(score[4:] == 1.0)
    assert torch.allclose(partial, crisp)  # every claim satisfied: both credits agree
    reward = build_reward("shapes_verifier", mode="crisp")
    assert torch.equal(reward.correct_batch(batch, prompts), torch.ones(8))  # accuracy stays strict


def test_crisp_batch_speed():
    """256 64-px images in well under two seconds on one core (docstring: ~0.4-0.5 s measured)."""
    rng = np.random.default_rng(4)
    texts = [p.text for skill in SKILLS for p in sample_prompts(52, rng, split="all", skill=skill)][:256]
    images = torch.from_numpy(np.stack([_blurred(render_prompt(t, rng), 0.7) for t in texts])).permute(0, 3, 1, 2)
    crisp_batch(images[:4], texts[:4])
    start = time.perf_counter()
    crisp, score, correct = crisp_batch(images, texts)
    elapsed = time.perf_counter() - start
    assert crisp.shape == score.shape == correct.shape == (256,)
    assert elapsed < 3.0, elapsed  # generous: the test machine's cores are shared
