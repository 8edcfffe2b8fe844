"""The second, independently built reading of shapes images (fastvideo/shapes/second_reading.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from fastvideo.shapes.grammar import SKILLS, sample_prompts
from fastvideo.shapes.render import Shape, render_prompt, render_scene
from fastvideo.shapes.second_reading import quantise, read, second_verify
from fastvideo.shapes.verifier import verify

MODULE = Path(__file__).resolve().parents[1] / "fastvideo/shapes/second_reading.py"


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    blurred = ndimage.gaussian_filter(image.astype(np.float32) / 255.0, (0.7, 0.7, 0))
    return np.clip(blurred + rng.normal(0.0, 0.05, blurred.shape), 0.0, 1.0).astype(np.float32)


def test_shares_no_code_with_the_verifier():
    tree = ast.parse(MODULE.read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any("verifier" in name or "render" in name or "quality" in name for name in imported), imported


@pytest.mark.parametrize("degraded", [False, True])
def test_single_object_ground_truth_passes_both_readings(degraded):
    rng = np.random.default_rng(11 + degraded)
    texts = [p.text for p in sample_prompts(120, rng, split="all", skill="single")]
    images = [render_prompt(t, rng) for t in texts]
    if degraded:
        images = [_degrade(image, rng) for image in images]
    both = [verify(i, t).correct and second_verify(i, t).correct for i, t in zip(images, texts)]
    assert np.mean(both) >= 0.95


def test_ground_truth_of_every_skill_passes_both_readings():
    rng = np.random.default_rng(12)
    for skill in SKILLS:
        texts = [p.text for p in sample_prompts(40, rng, split="all", skill=skill)]
        both = [verify(i, t).correct and second_verify(i, t).correct
                for t in texts for i in [render_prompt(t, rng)]]
        assert np.mean(both) >= 0.95, skill


def test_reads_colour_kind_and_position():
    shapes = [Shape("circle", "red", 16, 40, 16), Shape("square", "blue", 46, 20, 14),
              Shape("triangle", "black", 46, 48, 16)]
    found = sorted(read(render_scene(shapes)), key=lambda s: s.color)
    assert [(s.color, s.kind) for s in found] == [("black", "triangle"), ("blue", "square"), ("red", "circle")]
    for shape, truth in zip(found, sorted(shapes, key=lambda s: s.color)):
        assert shape.centroid == pytest.approx(truth.centroid, abs=0.6)


def test_layouts_agree():
    image = render_prompt("a yellow square above a green circle", np.random.default_rng(0))
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    verdicts = [second_verify(x, "a yellow square above a green circle").correct for x in (image, chw, chw.numpy())]
    assert verdicts == [True, True, True]
    assert quantise(image.astype(np.float32) / 255).shape == (64, 64)


def _wrong_images() -> list[tuple[str, np.ndarray]]:
    """Hand-made images that do not satisfy their prompt (each breaks one kind of claim)."""
    circle = Shape("circle", "red", 20, 30, 16)
    square = Shape("square", "blue", 46, 30, 14)
    upside_down = render_scene([Shape("triangle", "green", 30, 30, 18)])[::-1].copy()
    smear = np.full((64, 64, 3), 235, dtype=np.uint8)
    smear[28:34, 8:56] = (220, 30, 30)  # a long red bar: no circle
    merged = render_scene([Shape("circle", "red", 26, 30, 16), Shape("circle", "red", 36, 30, 16)])
    return [
        ("a red circle", render_scene([square])),  # wrong object
        ("a blue circle", render_scene([circle])),  # wrong colour
        ("a red square", render_scene([circle])),  # wrong kind
        ("a red circle", render_scene([circle, square])),  # something else
        ("two red circles", render_scene([circle])),  # too few
        ("a red circle right of a blue square", render_scene([circle, square])),  # wrong relation
        ("a green triangle", upside_down),  # apex down
        ("a red circle", smear),
        ("two red circles", merged),  # two circles fused into one blob
        ("a red circle", np.full((64, 64, 3), 235, dtype=np.uint8)),  # empty
    ]


@pytest.mark.parametrize("index", range(len(_wrong_images())))
def test_hand_made_wrong_images_fail_both_readings(index):
    text, image = _wrong_images()[index]
    assert not verify(image, text).correct
    assert not second_verify(image, text).correct
