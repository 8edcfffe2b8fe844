"""Shared helpers for trainer tests: a small config and a trainer on the toy adapter."""

from __future__ import annotations

import os
from pathlib import Path

from fastvideo.config import Config

PROMPTS = ["a red fox", "a blue lake", "a green hill", "a yellow sun", "a white cloud", "a black cat"]


def _write_atomically(path: Path, text: str) -> None:
    """Write via a per-process temporary file and a rename, so a concurrent reader never sees a partial file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def toy_config(tmp_path: Path, **overrides) -> Config:
    tmp_path.mkdir(parents=True, exist_ok=True)
    prompt_file = tmp_path / "prompts.txt"
    _write_atomically(prompt_file, "\n".join(PROMPTS) + "\n")  # ranks of a torchrun test write it at once
    cfg = Config()
    cfg.output_dir = str(tmp_path / "run")
    cfg.data.prompt_file = str(prompt_file)
    cfg.sampler.num_steps = 6
    cfg.sampler.eta = 0.5
    cfg.grpo.group_size = 4
    cfg.grpo.clip_range = 0.2
    cfg.grpo.timestep_fraction = 0.5
    cfg.train.prompts_per_iteration = 2
    cfg.train.train_batch_size = 3
    cfg.train.lr = 1e-3
    cfg.train.max_iterations = 2
    cfg.checkpoint.every = 0
    cfg.checkpoint.export_at_end = False
    cfg.logging.progress_bar = False
    for key, value in overrides.items():
        section, field = key.split("__")
        setattr(getattr(cfg, section), field, value)
    return cfg


def toy_trainer(cfg: Config, paradigm: str = "flow", env=None, rewards=None):
    from fastvideo.distributed import DistEnv
    from fastvideo.training.trainer import GRPOTrainer
    from tests.toy_models import BrightnessRewards, ToyAdapter

    return GRPOTrainer(cfg, env or DistEnv(), adapter=ToyAdapter(paradigm), rewards=rewards or BrightnessRewards())
