"""Run logging: a metrics JSONL always, Weights & Biases and TensorBoard when configured, image grids as PNG.

TensorBoard event files (``logging.tensorboard: true``) go to ``<run>/tensorboard/``, beside
``metrics.jsonl``: every numeric metric as a scalar at its iteration, validation grids as images.
View them with ``tensorboard --logdir <run>/tensorboard``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastvideo.errors import UserError

TENSORBOARD_DIR = "tensorboard"
"""Subdirectory of the run directory holding the TensorBoard event files."""

logger = logging.getLogger("fastvideo")


class PhaseTimer:
    """Accumulates wall-clock seconds per named phase (``with timer("rollout"): ...``)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def as_metrics(self) -> dict[str, float]:
        return {f"time/{k}": v for k, v in self.seconds.items()}


def _to_python(value):
    if isinstance(value, torch.Tensor):
        value = value.detach().float()
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _scalar(value) -> float | None:
    """A JSON-ready metric value as a TensorBoard scalar (non-finite strings back to floats); None if not one."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return None


class MissingDependencyError(ImportError, UserError):
    """An optional logger was switched on but its package is not installed (the message names the extra)."""


class MetricsLogger:
    """Appends one JSON object per logged iteration to ``<run>/metrics.jsonl`` (rank 0 only); mirrors the
    numeric values to Weights & Biases (``use_wandb``) and TensorBoard (``use_tensorboard``)."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, use_wandb: bool = False,
                 wandb_project: str = "dancegrpo", config: dict | None = None, use_tensorboard: bool = False):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.wandb = None
        self.tensorboard = None
        if enabled and use_wandb:
            self.wandb = _init_wandb(run_dir, wandb_project, config)
        if enabled and use_tensorboard:
            self.tensorboard = _init_tensorboard(Path(run_dir) / TENSORBOARD_DIR)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"iteration": step, **{k: _to_python(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)
        if self.tensorboard is not None:
            for key, value in record.items():
                scalar = _scalar(value)
                if key != "iteration" and scalar is not None:
                    self.tensorboard.add_scalar(key, scalar, global_step=step)
            self.tensorboard.flush()

    def log_image(self, step: int, key: str, path: str | Path) -> None:
        if self.enabled and self.wandb is not None:
            import wandb

            self.wandb.log({key: wandb.Image(str(path))}, step=step)
        if self.enabled and self.tensorboard is not None:
            with Image.open(path) as image:  # a GIF contributes its first frame
                pixels = np.asarray(image.convert("RGB"))
            self.tensorboard.add_image(key, pixels, global_step=step, dataformats="HWC")
            self.tensorboard.flush()

    def truncate_after(self, step: int) -> None:
        """On resume, drop records logged after the checkpoint (they will be logged again)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["iteration"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def _init_wandb(run_dir, project, config):
    try:
        import wandb
    except ImportError as err:
        raise MissingDependencyError("logging.wandb=true needs wandb: pip install -e .[log]") from err
    if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") is None:
        os.environ["WANDB_MODE"] = "offline"
        logger.info("no WANDB_API_KEY: wandb runs offline (sync later with `wandb sync`)")
    return wandb.init(project=project, dir=str(run_dir), config=config)


def _init_tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise MissingDependencyError(
            f"logging.tensorboard=true needs tensorboard ({err}): pip install -e .[log] "
            "(or pip install tensorboard), or set logging.tensorboard false") from err
    return SummaryWriter(log_dir=str(log_dir))


def video_frames_grid(videos: torch.Tensor, max_frames: int = 8) -> torch.Tensor:
    """(N, T, 3, H, W) videos -> (N * F, 3, H, W) frames, F <= max_frames evenly spaced frames per video."""
    n, t = videos.shape[:2]
    picks = torch.linspace(0, t - 1, min(t, max_frames)).round().long()
    return videos[:, picks].reshape(n * len(picks), *videos.shape[2:])


def image_grid(images: torch.Tensor, rows: int) -> Image.Image:
    """Tile (N, 3, H, W) images in [0, 1] into a grid of ``rows`` rows (row-major).

    Videos (N, T, 3, H, W) become one row per video showing up to 8 evenly spaced frames.
    """
    if images.ndim == 5:
        rows = images.shape[0]
        images = video_frames_grid(images)
    n, _, h, w = images.shape
    cols = math.ceil(n / rows)
    canvas = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    pixels = (images.clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = pixels[i]
    return Image.fromarray(canvas)


def save_grid(images: torch.Tensor, rows: int, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, rows).save(path)
    return path


def save_videos(videos: torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """Write (N, T, 3, H, W) videos in [0, 1] side by side as one animation (.gif or .mp4, imageio)."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = (videos.clamp(0, 1).float().cpu() * 255).round().to(torch.uint8)
    n, t, c, h, w = frames.shape
    strip = frames.permute(1, 3, 0, 4, 2).reshape(t, h, n * w, c).numpy()  # (T, H, N*W, 3)
    if path.suffix == ".gif":
        iio.imwrite(path, strip, duration=1000 / fps, loop=0)
    else:
        iio.imwrite(path, strip, fps=fps)
    return path


def iteration_call_counts(cfg, objective, num_steps: int, rolled_out: int, trained: int, k: int) -> dict:
    """Model calls of one iteration per rank (SD's CFG doubles the batch, not the calls): ``rolled_out``
    samples over ``num_steps`` steps, ``trained`` samples x ``k`` trained steps (the forward objectives:
    their timesteps instead)."""
    t, g = cfg.train, cfg.grpo
    if objective.forward_process:
        k = g.forward_timesteps or objective.timesteps
    per_item = 1 + (g.kl_coef > 0) + bool(objective.old_policy)
    return {"calls/rollout": num_steps * -(-rolled_out // (t.rollout_batch_size or rolled_out)),
            "calls/train": -(-trained * k // t.train_batch_size) * per_item * t.passes_per_rollout}


def reward_metrics(total: torch.Tensor, parts: dict[str, torch.Tensor]) -> dict:
    """Mean and std of the total reward and of each named term (NaN-aware means)."""
    out = {"reward_mean": float(total.float().nanmean()), "reward_std": float(total.float().std())}
    for name, values in parts.items():
        out[f"reward/{name}_mean"] = float(values.float().nanmean())
        out[f"reward/{name}_std"] = float(values.float().std())
    return out
