"""The rule-based verifier of the shapes world (fastvideo/shapes/verifier.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fastvideo.shapes.grammar import BACKGROUND, COLORS, RELATIONS, SHAPES, parse_prompt, prompt_splits
from fastvideo.shapes.render import Shape, render_prompt, render_scene
from fastvideo.shapes.verifier import detect, verify, verify_batch

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _degrade(
    image: np.ndarray, rng: np.random.Generator, sigma: float = 0.7, noise: float = 0.05
) -> np.ndarray:
    """Gaussian blur and additive noise, as a small generator's output might look: float HWC in [0, 1]."""
    blurred = ndimage.gaussian_filter(image.astype(np.float32) / 255.0, (sigma, sigma, 0))
    return np.clip(blurred + rng.normal(0.0, noise, blurred.shape), 0.0, 1.0).astype(np.float32)


def _heldout_texts() -> list[str]:
    return [prompt.text for prompt in prompt_splits(0)[1]]


@pytest.mark.parametrize("size", [64, 32])
def test_ground_truth_renders_of_all_heldout_prompts_are_verified_correct(size):
    rng = np.random.default_rng(size)
    failures = []
    for text in _heldout_texts():
        for _ in range(2):
            verdict = verify(render_prompt(text, rng, size), text)
            if not (verdict.correct and verdict.score == 1.0):
                failures.append((text, verdict.claims))
    assert not failures, failures[:3]


@pytest.mark.parametrize("size", [64, 32])
def test_blurred_and_noisy_renders_are_still_verified_correct(size):
    rng = np.random.default_rng(100 + size)
    texts = _heldout_texts()
    degraded = [_degrade(render_prompt(text, rng, size), rng) for text in texts]
    batch = torch.from_numpy(np.stack(degraded)).permute(0, 3, 1, 2)  # (B, 3, H, W) in [0, 1]
    scores, correct = verify_batch(batch, texts)
    assert scores.shape == correct.shape == (len(texts),) and scores.dtype == torch.float32
    assert correct.sum().item() == len(texts), [t for t, c in zip(texts, correct) if not c][:5]


def test_aliased_renders_at_64_px_are_verified_correct():
    """Without anti-aliasing, 6-px discs at 32 px are octagons; at 64 px aliasing is harmless."""
    rng = np.random.default_rng(9)
    texts = _heldout_texts()
    assert all(verify(render_prompt(text, rng, antialias=False), text).correct for text in texts)


def _mismatches(text: str) -> list[str]:
    """Prompts that differ from ``text`` in one checkable way (colour, shape, count or relation)."""
    claims = parse_prompt(text)
    first = claims[0]
    new_color = next(c for c in COLORS if all(c != claim.color for claim in claims))
    new_shape = next(s for s in SHAPES if all(s != claim.shape for claim in claims))
    words = text.split()
    recolored = " ".join([words[0], new_color, *words[2:]])
    reshaped_noun = new_shape if first.count == 1 else new_shape + "s"
    reshaped = " ".join([*words[:2], reshaped_noun, *words[3:]])
    variants = [recolored, reshaped]
    if len(claims) == 1:
        number = ["one", "two", "three", "four"][first.count % 4]  # count + 1, four -> one
        noun = first.shape if number == "one" else first.shape + "s"
        variants.append(f"{number} {first.color} {noun}")
    if first.relation:
        variants.append(text.replace(first.relation, OPPOSITE[first.relation]))
    return variants


def test_mismatched_captions_are_never_verified_correct():
    rng = np.random.default_rng(3)
    checked = 0
    for text in _heldout_texts():
        image = render_prompt(text, rng)
        for wrong in _mismatches(text):
            parse_prompt(wrong)  # still inside the grammar
            verdict = verify(image, wrong)
            assert not verdict.correct and verdict.score < 1.0, (text, wrong, verdict.claims)
            checked += 1
    assert checked >= 2.5 * len(_heldout_texts())


def _scene(*shapes: tuple[str, str, float, float]) -> np.ndarray:
    return render_scene([Shape(kind, color, cx, cy, 16.0) for kind, color, cx, cy in shapes])


@pytest.mark.parametrize(
    "prompt, shapes, expected_score",
    [
        # single: 2 claims (count, nothing else)
        ("a red circle", [("circle", "red", 20, 20)], 1.0),
        ("a red circle", [("square", "red", 20, 20)], 0.0),
        ("a red circle", [("circle", "green", 20, 20)], 0.0),
        ("a red circle", [("circle", "red", 20, 20), ("square", "blue", 46, 46)], 0.5),
        ("a red circle", [], 0.5),
        # counting: 2 claims
        ("three green triangles", [("triangle", "green", x, 16) for x in (12, 32, 52)], 1.0),
        ("three green triangles", [("triangle", "green", x, 16) for x in (12, 32)], 0.5),
        ("two green triangles", [("triangle", "green", x, 16) for x in (12, 32, 52)], 0.5),
        (
            "two green triangles",
            [("triangle", "green", 12, 16), ("triangle", "green", 32, 16), ("circle", "green", 32, 46)],
            0.5,
        ),
        # two objects / colour binding: 3 claims
        ("a red circle and a blue square", [("circle", "red", 16, 16), ("square", "blue", 46, 46)], 1.0),
        ("a red circle and a blue square", [("circle", "red", 16, 16), ("square", "green", 46, 46)], 1 / 3),
        ("a red circle and a blue square", [("circle", "blue", 16, 16), ("square", "red", 46, 46)], 0.0),
        ("a red circle and a red square", [("circle", "red", 16, 16), ("circle", "red", 46, 46)], 1 / 3),
        # position: 4 claims (two counts, relation, nothing else)
        (
            "a yellow square left of a purple circle",
            [("square", "yellow", 14, 32), ("circle", "purple", 48, 30)],
            1.0,
        ),
        (
            "a yellow square left of a purple circle",
            [("square", "yellow", 48, 32), ("circle", "purple", 14, 30)],
            0.75,
        ),
        (
            "a yellow square left of a purple circle",
            [("square", "yellow", 32, 12), ("circle", "purple", 32, 48)],
            0.75,
        ),
        (
            "a yellow square above a purple circle",
            [("square", "yellow", 32, 12), ("circle", "purple", 32, 48)],
            1.0,
        ),
        ("a yellow square above a purple circle", [("square", "yellow", 32, 12)], 0.5),
        (
            "a yellow square below a purple circle",
            [("square", "yellow", 32, 12), ("circle", "purple", 32, 48), ("triangle", "black", 52, 12)],
            0.5,
        ),
    ],
)
def test_score_is_the_fraction_of_satisfied_claims(prompt, shapes, expected_score):
    verdict = verify(_scene(*shapes), prompt)
    assert verdict.score == pytest.approx(expected_score), verdict.claims
    assert verdict.correct == (expected_score == 1.0)
    assert verdict.num_detected == len(shapes) == len(verdict.detected)


def test_detections_report_colour_kind_centroid_and_area():
    shapes = [
        Shape("circle", "purple", 15.2, 17.7, 18.0),
        Shape("square", "yellow", 46.5, 14.0, 14.0),
        Shape("triangle", "black", 30.0, 46.0, 20.0),
    ]
    detections = sorted(detect(render_scene(shapes)), key=lambda d: d.centroid[1] + d.centroid[0])
    truth = sorted(shapes, key=lambda s: s.centroid[1] + s.centroid[0])
    expected_areas = [np.pi / 4 * 18**2, 14.0**2, 0.5 * 20.0**2]
    for det, shape in zip(detections, truth):
        assert (det.color, det.kind) == (shape.color, shape.kind)
        assert np.allclose(det.centroid, shape.centroid, atol=0.3)
    assert sorted(d.area for d in detections) == pytest.approx(sorted(expected_areas), rel=0.03)


def test_every_input_layout_gives_the_same_verdict():
    image = render_prompt("a blue triangle right of a green circle", np.random.default_rng(0))
    prompt = "a blue triangle right of a green circle"
    chw = image.transpose(2, 0, 1).astype(np.float32) / 255.0
    layouts = [
        image,
        chw,
        chw.transpose(1, 2, 0),
        torch.from_numpy(chw),
        torch.from_numpy(chw).to(torch.bfloat16),
        torch.from_numpy(image),  # uint8 HWC tensor: 0-255
    ]
    scores = [verify(layout, prompt).score for layout in layouts]
    assert scores == [1.0] * len(layouts)
    assert verify(image, prompt.replace("right", "left")).score == 0.75


def test_noise_specks_and_elongated_blobs_are_not_counted_as_shapes():
    rng = np.random.default_rng(0)
    background = np.full((64, 64, 3), BACKGROUND, np.uint8)
    assert detect(_degrade(background, rng, sigma=0.0, noise=0.08)) == []
    specks = background.copy()
    specks[10, 10] = COLORS["red"]
    specks[40:42, 50:52] = COLORS["blue"]
    assert detect(specks) == []
    bar = background.copy()
    bar[28:34, 8:56] = COLORS["green"]  # a 48 x 6 bar is no square
    (found,) = detect(bar)
    assert found.color == "green" and found.kind == "other"
    verdict = verify(bar, "a green square")
    assert verdict.score == 0.0 and not verdict.correct


def test_off_palette_but_close_colours_are_still_recognised():
    image = render_scene([Shape("square", "red", 20, 20, 16), Shape("circle", "blue", 44, 44, 18)]).astype(
        int
    )
    tinted = np.clip(image + np.array([-20, 15, 10]), 0, 255).astype(np.uint8)
    assert verify(tinted, "a red square and a blue circle").correct


def test_verify_batch_accepts_lists_and_checks_lengths():
    rng = np.random.default_rng(1)
    prompts = ["a red circle", "two black squares", "a green triangle above a yellow circle"]
    images = [render_prompt(text, rng) for text in prompts]
    scores, correct = verify_batch(images, [prompts[0], prompts[1], prompts[2].replace("above", "below")])
    assert correct.tolist() == [1.0, 1.0, 0.0] and scores.tolist() == [1.0, 1.0, 0.75]
    with pytest.raises(ValueError):
        verify_batch(images, prompts[:2])
    assert set(RELATIONS) == set(OPPOSITE)
