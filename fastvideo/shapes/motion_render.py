"""Random straight-line motions that satisfy a video prompt, rendered frame by frame.

Each object is a ``render.Shape`` (same sizes, palette and anti-aliased renderer as the image world)
that translates at constant velocity. Over the clip (frame 0 to frame T - 1) a moving object travels

    D ~ U(MIN_TRAVEL_FRAC, MAX_TRAVEL_FRAC) * size        (16-24 px at 64, 8-12 px at 32)

along its direction, i.e. D / (T - 1) px per frame (2-3 px at 64 with T = 9); a staying object does
not move at all. Frame t shows the shape at ``start + (t / (T - 1)) * displacement``. The *swept*
bounding boxes (union of the first and last frame's boxes) of two objects keep a gap of at least
``GAP_FRAC * size`` and stay inside the image with a ``BORDER_FRAC * size`` margin, so the objects never
overlap or leave the frame. The verifier needs >= MOVE_MIN_FRAC = 1/8 of the size along the axis
(ground truth has twice that) and <= 1/16 for "stays" (ground truth: 0), so ground truth is never
borderline.

Videos are (T, 3, H, W) float32 in [0, 1], the layout of one sample of the trainer's decoded videos.
T must be 4k + 1 with k >= 1 (the causal video VAE's frame counts; HunyuanVideo), 9 by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastvideo.shapes.motion import DIRECTION_VECTORS, STAY, MotionClaim, parse_motion_prompt
from fastvideo.shapes.render import (
    BORDER_FRAC,
    GAP_FRAC,
    MAX_SCENE_TRIES,
    MAX_SIZE_FRAC,
    MIN_SIZE_FRAC,
    Shape,
    _boxes_clear,
    render_scene,
)

DEFAULT_NUM_FRAMES = 9
DEFAULT_VIDEO_SIZE = 64
TEMPORAL_FACTOR = 4
"""Valid clip lengths are TEMPORAL_FACTOR * k + 1 (k >= 1): 5, 9, 13, ..."""
MIN_VIDEO_SIZE = 32
MIN_TRAVEL_FRAC = 0.25
MAX_TRAVEL_FRAC = 0.375
PLACEMENT_TRIES = 50


def check_num_frames(num_frames: int) -> int:
    """Return ``num_frames`` if it is 4k + 1 with k >= 1, else raise ValueError naming valid neighbours."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"num_frames must be an integer, got {num_frames!r}")
    if num_frames < TEMPORAL_FACTOR + 1 or (num_frames - 1) % TEMPORAL_FACTOR:
        k = (num_frames - 1) // TEMPORAL_FACTOR
        nearest = [k * TEMPORAL_FACTOR + 1] * (k >= 1) + [(max(k, 0) + 1) * TEMPORAL_FACTOR + 1]
        raise ValueError(f"num_frames={num_frames} is not a valid clip length: videos have "
                         f"{TEMPORAL_FACTOR}k+1 frames with k >= 1 (5, 9, 13, ...); nearest: {nearest}")
    return int(num_frames)


def check_video_size(size: int) -> int:
    """Return ``size`` if it is an integer >= MIN_VIDEO_SIZE (the verifier's thresholds assume >= 32 px)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_VIDEO_SIZE:
        raise ValueError(f"video size must be an integer >= {MIN_VIDEO_SIZE} (32 or 64 are tested), got {size!r}")
    return int(size)


@dataclass(frozen=True)
class Trajectory:
    """A shape at frame 0 and its total displacement (dx, dy) in px from frame 0 to the last frame."""

    start: Shape
    dx: float
    dy: float
    direction: str

    def at(self, progress: float) -> Shape:
        """The shape at ``progress`` in [0, 1] (frame t of T: t / (T - 1))."""
        s = self.start
        return Shape(s.kind, s.color, s.cx + progress * self.dx, s.cy + progress * self.dy, s.size)

    def swept_bbox(self) -> tuple[float, float, float, float]:
        """Union of the first and last frame's bounding boxes (it contains every frame's box)."""
        a, b = self.start.bbox(), self.at(1.0).bbox()
        return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _sample_trajectory(claim: MotionClaim, rng: np.random.Generator, size: int) -> Trajectory:
    """Random side, travel and start such that the whole path stays inside the border."""
    side = float(rng.uniform(MIN_SIZE_FRAC * size, MAX_SIZE_FRAC * size))
    travel = 0.0 if claim.direction == STAY else float(rng.uniform(MIN_TRAVEL_FRAC, MAX_TRAVEL_FRAC)) * size
    ux, uy = DIRECTION_VECTORS[claim.direction]
    dx, dy = ux * travel, uy * travel
    border = BORDER_FRAC * size
    low, high = border + side / 2, size - border - side / 2
    cx = float(rng.uniform(low - min(dx, 0.0), high - max(dx, 0.0)))
    cy = float(rng.uniform(low - min(dy, 0.0), high - max(dy, 0.0)))
    return Trajectory(Shape(claim.shape, claim.color, cx, cy, side), dx, dy, claim.direction)


def _place(claims: list[MotionClaim], rng: np.random.Generator, size: int) -> list[Trajectory] | None:
    """One attempt at placing every claim with clear swept boxes; None if it got stuck."""
    placed: list[Trajectory] = []
    for claim in claims:
        for _ in range(PLACEMENT_TRIES):
            candidate = _sample_trajectory(claim, rng, size)
            if _boxes_clear(candidate.swept_bbox(), [p.swept_bbox() for p in placed], GAP_FRAC * size):
                placed.append(candidate)
                break
        else:
            return None
    return placed


def sample_motion_scene(prompt_text: str, rng: np.random.Generator, size: int = DEFAULT_VIDEO_SIZE) -> list[Trajectory]:
    """Trajectories (prompt order) satisfying the prompt, with nothing else, by rejection sampling."""
    size = check_video_size(size)
    claims = parse_motion_prompt(prompt_text)
    for _ in range(MAX_SCENE_TRIES):
        order = rng.permutation(len(claims))
        placed = _place([claims[i] for i in order], rng, size)
        if placed is not None:
            return [placed[int(np.flatnonzero(order == i)[0])] for i in range(len(claims))]
    raise RuntimeError(f"could not sample a motion scene for {prompt_text!r} at size {size}")


def render_trajectories(
    trajectories: list[Trajectory], size: int = DEFAULT_VIDEO_SIZE, num_frames: int = DEFAULT_NUM_FRAMES,
    antialias: bool = True,
) -> np.ndarray:
    """Render every frame with ``render.render_scene``: float32 (T, 3, size, size) in [0, 1]."""
    num_frames = check_num_frames(num_frames)
    frames = [
        render_scene([traj.at(t / (num_frames - 1)) for traj in trajectories], size, antialias)
        for t in range(num_frames)
    ]
    return np.stack(frames).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)


def render_video(
    prompt_text: str, rng: np.random.Generator, size: int = DEFAULT_VIDEO_SIZE,
    num_frames: int = DEFAULT_NUM_FRAMES, antialias: bool = True,
) -> np.ndarray:
    """Sample a motion scene for the prompt and render it: float32 (T, 3, size, size) in [0, 1]."""
    num_frames = check_num_frames(num_frames)
    return render_trajectories(sample_motion_scene(prompt_text, rng, size), size, num_frames, antialias)


__all__ = [
    "DEFAULT_NUM_FRAMES", "DEFAULT_VIDEO_SIZE", "MAX_TRAVEL_FRAC", "MIN_TRAVEL_FRAC", "Trajectory",
    "check_num_frames", "check_video_size", "render_trajectories", "render_video", "sample_motion_scene",
]
