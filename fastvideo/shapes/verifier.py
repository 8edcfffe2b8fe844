"""Rule-based verifier of the shapes world: detect coloured shapes, check a prompt's claims.

Detection (thresholds are module constants, documented in README.md):

1. Each pixel goes to the nearest of the palette colours and the background; it is kept as a colour
   pixel only when that colour is within COLOR_TOLERANCE (RGB distance in [0, 1] units). Blurred rims
   and off-palette noise are therefore ignored rather than mislabelled.
2. Connected components (8-connectivity) per colour give candidate shapes.
3. Each component gets a soft coverage map: the pixel's projection onto the colour-background axis
   (normalised by the component's median interior value), inside the component grown by
   SUPPORT_RADIUS px and outside other components; values below NOISE_FLOOR are zeroed. Soft
   coverage makes area, centroid and moments nearly invariant to blur and anti-aliasing.
4. Components with soft area < MIN_AREA_FRAC * H * W are dropped (specks).
5. Kind from moments of the soft map (robust at 32 px where bounding-box fill ratios are not):
   vertical skewness <= TRIANGLE_MAX_SKEW (mass concentrated low, apex up) -> triangle; otherwise
   the separability ratio E[x^2 y^2] / (E[x^2] E[y^2]) (1 for a square at any blur, 2/3 for a disc)
   >= SQUARE_MIN_SEPARABILITY -> square, else circle. Elongated blobs (second-moment aspect ratio
   outside ASPECT_RANGE after normalising by the kind's own ratio) and shapes with an implausible
   fill ratio area / (max column mass * max row mass) are "other".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from fastvideo.shapes.grammar import BACKGROUND, COLORS, Claim, parse_prompt
from fastvideo.shapes.render import relation_holds

COLOR_TOLERANCE = 0.30
MIN_AREA_FRAC = 0.006
SUPPORT_RADIUS = 3
NOISE_FLOOR = 0.15
TRIANGLE_MAX_SKEW = -0.2
SQUARE_MIN_SEPARABILITY = 0.9
ASPECT_RANGE = (0.7, 1.43)
TRIANGLE_ASPECT = float(np.sqrt(18.0 / 24.0))
"""sqrt(var_x / var_y) of an upright triangle whose base equals its height."""
FILL_RANGES = {"square": (0.8, 1.1), "circle": (0.65, 1.0), "triangle": (0.4, 1.0)}
RELATION_MIN_OFFSET_FRAC = 0.1
RELATION_MIN_COSINE = 0.5

_COLOR_NAMES = tuple(COLORS)
_CLASS_RGB = np.array([*COLORS.values(), BACKGROUND], dtype=np.float32) / 255.0
_BACKGROUND_RGB = np.array(BACKGROUND, dtype=np.float32) / 255.0
_FULL_3X3 = np.ones((3, 3), dtype=bool)


@dataclass
class Detection:
    """One detected shape: colour name, kind ("circle" | "square" | "triangle" | "other"),
    soft centroid (x, y) in pixels and soft area in pixels."""

    color: str
    kind: str
    centroid: tuple[float, float]
    area: float


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
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
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
    """Per-pixel colour index into COLORS, or -1 for background / unclassifiable pixels."""
    dist2 = ((image[:, :, None, :] - _CLASS_RGB[None, None]) ** 2).sum(-1)
    nearest = dist2.argmin(-1)
    near_enough = np.take_along_axis(dist2, nearest[..., None], -1)[..., 0] < COLOR_TOLERANCE**2
    is_color = (nearest < len(_COLOR_NAMES)) & near_enough
    return np.where(is_color, nearest, -1)


def _soft_coverage(image: np.ndarray, support: np.ndarray, mask: np.ndarray, color_rgb: np.ndarray) -> np.ndarray:
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
    elif features["separability"] >= SQUARE_MIN_SEPARABILITY:
        kind = "square"
    else:
        kind = "circle"
    aspect = np.sqrt(features["var_x"] / features["var_y"]) / (TRIANGLE_ASPECT if kind == "triangle" else 1.0)
    low, high = FILL_RANGES[kind]
    if not (ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1] and low <= features["fill"] <= high):
        return "other"
    return kind


def detect(image) -> list[Detection]:
    """All shapes in an image (any layout accepted by ``to_hwc_float``)."""
    pixels = to_hwc_float(image)
    height, width, _ = pixels.shape
    ids, colors = _components(classify_pixels(pixels))
    owner = _ownership(ids)
    min_area = MIN_AREA_FRAC * height * width
    detections: list[Detection] = []
    for index, box in enumerate(ndimage.find_objects(owner), start=1):
        if box is None:
            continue
        support = owner[box] == index
        color_index = colors[index]
        coverage = _soft_coverage(pixels[box], support, ids[box] == index, _CLASS_RGB[color_index])
        area = float(coverage.sum())
        if area < min_area:
            continue
        ys, xs = np.mgrid[box[0], box[1]].astype(np.float32) + 0.5
        features = shape_features(coverage, area, xs, ys)
        centroid = (features["cx"], features["cy"])
        detections.append(Detection(_COLOR_NAMES[color_index], classify_kind(features), centroid, area))
    return detections


def _check_claims(claims: list[Claim], detections: list[Detection], image_size: int) -> list[tuple[str, bool]]:
    """Evaluate count claims, relation claims and the "nothing else" claim."""
    results: list[tuple[str, bool]] = []
    by_key: dict[tuple[str, str], list[Detection]] = {}
    for det in detections:
        by_key.setdefault((det.color, det.kind), []).append(det)
    for claim in claims:
        found = len(by_key.get(claim.key, []))
        results.append((f"exactly {claim.count} {claim.color} {claim.shape} (found {found})", found == claim.count))
    for claim in claims:
        if claim.relation is None:
            continue
        firsts, seconds = by_key.get(claim.key, []), by_key.get(claim.relative_to, [])
        holds = bool(firsts and seconds) and all(
            relation_holds(a.centroid, b.centroid, claim.relation, image_size,
                           RELATION_MIN_OFFSET_FRAC, RELATION_MIN_COSINE)
            for a in firsts for b in seconds
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
    import torch

    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    verdicts = [verify(image, prompt) for image, prompt in zip(images, prompts)]
    scores = torch.tensor([v.score for v in verdicts], dtype=torch.float32)
    correct = torch.tensor([float(v.correct) for v in verdicts], dtype=torch.float32)
    return scores, correct
