"""Pixels and files of the visualisation: images as PNG, videos as MP4 + GIF, grids of either.

A sample is a uint8 array: (H, W, 3) for an image, (T, H, W, 3) for a video. ``assemble_grid`` tiles
the samples of a (row, column) table into one array of the same kind, so a grid of videos is itself a
video (every frame is the grid of that frame). ``frame_strip`` turns a video into its first, middle
and last frames side by side: the still overview of a video grid (``grid.png``).

MP4 and GIF go through ``imageio`` (``pip install -e .[video]``: imageio + imageio-ffmpeg). MP4 is
lossy and GIF has a 256-colour palette per frame; the PNGs are exact.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".gif")


def to_uint8(sample: torch.Tensor) -> np.ndarray:
    """(3, H, W) image or (T, 3, H, W) video in [0, 1] -> (H, W, 3) / (T, H, W, 3) uint8."""
    if sample.ndim not in (3, 4):
        raise ValueError(f"expected (3, H, W) or (T, 3, H, W), got shape {tuple(sample.shape)}")
    pixels = sample.detach().float().cpu().clamp(0, 1).movedim(-3, -1)
    return (pixels.numpy() * 255).round().astype(np.uint8)


def is_video(pixels: np.ndarray) -> bool:
    return pixels.ndim == 4


def frame_picks(num_frames: int) -> list[int]:
    """First, middle and last frame indices (fewer when the clip is shorter than 3 frames)."""
    return sorted({0, (num_frames - 1) // 2, num_frames - 1})


def frame_strip(video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> (H, F * W, 3): the ``frame_picks`` frames left to right."""
    return np.concatenate([video[t] for t in frame_picks(video.shape[0])], axis=1)


def write_animation(frames: np.ndarray, path: Path, fps: float) -> Path:
    """(T, H, W, 3) uint8 -> ``path`` (.mp4 or .gif, looping), at ``fps`` frames per second."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        iio.imwrite(path, frames, duration=1000.0 / fps, loop=0)
    elif path.suffix == ".mp4":
        iio.imwrite(path, frames, fps=fps)
    else:
        raise ValueError(f"unsupported animation format {path.suffix!r}; expected one of {VIDEO_SUFFIXES}")
    return path


def write_sample(pixels: np.ndarray, stem: Path, fps: float = 8.0) -> list[Path]:
    """``stem``.png for an image; ``stem``.mp4 and ``stem``.gif for a video. Returns the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if not is_video(pixels):
        path = stem.with_suffix(".png")
        Image.fromarray(pixels).save(path)
        return [path]
    return [write_animation(pixels, stem.with_suffix(suffix), fps) for suffix in VIDEO_SUFFIXES]


def assemble_grid(cells: dict, rows: Sequence[Hashable], num_columns: int) -> np.ndarray:
    """Tile ``cells[(*row, column)]`` (all the same shape (..., H, W, 3)) into (..., R * H, C * W, 3).

    ``rows`` lists the row keys top to bottom (a row key is a tuple, e.g. (prompt index, seed));
    columns are 0 .. num_columns - 1 left to right. No margins.
    """
    first = next(iter(cells.values()))
    *lead, height, width, channels = first.shape
    grid = np.full((*lead, len(rows) * height, num_columns * width, channels), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c in range(num_columns):
            cell = cells[(*row, c)]
            if cell.shape != first.shape:
                raise ValueError(f"cell {(*row, c)} has shape {cell.shape}, expected {first.shape}")
            grid[..., r * height:(r + 1) * height, c * width:(c + 1) * width, :] = cell
    return grid


def write_grids(cells: dict, rows: Sequence[Hashable], num_columns: int, out_dir: Path,
                fps: float = 8.0) -> list[Path]:
    """grid.png (images; for videos the first / middle / last frame of every cell) and, for videos,
    the animated grid.gif and grid.mp4. Returns the paths written, grid.png first."""
    grid = assemble_grid(cells, rows, num_columns)
    if not is_video(grid):
        Image.fromarray(grid).save(out_dir / "grid.png")
        return [out_dir / "grid.png"]
    strips = {key: frame_strip(video) for key, video in cells.items()}
    Image.fromarray(assemble_grid(strips, rows, num_columns)).save(out_dir / "grid.png")
    return [out_dir / "grid.png"] + [write_animation(grid, out_dir / f"grid{s}", fps) for s in VIDEO_SUFFIXES]
