"""Shared training utilities: run options, LR schedule, resumable state (with the framework's EMA,
``fastvideo.training.optim.EMA``), loss logging."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from fastvideo.training.optim import EMA

logger = logging.getLogger("fastvideo.shapes.pretrain")


@dataclass
class StageOptions:
    """Options of one training stage (steps, batch, optimiser, logging and checkpoint cadence)."""

    steps: int
    batch_size: int
    lr: float
    warmup: int = 100
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    log_every: int = 50
    checkpoint_every: int = 500
    seed: int = 0
    extra: dict = field(default_factory=dict)


def lr_factor(step: int, options: StageOptions) -> float:
    """Linear warmup then cosine decay to ``final_lr_fraction`` of the peak at ``steps``."""
    if step < options.warmup:
        return (step + 1) / options.warmup
    progress = min(1.0, (step - options.warmup) / max(1, options.steps - options.warmup))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return options.final_lr_fraction + (1.0 - options.final_lr_fraction) * cosine


def make_optimizer(module: torch.nn.Module, options: StageOptions) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=options.lr, betas=(0.9, 0.99), weight_decay=options.weight_decay)


def optimizer_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                   options: StageOptions) -> float:
    """Clip gradients, set this step's learning rate, step and zero the optimiser; returns the grad norm."""
    grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), options.grad_clip)
    for group in optimizer.param_groups:
        group["lr"] = options.lr * lr_factor(step, options)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def finish_step(step: int, loss: torch.Tensor, module: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: EMA,
                options: StageOptions, state_path: Path, snapshot: Callable[[int], None] | None = None) -> float:
    """The end of every pretraining step: backward of ``loss``, optimiser step, EMA update, and at every
    ``checkpoint_every``-th step and the last one the resumable state (plus ``snapshot(steps_done)``).
    Returns the gradient norm."""
    loss.backward()
    grad_norm = optimizer_step(module, optimizer, step, options)
    ema.update(module)
    if (step + 1) % options.checkpoint_every == 0 or step + 1 == options.steps:
        save_state(state_path, step + 1, module, ema, optimizer)
        if snapshot is not None:
            snapshot(step + 1)
    return grad_norm


def save_state(path: Path, step: int, module: torch.nn.Module, ema: EMA, optimizer: torch.optim.Optimizer) -> None:
    """Atomically write the resumable training state (model, EMA, optimiser, next step)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "model": module.state_dict(), "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict()}, tmp)
    os.replace(tmp, path)


def load_state(path: Path, module: torch.nn.Module, ema: EMA, optimizer: torch.optim.Optimizer) -> int:
    """Restore a state written by ``save_state``; returns the step to continue from (0 if none)."""
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors, numbers and dicts only
    module.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"])


@contextlib.contextmanager
def quiet_diffusers():
    """Silence diffusers' warnings (e.g. about casting a whole model to fp16 for storage)."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


class LossLog:
    """Running mean of named losses, logged every ``every`` steps and shown on the tqdm bar."""

    def __init__(self, name: str, total: int, start: int, every: int):
        self.name, self.every = name, every
        self.bar = tqdm(total=total, initial=start, desc=name, mininterval=5.0, dynamic_ncols=True)
        self.sums: dict[str, float] = {}
        self.count = 0
        self.started = time.time()
        self.start_step = start

    def add(self, step: int, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1
        self.bar.update(1)
        if (step + 1) % self.every == 0:
            means = {key: total / self.count for key, total in self.sums.items()}
            self.bar.set_postfix({key: f"{value:.4f}" for key, value in means.items()})
            elapsed = time.time() - self.started
            per_step = elapsed / max(1, step + 1 - self.start_step)
            text = " ".join(f"{key}={value:.5f}" for key, value in means.items())
            logger.info("[%s] step %d %s (%.3f s/step)", self.name, step + 1, text, per_step)
            self.sums, self.count = {}, 0

    def close(self) -> float:
        """Close the bar; returns wall seconds since construction."""
        self.bar.close()
        return time.time() - self.started


TOKENIZER_DIR = "tokenizers"


def stage_tokenizers(stage_dir: Path, build: Callable[[], tuple], init_from: Path | None = None,
                     subfolders: tuple[str, ...] = ("tokenizer", "tokenizer_2")) -> tuple:
    """The tokenizers a stage trains with, fixed for the stage's whole life.

    Saved to ``<stage_dir>/tokenizers/<i>`` when the stage starts (built by ``build()``, or, when it
    continues the pipeline ``init_from``, that pipeline's own ``subfolders``) and loaded back on every
    resume. Rebuilding is not safe: the CLIP BPE builder (``tokenizers``' BpeTrainer) breaks ties in
    hash order, so a new process numbers the words differently (measured: "a" was token 260, 263 and
    265 in three processes), and a resumed run would read its text encoder with other token ids.
    """
    built = build()
    saved = stage_dir / TOKENIZER_DIR
    if (saved / "0").exists():
        return tuple(type(tok).from_pretrained(saved / str(i)) for i, tok in enumerate(built))
    if init_from is not None:
        chosen = tuple(type(tok).from_pretrained(init_from, subfolder=sub) for tok, sub in zip(built, subfolders))
    else:
        if (stage_dir / "state.pt").exists():
            logger.warning("%s has a training state but no saved tokenizers (an older run): rebuilding them, "
                           "their token ids may differ from the ones it was trained with", stage_dir)
        chosen = built
    for i, tok in enumerate(chosen):
        tok.save_pretrained(saved / str(i))
    return chosen
