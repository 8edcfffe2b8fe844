"""A second, differently built reading of shapes-world images: a cross-check of ``verifier.py``.

It shares no detection code with ``fastvideo.shapes.verifier`` (only the grammar's palette and
``parse_prompt``) and answers the same question: does the image satisfy every claim of the prompt?
Where the verifier explains each pixel as a partial coverage of a palette colour and classifies kinds
by soft moments (skewness, separability), this reading:

1. quantises: each pixel takes the nearest of the 7 reference colours (background + 6 palette) in
   RGB and counts as that colour only if it lies within ``ACCEPT_FRAC`` of the colour's distance to
   the background (i.e. at least ~70% of the way from the background); mixed rims, washed-out and
   off-palette pixels are left unlabelled;
2. splits each colour's pixels into 4-connected components (``scipy.ndimage.label``) and drops those
   under ``MIN_AREA_FRAC`` of the image;
3. names the kind by template matching: the binary IoU of the component with a filled box, the
   inscribed ellipse and the inscribed apex-up triangle of its own bounding box; the best template
   wins, unless its IoU is below ``MIN_TEMPLATE_IOU`` or the box's aspect ratio is outside
   ``ASPECT_RANGE`` ("other");
4. places each shape at the mean of its pixel centres.

Claims and verdict semantics are the grammar's: exactly ``count`` shapes of each named (colour, kind),
each relation holds between every first and every second object (offset along the axis >= 0.1 of the
image size and within 60 degrees of it, GenEval's rule), nothing else (no component, "other"
included, outside the named groups). ``correct`` = all claims hold.

Agreement with ``verifier.verify`` (measured by ``benchmarks/bench_second_reading.py``, numbers in its
docstring): 100% on clean 64-px ground truth of every skill, 99-100% after blur 0.7 + noise 0.05, 87% on
300 samples of the shipped FLUX base (single-object 77%: its blobs are ambiguous). Built for 64 px; at 32
px its binary masks of 6-10 px shapes make it weaker than the verifier (~95% clean, ~70% blurred).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from fastvideo.shapes.grammar import BACKGROUND, COLORS, parse_prompt

ACCEPT_FRAC = 0.3
"""A pixel is colour k if k is its nearest reference colour and |pixel - k| < ACCEPT_FRAC * |k - background|."""
MIN_AREA_FRAC = 0.004
"""Components below this fraction of the image's pixels are specks (16 px at 64; shapes have >= ~60)."""
MIN_TEMPLATE_IOU = 0.65
ASPECT_RANGE = (0.6, 1.6)
"""Width / height of the bounding box outside this range: "other"."""
MIN_OFFSET_FRAC = 0.1
MIN_COSINE = 0.5

_NAMES = tuple(COLORS)
_REFERENCE = np.array([BACKGROUND, *COLORS.values()], dtype=np.float32) / 255.0  # index 0: background
_ACCEPT = ACCEPT_FRAC * np.linalg.norm(_REFERENCE - _REFERENCE[0], axis=1)
_FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass
class ReadShape:
    """One shape as this reading sees it: colour, kind, pixel centroid (x, y), pixel count, template IoUs."""

    color: str
    kind: str
    centroid: tuple[float, float]
    pixels: int
    ious: dict[str, float] = field(default_factory=dict, repr=False)


@dataclass
class SecondVerdict:
    correct: bool
    shapes: list[ReadShape]
    claims: list[tuple[str, bool]]


def _as_hwc(image) -> np.ndarray:
    """HWC uint8 or CHW / HWC float in [0, 1] (numpy or torch) -> float32 HWC in [0, 1]."""
    if hasattr(image, "detach"):
        image = image.detach().cpu()
        image = image.numpy() if str(image.dtype) == "torch.uint8" else image.float().numpy()
    array = np.asarray(image)
    if array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise ValueError(f"expected one (3, H, W) or (H, W, 3) image, got shape {array.shape}")
    if array.shape[-1] != 3:
        array = np.moveaxis(array, 0, -1)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def quantise(pixels: np.ndarray) -> np.ndarray:
    """(H, W) int: index into COLORS of each pixel's accepted palette colour, -1 for none (step 1)."""
    distance = np.linalg.norm(pixels[..., None, :] - _REFERENCE, axis=-1)  # (H, W, 7)
    nearest = distance.argmin(-1)
    accepted = (nearest > 0) & (np.take_along_axis(distance, nearest[..., None], -1)[..., 0] < _ACCEPT[nearest])
    return np.where(accepted, nearest - 1, -1)


def template_ious(mask: np.ndarray) -> dict[str, float]:
    """Binary IoU of a component (cropped to its bounding box) with the box, ellipse and triangle."""
    height, width = mask.shape
    ys = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(width, dtype=np.float32) + 0.5)[None, :]
    u, v = (xs - width / 2) / (width / 2), (ys - height / 2) / (height / 2)
    templates = {
        "square": np.ones_like(mask),
        "circle": u * u + v * v <= 1.0,
        "triangle": np.abs(u) <= ys / height,  # apex at the top centre, base = the box's bottom edge
    }
    area = mask.sum()
    return {kind: float((mask & t).sum() / (area + t.sum() - (mask & t).sum())) for kind, t in templates.items()}


def read(image) -> list[ReadShape]:
    """Every shape of an image as this reading sees it (steps 1-4)."""
    pixels = _as_hwc(image)
    height, width, _ = pixels.shape
    labels = quantise(pixels)
    min_pixels = MIN_AREA_FRAC * height * width
    shapes = []
    for color_index in np.unique(labels[labels >= 0]):
        components, count = ndimage.label(labels == color_index, _FOUR)
        for number, box in enumerate(ndimage.find_objects(components), start=1):
            mask = components[box] == number
            size = int(mask.sum())
            if size < min_pixels:
                continue
            ious = template_ious(mask)
            kind = max(ious, key=ious.get)
            aspect = mask.shape[1] / mask.shape[0]
            if ious[kind] < MIN_TEMPLATE_IOU or not ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
                kind = "other"
            rows, cols = np.nonzero(mask)
            centroid = (float(cols.mean() + box[1].start + 0.5), float(rows.mean() + box[0].start + 0.5))
            shapes.append(ReadShape(_NAMES[color_index], kind, centroid, size, ious))
    return shapes


def _relation(first: tuple[float, float], second: tuple[float, float], relation: str, image_size: int) -> bool:
    dx, dy = first[0] - second[0], first[1] - second[1]
    along = {"left of": -dx, "right of": dx, "above": -dy, "below": dy}[relation]
    norm = float(np.hypot(dx, dy))
    return along >= MIN_OFFSET_FRAC * image_size and norm > 0 and along >= MIN_COSINE * norm


def second_verify(image, prompt_text: str) -> SecondVerdict:
    """This reading's verdict on a grammar prompt: per group count, per relation, nothing else."""
    claims = parse_prompt(prompt_text)
    pixels = _as_hwc(image)
    shapes = read(pixels)
    groups: dict[tuple[str, str], list[ReadShape]] = {}
    for shape in shapes:
        groups.setdefault((shape.color, shape.kind), []).append(shape)
    results = []
    for claim in claims:
        found = len(groups.get(claim.key, []))
        results.append((f"{claim.count} {claim.color} {claim.shape} (read {found})", found == claim.count))
    for claim in claims:
        if claim.relation is not None:
            firsts, seconds = groups.get(claim.key, []), groups.get(claim.relative_to, [])
            holds = bool(firsts and seconds) and all(
                _relation(a.centroid, b.centroid, claim.relation, min(pixels.shape[:2]))
                for a in firsts for b in seconds)
            results.append((f"{' '.join(claim.key)} {claim.relation} {' '.join(claim.relative_to)}", holds))
    named = {claim.key for claim in claims}
    extras = sum(1 for shape in shapes if (shape.color, shape.kind) not in named)
    results.append((f"nothing else (read {extras} other)", extras == 0))
    return SecondVerdict(all(ok for _, ok in results), shapes, results)


__all__ = ["ReadShape", "SecondVerdict", "quantise", "read", "second_verify", "template_ious"]
