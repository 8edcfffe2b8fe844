"""The labelled before/after figure of the shapes runner (fastvideo/shapes/figure.py, policy_eval)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fastvideo.shapes.figure import (
    BORDER,
    CORRECT,
    GAP,
    LABEL_WIDTH,
    WRONG,
    FigureLabels,
    Layout,
    annotated_grid,
    tile_scale,
    wrap,
)
from fastvideo.shapes.policy_eval import EvalResult, save_before_after
from fastvideo.shapes.render import render_prompt

PROMPTS = [("a red circle", "single"), ("two blue squares", "counting"),
           ("a purple triangle right of a yellow circle", "position")]


def _result(correct: list[float], size: int = 64) -> EvalResult:
    records = [{"text": t, "skill": s, "score": c, "correct": c, "num_detected": 1}
               for (t, s), c in zip(PROMPTS, correct)]
    images = np.stack([render_prompt(t, np.random.default_rng(i), size) for i, (t, _) in enumerate(PROMPTS)])
    return EvalResult(records, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)


@pytest.mark.parametrize("size", [64, 32])
def test_before_after_is_upscaled_labelled_and_marks_verdicts(tmp_path, size):
    results = {"base": _result([1.0, 0.0, 0.0], size), "final": _result([1.0, 1.0, 0.0], size), "final_ema": None}
    path = save_before_after(results, [t for t, _ in PROMPTS], tmp_path / "ba.png", indices=[0, 1, 2])
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    layout = Layout(2, 3, tile_scale(size) * size)
    assert layout.tile >= 3 * 64 - 1 and (pixels.shape[1], pixels.shape[0]) == layout.size()
    white = np.all(pixels == 255, axis=-1)
    for column in range(3):  # prompt text above every column, policy name left of every row
        x, y = layout.frame(0, column)
        assert (~white[GAP:y, x:x + layout.cell_width]).sum() > 50
    for row in range(2):
        _, y = layout.frame(row, 0)
        assert (~white[y:y + layout.cell_height, :LABEL_WIDTH]).sum() > 50
    expected = {(0, 0): CORRECT, (0, 1): WRONG, (0, 2): WRONG, (1, 0): CORRECT, (1, 1): CORRECT, (1, 2): WRONG}
    for (row, column), color in expected.items():
        x, y = layout.frame(row, column)
        for px, py in [(x + 1, y + 1), (x + layout.cell_width // 2, y + BORDER // 2),
                       (x + BORDER // 2, y + layout.tile // 2)]:
            assert tuple(pixels[py, px]) == color, (row, column)
        inside = pixels[y + BORDER + 2, x + BORDER + 2]
        assert tuple(inside) == (235, 235, 235)  # the tile itself (background corner), upscaled
    legend = (tmp_path / "ba.txt").read_text()
    assert "base correct, final correct" in legend and "base wrong, final correct" in legend


def test_without_indices_the_frames_are_grey_and_size_is_unchanged(tmp_path):
    results = {"base": _result([1.0, 0.0, 1.0])}
    path = save_before_after(results, [t for t, _ in PROMPTS], tmp_path / "ba.png")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    layout = Layout(1, 3, tile_scale(64) * 64)
    assert (pixels.shape[1], pixels.shape[0]) == layout.size()
    x, y = layout.frame(0, 1)
    assert tuple(pixels[y + 1, x + 1]) not in (CORRECT, WRONG)


def test_wrap_keeps_lines_within_width_and_cuts_with_ellipsis():
    from fastvideo.shapes.figure import font

    face = font()
    lines = wrap("a purple triangle right of a yellow circle", 120, face, 3)
    assert 2 <= len(lines) <= 3 and all(face.getlength(line) <= 120 for line in lines)
    cut = wrap("one two three four five six seven eight nine ten eleven twelve", 60, face, 2)
    assert len(cut) == 2 and cut[-1].endswith("...")


def test_annotated_grid_accepts_uint8_rows_and_no_labels():
    grid = np.full((2, 32, 32, 3), 235, dtype=np.uint8)
    image = annotated_grid([grid, grid])
    assert image.size == Layout(2, 2, tile_scale(32) * 32).size()
    labelled = annotated_grid([grid], FigureLabels(columns=["a", "b"], rows=["base"], verdicts=[[1.0, 0.0]]))
    assert labelled.size == Layout(1, 2, tile_scale(32) * 32).size()
