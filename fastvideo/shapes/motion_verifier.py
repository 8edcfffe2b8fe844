"""Rule-based verifier of the moving-shapes video world: detect, track, classify motion, check claims.

Input: one video, (T, 3, H, W) float in [0, 1] (the trainer's decoded layout per sample) or
(T, H, W, 3) uint8 / float, numpy or torch, with T >= MIN_VERIFY_FRAMES (5) frames. S = min(H, W).

1. Detection, per frame: ``verifier.detect`` of the image world (palette colour + connected
   components + soft-coverage moments -> colour, kind, centroid), unchanged.
2. Tracking, per claimed object (colour, kind): the track starts at the *unique* detection of that
   colour and kind in frame 0 and, frame by frame, links the same-colour-and-kind detection nearest
   to the previous centroid, if it lies within MAX_STEP_FRAC * S. No start, an empty frame or a longer
   jump breaks the track (no motion can be read).
3. Motion of a track c_0 .. c_{T-1} (centroids, y grows downwards):

       d = c_{T-1} - c_0                      net displacement, first vs last frame
       r = max_t |c_t - c_0|                  largest excursion from the start

   - ``stays``    if r <= STAY_MAX_FRAC * S (every frame within 1/16 of the size of the start);
   - else the dominant axis of d names the direction (|dx| >= |dy|: right if dx > 0 else left;
     otherwise down if dy > 0 else up), kept only if the component along it is >= MOVE_MIN_FRAC * S
     (1/8 of the size) and d lies within arccos(MOVE_MIN_COSINE) ~ 37 degrees of the axis;
   - else ``other`` (ambiguous, diagonal, or back and forth).

Claims (score = fraction satisfied, correct = all satisfied), in prompt order:

- per object "exactly one <colour> <shape> in every frame";
- per object "<colour> <shape> <direction>": its track exists and its motion is the prompt's direction;
- "nothing else": no frame has a detection (including kind "other") outside the prompt's objects.

A single-object prompt has 3 claims, a two-object prompt 5. An empty video satisfies only "nothing
else" (score 1/3 or 1/5). The renderer's ground truth travels 1/4 - 3/8 of the size (twice
MOVE_MIN_FRAC) or exactly 0, so it is never borderline.

``frame_score`` is a denser partial credit over the same claims, meant as a GRPO reward (``score``
and ``correct`` are unchanged): "exactly one <object> in every frame" and "nothing else in any frame"
earn the fraction of frames in which they hold, motion claims 0 or 1. It pays an empty clip 1/3 for
a one-object prompt ("nothing else" holds in every frame), above a weak base's mean, so RL on it learns
to draw nothing; ``present_score`` (``frame_credit(..., require_present=True)``) pays "nothing else"
only in the frames where every claimed object is present exactly once: an empty clip earns 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastvideo.shapes.motion import STAY, MotionClaim, parse_motion_prompt
from fastvideo.shapes.verifier import Detection, detect, score_batch, to_hwc_float

MIN_VERIFY_FRAMES = 5
STAY_MAX_FRAC = 1.0 / 16.0
"""Stays: every centroid within this * S of the first (4 px at 64, 2 px at 32)."""
MOVE_MIN_FRAC = 1.0 / 8.0
"""Moving: net displacement along the direction's axis >= this * S (8 px at 64, 4 px at 32)."""
MOVE_MIN_COSINE = 0.8
"""Moving: net displacement within arccos(0.8) ~ 37 degrees of the axis."""
MAX_STEP_FRAC = 0.2
"""Tracking: largest centroid jump between consecutive frames (ground truth <= 0.094 * S at T = 5)."""

Point = tuple[float, float]


@dataclass
class VideoVerdict:
    """Result of checking one video against one video prompt."""

    score: float
    correct: bool
    frame_score: float = 0.0
    """Partial credit with per-frame count and nothing-else claims (``frame_credit``); >= score."""
    present_score: float = 0.0
    """``frame_score`` whose "nothing else" counts only frames with every claimed object present once."""
    claims: list[tuple[str, bool]] = field(default_factory=list)
    """(description, satisfied) per claim, in order."""
    motions: dict[tuple[str, str], str] = field(default_factory=dict)
    """Classified motion per claimed (colour, shape): a direction, "stays", "other" or "untracked"."""
    tracks: dict[tuple[str, str], list[Point] | None] = field(default_factory=dict, repr=False)
    detections: list[list[Detection]] = field(default_factory=list, repr=False)
    """Per-frame detections."""


def to_frames(video) -> np.ndarray:
    """(T, 3, H, W) or (T, H, W, 3), float in [0, 1] or uint8, numpy or torch -> float32 (T, H, W, 3)."""
    if hasattr(video, "detach"):
        tensor = video.detach().cpu()
        video = tensor.numpy() if str(tensor.dtype) == "torch.uint8" else tensor.float().numpy()
    array = np.asarray(video)
    if array.ndim != 4:
        raise ValueError(f"expected one video with 4 dims (T, 3, H, W) or (T, H, W, 3), got shape {array.shape}")
    if array.shape[0] < MIN_VERIFY_FRAMES:
        raise ValueError(f"a video needs >= {MIN_VERIFY_FRAMES} frames to show motion, got {array.shape[0]}")
    return np.stack([to_hwc_float(frame) for frame in array])


def detect_frames(video) -> list[list[Detection]]:
    """``verifier.detect`` on every frame of a video (any layout accepted by ``to_frames``)."""
    return [detect(frame) for frame in to_frames(video)]


def track_object(frames: list[list[Detection]], key: tuple[str, str], size: int) -> list[Point] | None:
    """Centroid track of the (colour, kind) ``key`` (module docstring, step 2); None if it breaks."""
    matches = [[det.centroid for det in dets if (det.color, det.kind) == key] for dets in frames]
    if len(matches[0]) != 1:
        return None
    track = [matches[0][0]]
    for candidates in matches[1:]:
        if not candidates:
            return None
        previous = np.asarray(track[-1])
        distances = [float(np.hypot(*(np.asarray(c) - previous))) for c in candidates]
        best = int(np.argmin(distances))
        if distances[best] > MAX_STEP_FRAC * size:
            return None
        track.append(candidates[best])
    return track


def classify_motion(track: list[Point], size: int) -> str:
    """"left" | "right" | "up" | "down" | "stays" | "other" for a centroid track (module docstring, step 3)."""
    points = np.asarray(track, dtype=np.float64)
    offsets = points - points[0]
    if np.hypot(offsets[:, 0], offsets[:, 1]).max() <= STAY_MAX_FRAC * size:
        return STAY
    dx, dy = offsets[-1]
    norm = float(np.hypot(dx, dy))
    if abs(dx) >= abs(dy):
        along, direction = abs(dx), ("right" if dx > 0 else "left")
    else:
        along, direction = abs(dy), ("down" if dy > 0 else "up")
    if along >= MOVE_MIN_FRAC * size and along >= MOVE_MIN_COSINE * norm:
        return direction
    return "other"


def _count_claim(claim: MotionClaim, frames: list[list[Detection]]) -> tuple[str, bool]:
    counts = [sum((det.color, det.kind) == claim.key for det in dets) for dets in frames]
    ok = all(count == 1 for count in counts)
    return (f"exactly one {claim.color} {claim.shape} in every frame (found {min(counts)}-{max(counts)})", ok)


def _motion_claim(claim: MotionClaim, track: list[Point] | None, motion: str) -> tuple[str, bool]:
    if track is None:
        return (f"{claim.color} {claim.shape} {claim.direction} (untracked)", False)
    dx, dy = np.asarray(track[-1]) - np.asarray(track[0])
    text = f"{claim.color} {claim.shape} {claim.direction} (found {motion}, d=({dx:+.1f}, {dy:+.1f}) px)"
    return (text, motion == claim.direction)


def check_motion_claims(
    claims: list[MotionClaim], frames: list[list[Detection]], size: int
) -> tuple[list[tuple[str, bool]], dict, dict]:
    """(claims [(description, ok)], motions {key: str}, tracks {key: track | None}) for per-frame detections."""
    tracks = {claim.key: track_object(frames, claim.key, size) for claim in claims}
    motions = {key: ("untracked" if track is None else classify_motion(track, size)) for key, track in tracks.items()}
    results = [_count_claim(claim, frames) for claim in claims]
    results += [_motion_claim(claim, tracks[claim.key], motions[claim.key]) for claim in claims]
    claimed = {claim.key for claim in claims}
    extras = [sum((det.color, det.kind) not in claimed for det in dets) for dets in frames]
    results.append((f"nothing else in any frame (found up to {max(extras)} other)", max(extras) == 0))
    return results, motions, tracks


def frame_credit(claims: list[MotionClaim], frames: list[list[Detection]], motions: dict, *,
                 require_present: bool = False) -> float:
    """Mean over the prompt's claims of: for "exactly one <object> in every frame" the fraction of
    frames with exactly one, for "nothing else in any frame" the fraction of frames with nothing else,
    for each motion claim 1 if its classified motion (``motions``, as ``check_motion_claims`` returns
    them) is the prompt's direction else 0. Equals ``score`` when every frame agrees.
    ``require_present``: "nothing else" holds only in frames where every claimed object appears exactly
    once (an empty frame earns nothing)."""
    claimed, num = {claim.key for claim in claims}, len(frames)
    motion_ok = [motions[claim.key] == claim.direction for claim in claims]
    once = [[sum((d.color, d.kind) == claim.key for d in dets) == 1 for claim in claims] for dets in frames]
    counts = [sum(frame[i] for frame in once) / num for i in range(len(claims))]
    clean = sum(all((d.color, d.kind) in claimed for d in dets) and (all(ok) or not require_present)
                for dets, ok in zip(frames, once)) / num
    return float(np.mean([*counts, *map(float, motion_ok), clean]))


def verify_video(video, prompt_text: str) -> VideoVerdict:
    """Check one video (see ``to_frames`` for layouts) against a motion-grammar prompt."""
    claims = parse_motion_prompt(prompt_text)
    frames_hwc = to_frames(video)
    frames = [detect(frame) for frame in frames_hwc]
    results, motions, tracks = check_motion_claims(claims, frames, min(frames_hwc.shape[1:3]))
    satisfied = sum(ok for _, ok in results)
    return VideoVerdict(score=satisfied / len(results), correct=satisfied == len(results),
                        frame_score=frame_credit(claims, frames, motions),
                        present_score=frame_credit(claims, frames, motions, require_present=True), claims=results,
                        motions=motions, tracks=tracks, detections=frames)


def verify_video_batch(videos, prompts: list[str]):
    """Scores and correctness of a batch: (B, T, 3, H, W) in [0, 1] (tensor) or a list of videos.

    Returns two float32 torch tensors of shape (B,) on CPU: score and correct (1.0 / 0.0).
    """
    return score_batch(verify_video, videos, prompts, "videos")


__all__ = [
    "MAX_STEP_FRAC", "MOVE_MIN_COSINE", "MOVE_MIN_FRAC", "STAY_MAX_FRAC", "VideoVerdict", "check_motion_claims",
    "classify_motion", "detect_frames", "frame_credit", "to_frames", "track_object", "verify_video", "verify_video_batch",
]
