"""Random scenes that satisfy a prompt, and a fast anti-aliased numpy renderer.

Coordinates are in pixels with pixel (i, j) covering [j, j+1) x [i, i+1); ``cx, cy`` is the centre of
the shape's bounding box and ``size`` its side (square side, circle diameter, triangle base = height).
Triangles point up. Sizes are drawn in [MIN_SIZE_FRAC, MAX_SIZE_FRAC] * image size (12-20 px at 64),
shapes keep a gap of at least GAP_FRAC * image size between bounding boxes and stay inside the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastvideo.shapes.grammar import BACKGROUND, COLORS, Claim, parse_prompt

MIN_SIZE_FRAC = 12 / 64
MAX_SIZE_FRAC = 20 / 64
GAP_FRAC = 4 / 64
BORDER_FRAC = 1 / 64
RELATION_MIN_OFFSET_FRAC = 0.15
"""Sampled position scenes keep >= this * size along the relation's axis (verifier needs 0.1)."""
RELATION_MIN_COSINE = 0.6
"""Sampled position scenes keep the offset within ~53 degrees of the axis (verifier needs 60)."""
MAX_SCENE_TRIES = 200


@dataclass(frozen=True)
class Shape:
    """One flat-coloured shape: kind in SHAPES, color in COLORS, bounding-box centre and side in px."""

    kind: str
    color: str
    cx: float
    cy: float
    size: float

    @property
    def centroid(self) -> tuple[float, float]:
        """Centre of mass (x, y); a triangle's lies size/6 below its bounding-box centre."""
        offset = self.size / 6.0 if self.kind == "triangle" else 0.0
        return (self.cx, self.cy + offset)

    def bbox(self) -> tuple[float, float, float, float]:
        half = self.size / 2.0
        return (self.cx - half, self.cy - half, self.cx + half, self.cy + half)


def relation_holds(
    first: tuple[float, float],
    second: tuple[float, float],
    relation: str,
    image_size: int,
    min_offset_frac: float = 0.1,
    min_cosine: float = 0.5,
) -> bool:
    """Whether the point ``first`` is ``relation`` of ``second`` (image y grows downwards).

    The offset along the relation's axis must be >= ``min_offset_frac * image_size`` and the offset
    direction within arccos(min_cosine) of that axis (0.5: 60 degrees, as in GenEval).
    """
    dx, dy = first[0] - second[0], first[1] - second[1]
    along = {"left of": -dx, "right of": dx, "above": -dy, "below": dy}[relation]
    norm = float(np.hypot(dx, dy))
    return along >= min_offset_frac * image_size and norm > 0 and along / norm >= min_cosine


def _boxes_clear(box: tuple[float, ...], others: list[tuple[float, ...]], gap: float) -> bool:
    x0, y0, x1, y1 = box
    return all(x0 >= b[2] + gap or b[0] >= x1 + gap or y0 >= b[3] + gap or b[1] >= y1 + gap for b in others)


def _place_shapes(objects: list[tuple[str, str]], rng: np.random.Generator, size: int) -> list[Shape] | None:
    """One attempt at placing ``objects`` (colour, kind) without overlap; None if it got stuck."""
    border, gap = BORDER_FRAC * size, GAP_FRAC * size
    placed: list[Shape] = []
    for color, kind in objects:
        for _ in range(50):
            side = float(rng.uniform(MIN_SIZE_FRAC * size, MAX_SIZE_FRAC * size))
            low, high = border + side / 2, size - border - side / 2
            shape = Shape(kind, color, float(rng.uniform(low, high)), float(rng.uniform(low, high)), side)
            if _boxes_clear(shape.bbox(), [p.bbox() for p in placed], gap):
                placed.append(shape)
                break
        else:
            return None
    return placed


def _scene_satisfies(shapes: list[Shape], claims: list[Claim], size: int) -> bool:
    for claim in claims:
        if claim.relation is None:
            continue
        first = next(s for s in shapes if (s.color, s.kind) == claim.key)
        second = next(s for s in shapes if (s.color, s.kind) == claim.relative_to)
        if not relation_holds(
            first.centroid,
            second.centroid,
            claim.relation,
            size,
            RELATION_MIN_OFFSET_FRAC,
            RELATION_MIN_COSINE,
        ):
            return False
    return True


def sample_scene(prompt_text: str, rng: np.random.Generator, size: int = 64) -> list[Shape]:
    """A random scene satisfying the prompt (and containing nothing else), by rejection sampling."""
    claims = parse_prompt(prompt_text)
    objects = [(claim.color, claim.shape) for claim in claims for _ in range(claim.count)]
    for _ in range(MAX_SCENE_TRIES):
        order = rng.permutation(len(objects))
        shapes = _place_shapes([objects[i] for i in order], rng, size)
        if shapes is not None and _scene_satisfies(shapes, claims, size):
            return shapes
    raise RuntimeError(f"could not sample a scene for {prompt_text!r} at size {size}")


def _coverage_1d(centers: np.ndarray, low: float, high: float) -> np.ndarray:
    """Exact fraction of each unit pixel [c-0.5, c+0.5) inside [low, high]."""
    return np.clip(np.minimum(centers + 0.5, high) - np.maximum(centers - 0.5, low), 0.0, 1.0)


def shape_alpha(shape: Shape, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of ``shape`` on the grid of pixel centres ``ys[:, None], xs[None, :]``.

    Squares use exact area coverage; circles and triangles a one-pixel signed-distance ramp.
    """
    half = shape.size / 2.0
    if shape.kind == "square":
        return (
            _coverage_1d(ys, shape.cy - half, shape.cy + half)[:, None]
            * _coverage_1d(xs, shape.cx - half, shape.cx + half)[None, :]
        )
    if shape.kind == "circle":
        dist = np.hypot(xs[None, :] - shape.cx, ys[:, None] - shape.cy) - half
        return np.clip(0.5 - dist, 0.0, 1.0)
    if shape.kind == "triangle":
        # Apex (cx, cy - half), base corners (cx -/+ half, cy + half). Each slanted edge has normal
        # (2, 1)/sqrt(5) (mirrored in x); signed distances are positive inside.
        dx = np.abs(xs[None, :] - shape.cx)
        dy = ys[:, None] - (shape.cy - half)
        slanted = (dy - 2.0 * dx) / np.sqrt(5.0)
        base = (shape.cy + half) - ys[:, None]
        return np.clip(0.5 + np.minimum(slanted, base), 0.0, 1.0)
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def render_scene(shapes: list[Shape], size: int = 64, antialias: bool = True) -> np.ndarray:
    """Render shapes over the background: uint8 array (size, size, 3)."""
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = BACKGROUND
    for shape in shapes:
        x0, y0, x1, y1 = shape.bbox()
        cols = slice(max(int(np.floor(x0)) - 1, 0), min(int(np.ceil(x1)) + 1, size))
        rows = slice(max(int(np.floor(y0)) - 1, 0), min(int(np.ceil(y1)) + 1, size))
        xs = np.arange(cols.start, cols.stop, dtype=np.float32) + 0.5
        ys = np.arange(rows.start, rows.stop, dtype=np.float32) + 0.5
        alpha = shape_alpha(shape, xs, ys)
        if not antialias:
            alpha = (alpha >= 0.5).astype(np.float32)
        color = np.asarray(COLORS[shape.color], dtype=np.float32)
        window = canvas[rows, cols]
        window += alpha[..., None] * (color - window)
    return np.rint(canvas).astype(np.uint8)


def render_prompt(
    prompt_text: str, rng: np.random.Generator, size: int = 64, antialias: bool = True
) -> np.ndarray:
    """Sample a scene for the prompt and render it: uint8 (size, size, 3)."""
    return render_scene(sample_scene(prompt_text, rng, size), size, antialias)


__all__ = ["Shape", "relation_holds", "sample_scene", "render_scene", "render_prompt", "shape_alpha"]
