"""A labelled grid of samples: the before/after figure of the shapes GRPO runner, readable on its own.

Rows are policies (base, final, final_ema), columns prompts. Every tile is upscaled (nearest
neighbour, to about TILE_TARGET px) inside a BORDER-px frame coloured by the verifier's verdict
(green: all claims hold, red: not, grey: unknown), with a check / cross mark and "correct" / "wrong"
under it; each column's prompt (word-wrapped, with its skill) sits above it, each row's name and
held-out accuracy left of it, and a one-line key at the bottom. Text uses PIL's built-in font (no
file, no network). ``layout`` gives the pixel geometry, so tests can find every tile and frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE_TARGET = 192
"""Tiles are upscaled by max(1, TILE_TARGET // height) (64 px: x3, 32 px: x6)."""
VIDEO_TILE_TARGET = 96
"""The video figures' tiles are several frames wide (or a GIF of many frames): 32 px x3."""
BORDER = 5
GAP = 10
LABEL_WIDTH = 118
LINE_HEIGHT = 16
HEADER_LINES = 4
"""Header text lines per column: the skill, then the wrapped prompt (cut with "..." beyond)."""
VERDICT_HEIGHT = 20
FOOTER_LINES = 2
FONT_SIZE = 13
CORRECT = (20, 150, 60)
WRONG = (215, 35, 35)
UNKNOWN = (150, 150, 150)
TEXT = (20, 20, 20)
MUTED = (110, 110, 110)
KEY = ("Rows: policies; columns: held-out prompts. Frame and mark: the verifier's verdict on that image "
       "(green / check: every claim holds; red / cross: some claim fails).")


@dataclass
class FigureLabels:
    """What the figure writes around the tiles (every field optional)."""

    columns: list[str] = field(default_factory=list)
    """Prompt of each column."""
    rows: list[str] = field(default_factory=list)
    """Name of each row (policy)."""
    verdicts: list[list[float] | None] = field(default_factory=list)
    """Per row, 1.0 / 0.0 per tile (correct / wrong), or None (unknown: grey frame)."""
    notes: list[str] = field(default_factory=list)
    """Per row, a line under its name (e.g. its held-out accuracy)."""
    skills: list[str] = field(default_factory=list)
    """Skill of each column (written above its prompt)."""
    key: str = KEY
    """The line(s) at the bottom explaining the figure."""


@dataclass(frozen=True)
class Layout:
    """Pixel geometry of a figure with ``num_rows`` x ``num_columns`` tiles of ``tile`` px."""

    num_rows: int
    num_columns: int
    tile: int
    tile_height: int | None = None

    @property
    def height_tile(self) -> int:
        return self.tile_height or self.tile

    @property
    def header(self) -> int:
        return GAP + HEADER_LINES * LINE_HEIGHT

    @property
    def cell_width(self) -> int:
        return self.tile + 2 * BORDER

    @property
    def cell_height(self) -> int:
        return self.height_tile + 2 * BORDER + VERDICT_HEIGHT

    def frame(self, row: int, column: int) -> tuple[int, int]:
        """(x, y) of the top-left pixel of the tile's coloured frame."""
        return (LABEL_WIDTH + GAP + column * (self.cell_width + GAP),
                self.header + GAP + row * (self.cell_height + GAP))

    def size(self) -> tuple[int, int]:
        """(width, height) of the whole figure."""
        width = LABEL_WIDTH + GAP + self.num_columns * (self.cell_width + GAP)
        height = self.header + GAP + self.num_rows * (self.cell_height + GAP) + FOOTER_LINES * LINE_HEIGHT + GAP
        return width, height


def tile_scale(height: int, target: int = TILE_TARGET) -> int:
    return max(1, target // height)


def font(size: int = FONT_SIZE):
    """PIL's built-in font: scalable where Pillow has FreeType (>= 10.1), else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size argument
        return ImageFont.load_default()


def _text_width(face, text: str) -> float:
    return face.getlength(text) if hasattr(face, "getlength") else 6.0 * len(text)


def wrap(text: str, width: float, face, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` px; the last allowed line ends in "..." when text is left over."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(face, lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and _text_width(face, lines[-1] + "...") > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += "..."
    return lines


def _to_uint8_hwc(images) -> np.ndarray:
    """(K, 3, H, W) float in [0, 1] (tensor or array) or (K, H, W, 3) uint8 -> (K, H, W, 3) uint8."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().float().numpy()
    array = np.asarray(images)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.shape[-1] != 3:
        array = np.moveaxis(array, 1, -1)
    return array


def _mark(draw: ImageDraw.ImageDraw, x: int, y: int, correct: bool, color: tuple[int, int, int]) -> None:
    """A 12-px check mark or cross with its top-left at (x, y)."""
    if correct:
        draw.line([(x, y + 7), (x + 4, y + 11), (x + 12, y + 1)], fill=color, width=3)
    else:
        draw.line([(x + 1, y + 1), (x + 11, y + 11)], fill=color, width=3)
        draw.line([(x + 11, y + 1), (x + 1, y + 11)], fill=color, width=3)


def annotated_grid(grids: list, labels: FigureLabels | None = None, tile_target: int = TILE_TARGET,
                   ) -> Image.Image:
    """The labelled figure of ``grids`` (one (K, 3, H, W) batch in [0, 1], or (K, H, W, 3) uint8, per
    row; same K and size). Tiles are upscaled by ``tile_scale(H, tile_target)``."""
    labels = labels or FigureLabels()
    rows = [_to_uint8_hwc(grid) for grid in grids]
    num_columns, height, width = rows[0].shape[:3]
    scale = tile_scale(height, tile_target)
    layout = Layout(len(rows), num_columns, width * scale, height * scale)
    canvas = Image.new("RGB", layout.size(), "white")
    draw = ImageDraw.Draw(canvas)
    face, small, big = font(), font(FONT_SIZE - 1), font(FONT_SIZE + 3)
    for column in range(num_columns):
        x, _ = layout.frame(0, column)
        lines = [(labels.skills[column], MUTED)] if column < len(labels.skills) else []
        if column < len(labels.columns):
            prompt = wrap(labels.columns[column], layout.cell_width, face, HEADER_LINES - len(lines))
            lines += [(line, TEXT) for line in prompt]
        top = layout.header - len(lines) * LINE_HEIGHT  # bottom-aligned, just above the tiles
        for k, (line, color) in enumerate(lines):
            draw.text((x, top + k * LINE_HEIGHT), line, fill=color, font=small if color == MUTED else face)
    for r, pixels in enumerate(rows):
        _, y = layout.frame(r, 0)
        name = labels.rows[r] if r < len(labels.rows) else ""
        draw.text((GAP, y + layout.height_tile // 2 - LINE_HEIGHT - 4), name, fill=TEXT, font=big)
        if r < len(labels.notes):
            for k, line in enumerate(wrap(labels.notes[r], LABEL_WIDTH - GAP, small, 2)):
                draw.text((GAP, y + layout.height_tile // 2 + k * LINE_HEIGHT), line, fill=MUTED, font=small)
        verdicts = labels.verdicts[r] if r < len(labels.verdicts) else None
        for column in range(num_columns):
            x, y = layout.frame(r, column)
            verdict = None if verdicts is None else bool(verdicts[column] >= 0.5)
            color = UNKNOWN if verdict is None else (CORRECT if verdict else WRONG)
            draw.rectangle([x, y, x + layout.cell_width - 1, y + layout.height_tile + 2 * BORDER - 1], fill=color)
            tile = Image.fromarray(pixels[column]).resize((layout.tile, layout.height_tile), Image.NEAREST)
            canvas.paste(tile, (x + BORDER, y + BORDER))
            if verdict is not None:
                below = y + layout.height_tile + 2 * BORDER + 4
                _mark(draw, x + 2, below, verdict, color)
                draw.text((x + 20, below - 1), "correct" if verdict else "wrong", fill=color, font=face)
    _, bottom = layout.size()
    key_top = bottom - GAP - FOOTER_LINES * LINE_HEIGHT
    for k, line in enumerate(wrap(labels.key, layout.size()[0] - 2 * GAP, small, FOOTER_LINES)):
        draw.text((GAP, key_top + k * LINE_HEIGHT), line, fill=MUTED, font=small)
    return canvas


__all__ = ["FigureLabels", "Layout", "VIDEO_TILE_TARGET", "annotated_grid", "tile_scale", "wrap"]
