"""Rule-based verifier of the shapes world: detect coloured shapes, check a prompt's claims.

Detection (thresholds are the module constants below; README.md gives the rationale):

1. Pixel colours. Each pixel is explained as background + a * (colour - background) for the
   palette colour whose segment passes closest; it is a hard colour pixel when a >= HARD_MIN_COVERAGE
   and the residual is < COLOR_TOLERANCE (RGB in [0, 1]). Blurred rims, off-palette pixels and
   noise are ignored rather than mislabelled.
2. Connected components (8-connectivity) of hard pixels, per colour. Every pixel within
   SUPPORT_RADIUS px of a component is owned by its nearest component (distance transform), so
   neighbouring shapes never share rim pixels.
3. Soft coverage of a component: the owned pixels' projection ``a`` on its colour axis (divided by
   the median interior value when that exceeds 1, i.e. for over-saturated colours), clipped to
   [0, 1], zeroed below NOISE_FLOOR. Area, centroid and moments of this map hardly change under
   blur or anti-aliasing.
4. Components with soft area < MIN_AREA_FRAC * H * W are specks: dropped, and the others measured
   again without them.
5. Kind, from moments of the soft map (bounding-box fill ratios alone fail on blurred 6-px shapes):
   vertical skewness <= TRIANGLE_MAX_SKEW (mass low, apex up) -> triangle; else
   separability E[x^2 y^2] / (E[x^2] E[y^2]) (1 for a square at any blur, 2/3 for a disc) plus
   fill = area / (max column mass * max row mass) (1 vs pi/4) >= SQUARE_MIN_SCORE -> square; else
   circle. A kind whose aspect ratio or fill is implausible (ASPECT_RANGE, FILL_RANGES) is "other".

Claims (score = fraction satisfied): per required (colour, shape) group "exactly count found";
per relation "every first object is <relation> every second object" (centroid offset along the
axis >= RELATION_MIN_OFFSET_FRAC * size, direction within 60 degrees of it); "nothing else", i.e.
no detection (including "other") outside the prompt's (colour, shape) groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from fastvideo.shapes.grammar import BACKGROUND, COLORS, Claim, parse_prompt
from fastvideo.shapes.render import relation_holds

COLOR_TOLERANCE = 0.25
"""Max RGB distance (0-1 units) of a hard pixel from its colour-background segment (palette gap >= 0.52)."""
HARD_MIN_COVERAGE = 0.6
MAX_COVERAGE = 1.3
"""Coverage cap when explaining a pixel: tolerates colours up to 30% more saturated than the palette."""
MIN_AREA_FRAC = 0.006
"""Specks: soft area below 0.6% of the image (25 px at 64; the smallest shape is ~70 px)."""
SUPPORT_RADIUS = 3
NOISE_FLOOR = 0.15
TRIANGLE_MAX_SKEW = -0.2
SQUARE_MIN_SCORE = 1.77
"""Square iff separability + fill >= this (square ~2.0, disc ~0.67 + 0.79 = 1.46)."""
ASPECT_RANGE = (0.7, 1.43)
TRIANGLE_ASPECT = float(np.sqrt(18.0 / 24.0))
"""sqrt(var_x / var_y) of an upright triangle whose base equals its height."""
FILL_RANGES = {"square": (0.8, 1.1), "circle": (0.65, 1.0), "triangle": (0.4, 1.0)}
SPECK_PREFILTER_MARGIN = 1e-3
"""Relative margin below MIN_AREA_FRAC under which a component's vectorised soft area marks it a speck
without measuring it one by one (covers float summation differences only)."""
RELATION_MIN_OFFSET_FRAC = 0.1
RELATION_MIN_COSINE = 0.5

_COLOR_NAMES = tuple(COLORS)
_COLOR_RGB = np.array(list(COLORS.values()), dtype=np.float32) / 255.0
_BACKGROUND_RGB = np.array(BACKGROUND, dtype=np.float32) / 255.0
_AXES = _COLOR_RGB - _BACKGROUND_RGB
_AXES_NORM2 = (_AXES * _AXES).sum(-1)
_FULL_3X3 = np.ones((3, 3), dtype=bool)


@dataclass
class Detection:
    """One detected shape: colour name, kind ("circle" | "square" | "triangle" | "other"),
    soft centroid (x, y) in pixels and soft area in pixels."""

    color: str
    kind: str
    centroid: tuple[float, float]
    area: float
    features: dict[str, float] = field(default_factory=dict, repr=False)
    """Moment features used for the kind (see shape_features)."""


@dataclass
class Verdict:
    """Result of checking one image against one prompt."""

    score: float
    correct: bool
    detected: list[Detection]
    num_detected: int
    claims: list[tuple[str, bool]] = field(default_factory=list)
    """(description, satisfied) for each claim, in order."""


def to_hwc_float(image) -> np.ndarray:
    """HWC uint8 (0-255) or CHW / HWC float in [0, 1] (numpy or torch) -> float32 HWC in [0, 1]."""
    if hasattr(image, "detach"):  # torch tensor: keep uint8, anything else (bf16, fp16, ...) to fp32
        tensor = image.detach().cpu()
        image = tensor.numpy() if str(tensor.dtype) == "torch.uint8" else tensor.float().numpy()
    array = np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"expected a single image with 3 dims, got shape {array.shape}")
    if array.shape[0] == 3 and array.shape[-1] != 3:
        array = np.moveaxis(array, 0, -1)
    if array.shape[-1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def classify_pixels(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour index into COLORS (-1: background or unclassifiable), float HWC input.

    Each pixel is explained as ``background + a * (colour - background)`` for the colour whose
    segment passes closest; it is a colour pixel when ``a >= HARD_MIN_COVERAGE`` and the residual
    is below COLOR_TOLERANCE.
    """
    diff = image - _BACKGROUND_RGB
    along = diff @ _AXES.T
    coverage = np.clip(along / _AXES_NORM2, 0.0, MAX_COVERAGE)
    residual2 = (diff * diff).sum(-1, keepdims=True) - 2.0 * coverage * along + coverage**2 * _AXES_NORM2
    best = residual2.argmin(-1)
    best_coverage = np.take_along_axis(coverage, best[..., None], -1)[..., 0]
    best_residual2 = np.take_along_axis(residual2, best[..., None], -1)[..., 0]
    is_color = (best_coverage >= HARD_MIN_COVERAGE) & (best_residual2 < COLOR_TOLERANCE**2)
    return np.where(is_color, best, -1)


def _soft_coverage(
    image: np.ndarray, support: np.ndarray, mask: np.ndarray, color_rgb: np.ndarray
) -> np.ndarray:
    """Soft coverage of one component in a window (module docstring, step 3).

    ``mask``: the component's colour pixels; ``support``: the pixels it owns.
    """
    axis = color_rgb - _BACKGROUND_RGB
    raw = ((image - _BACKGROUND_RGB) @ axis) / float(axis @ axis)
    interior = ndimage.binary_erosion(mask, _FULL_3X3)
    scale = float(np.clip(np.median(raw[interior]), 1.0, 1.5)) if interior.any() else 1.0
    coverage = np.clip(raw / scale, 0.0, 1.0) * support
    coverage[coverage < NOISE_FLOOR] = 0.0
    return coverage


def _components(labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Global component ids (0 = none) over all colours, and the colour index of each id (1-based)."""
    ids = np.zeros(labels.shape, dtype=np.int32)
    colors = [-1]
    for color_index in np.unique(labels[labels >= 0]):
        components, count = ndimage.label(labels == color_index, _FULL_3X3)
        ids[components > 0] = components[components > 0] + len(colors) - 1
        colors.extend([int(color_index)] * count)
    return ids, colors


def _ownership(ids: np.ndarray) -> np.ndarray:
    """Each pixel's nearest component id if within SUPPORT_RADIUS px of it, else 0."""
    if not ids.any():
        return ids
    distance, (rows, cols) = ndimage.distance_transform_edt(ids == 0, return_indices=True)
    owner = ids[rows, cols]
    owner[distance > SUPPORT_RADIUS] = 0
    return owner


def shape_features(coverage: np.ndarray, area: float, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
    """Moment features of a soft coverage map: centroid, variances, skewness, separability, fill."""
    cx, cy = float((coverage * xs).sum() / area), float((coverage * ys).sum() / area)
    dx2, dy2 = (xs - cx) ** 2, (ys - cy) ** 2
    var_x, var_y = float((coverage * dx2).sum() / area), float((coverage * dy2).sum() / area)
    features = {"cx": cx, "cy": cy, "var_x": var_x, "var_y": var_y, "skew": 0.0, "separability": 0.0}
    if var_x > 0 and var_y > 0:
        features["skew"] = float((coverage * (ys - cy) ** 3).sum() / area / var_y**1.5)
        features["separability"] = float((coverage * dx2 * dy2).sum() / area / (var_x * var_y))
    features["fill"] = float(area / (coverage.sum(0).max() * coverage.sum(1).max()))
    return features


def classify_kind(features: dict[str, float]) -> str:
    """Shape kind from moment features (module docstring, step 5)."""
    if features["var_x"] <= 0 or features["var_y"] <= 0:
        return "other"
    if features["skew"] <= TRIANGLE_MAX_SKEW:
        kind = "triangle"
    elif features["separability"] + features["fill"] >= SQUARE_MIN_SCORE:
        kind = "square"
    else:
        kind = "circle"
    aspect = np.sqrt(features["var_x"] / features["var_y"]) / (TRIANGLE_ASPECT if kind == "triangle" else 1.0)
    low, high = FILL_RANGES[kind]
    if not (ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1] and low <= features["fill"] <= high):
        return "other"
    return kind


def _soft_areas(pixels: np.ndarray, ids: np.ndarray, owner: np.ndarray, colors: list[int]) -> np.ndarray:
    """Soft area of every component id at once (entry 0 unused), vectorised over the image.

    Same quantities as ``_soft_coverage`` per component: the interior (3x3 erosion of the component,
    image border outside) sets the saturation scale through its median, then coverage on the owned
    pixels is clipped and floored. Only float summation order differs from the per-component path.
    """
    count = len(colors)
    color_of = np.asarray([max(c, 0) for c in colors], dtype=np.int64)
    diff = pixels - _BACKGROUND_RGB
    raw_by_color = (diff @ _AXES.T) / _AXES_NORM2  # (H, W, colours): projection on every colour axis
    neighbours_low = ndimage.minimum_filter(ids, size=3, mode="constant", cval=0)
    neighbours_high = ndimage.maximum_filter(ids, size=3, mode="constant", cval=0)
    interior = (ids > 0) & (neighbours_low == ids) & (neighbours_high == ids)
    labels = ids[interior]
    values = np.take_along_axis(raw_by_color[interior], color_of[labels][:, None], -1)[:, 0]
    scale = np.ones(count, dtype=np.float32)
    if labels.size:
        order = np.lexsort((values, labels))
        sorted_values, sorted_labels = values[order], labels[order]
        present, starts, sizes = np.unique(sorted_labels, return_index=True, return_counts=True)
        low = sorted_values[starts + (sizes - 1) // 2]
        high = sorted_values[starts + sizes // 2]
        median = (low + high) / np.float32(2.0)
        scale[present] = np.clip(median, 1.0, 1.5)
    owned = owner > 0
    owners = owner[owned]
    raw = np.take_along_axis(raw_by_color[owned], color_of[owners][:, None], -1)[:, 0]
    coverage = np.clip(raw / scale[owners], 0.0, 1.0)
    coverage[coverage < NOISE_FLOOR] = 0.0
    return np.bincount(owners, weights=coverage, minlength=count)


def _measure_components(
    pixels: np.ndarray, ids: np.ndarray, colors: list[int], min_area: float = 0.0
) -> list[tuple[int, float, dict, tuple[slice, slice], np.ndarray, np.ndarray]]:
    """(component id, soft area, moment features, window, soft coverage, hard mask) for every
    component of ``ids``; the last two are arrays over the window (the slices of the pixels it owns).

    With ``min_area`` > 0, components whose vectorised soft area is clearly below it (by more than
    float rounding, SPECK_PREFILTER_MARGIN) are skipped without being measured: on a noisy image
    with a thousand specks only the few plausible components reach the per-component loop.
    """
    owner = _ownership(ids)
    candidates = None
    if min_area > 0 and ids.any():
        areas = _soft_areas(pixels, ids, owner, colors)
        candidates = set(np.flatnonzero(areas >= min_area * (1.0 - SPECK_PREFILTER_MARGIN)).tolist())
    measured = []
    for index, box in enumerate(ndimage.find_objects(owner), start=1):
        if box is None or (candidates is not None and index not in candidates):
            continue
        mask = ids[box] == index
        coverage = _soft_coverage(pixels[box], owner[box] == index, mask, _COLOR_RGB[colors[index]])
        area = float(coverage.sum())
        if area <= 0:
            continue
        ys, xs = np.mgrid[box[0], box[1]].astype(np.float32) + 0.5
        measured.append((index, area, shape_features(coverage, area, xs, ys), box, coverage, mask))
    return measured


@dataclass
class Region:
    """Where a detection lies: ``window`` (row, column slices of the image), its soft coverage map and
    its hard colour pixels over that window (see the module docstring, steps 2-3)."""

    detection: Detection
    window: tuple[slice, slice]
    coverage: np.ndarray
    mask: np.ndarray


def detect_regions(image) -> list[Region]:
    """``detect``'s shapes with their coverage maps (used by ``fastvideo.shapes.quality``)."""
    pixels = to_hwc_float(image)
    height, width, _ = pixels.shape
    ids, colors = _components(classify_pixels(pixels))
    min_area = MIN_AREA_FRAC * height * width
    measured = _measure_components(pixels, ids, colors, min_area)
    kept = [entry[0] for entry in measured if entry[1] >= min_area]
    if len(kept) < len(colors) - 1:  # some component was a speck (pre-filtered or measured)
        ids = np.where(np.isin(ids, kept), ids, 0)
        measured = _measure_components(pixels, ids, colors)
    return [
        Region(
            Detection(
                _COLOR_NAMES[colors[index]],
                classify_kind(features),
                (features["cx"], features["cy"]),
                area,
                features,
            ),
            box,
            coverage,
            mask,
        )
        for index, area, features, box, coverage, mask in measured
        if area >= min_area
    ]


def detect(image) -> list[Detection]:
    """All shapes in an image (any layout accepted by ``to_hwc_float``).

    Components whose soft area is below the speck threshold are removed and the survivors measured
    again, so that specks do not claim the blurred rims of real shapes.
    """
    return [region.detection for region in detect_regions(image)]


def _check_claims(
    claims: list[Claim], detections: list[Detection], image_size: int
) -> list[tuple[str, bool]]:
    """Evaluate count claims, relation claims and the "nothing else" claim."""
    results: list[tuple[str, bool]] = []
    by_key: dict[tuple[str, str], list[Detection]] = {}
    for det in detections:
        by_key.setdefault((det.color, det.kind), []).append(det)
    for claim in claims:
        found = len(by_key.get(claim.key, []))
        results.append(
            (f"exactly {claim.count} {claim.color} {claim.shape} (found {found})", found == claim.count)
        )
    for claim in claims:
        if claim.relation is None:
            continue
        firsts, seconds = by_key.get(claim.key, []), by_key.get(claim.relative_to, [])
        holds = bool(firsts and seconds) and all(
            relation_holds(
                a.centroid,
                b.centroid,
                claim.relation,
                image_size,
                RELATION_MIN_OFFSET_FRAC,
                RELATION_MIN_COSINE,
            )
            for a in firsts
            for b in seconds
        )
        other = " ".join(claim.relative_to)
        results.append((f"{claim.color} {claim.shape} {claim.relation} {other}", holds))
    claimed = {claim.key for claim in claims}
    extras = sum(1 for det in detections if (det.color, det.kind) not in claimed)
    results.append((f"nothing else (found {extras} other)", extras == 0))
    return results


def verify(image, prompt_text: str) -> Verdict:
    """Check an image (HWC uint8, or CHW/HWC float in [0, 1]) against a grammar prompt."""
    claims = parse_prompt(prompt_text)
    pixels = to_hwc_float(image)
    detections = detect(pixels)
    results = _check_claims(claims, detections, min(pixels.shape[:2]))
    satisfied = sum(ok for _, ok in results)
    return Verdict(
        score=satisfied / len(results),
        correct=satisfied == len(results),
        detected=detections,
        num_detected=len(detections),
        claims=results,
    )


def verify_batch(images, prompts: list[str]):
    """Scores and correctness for a batch: images (B, 3, H, W) in [0, 1] (tensor) or a list of images.

    Returns two float32 torch tensors of shape (B,) on CPU: score and correct (1.0 / 0.0).
    """
    return score_batch(verify, images, prompts, "images")


def verdict_batch(verify_one, items, prompts: list[str], what: str) -> list:
    """``verify_one(item, prompt)`` per item; ValueError unless there is one prompt per item."""
    if len(items) != len(prompts):
        raise ValueError(f"{len(items)} {what} but {len(prompts)} prompts")
    return [verify_one(item, prompt) for item, prompt in zip(items, prompts)]


def score_batch(verify_one, items, prompts: list[str], what: str):
    """(score, correct) float32 CPU tensors of shape (B,) from ``verify_one(item, prompt)`` per item."""
    import torch

    verdicts = verdict_batch(verify_one, items, prompts, what)
    scores = torch.tensor([v.score for v in verdicts], dtype=torch.float32)
    correct = torch.tensor([float(v.correct) for v in verdicts], dtype=torch.float32)
    return scores, correct
