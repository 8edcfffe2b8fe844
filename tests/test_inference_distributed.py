"""Inference under torchrun (gloo, CPU): two ranks split the prompts and give the same images as one rank."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastvideo.config import ModelConfig
from tests.torchrun import torchrun

PROMPTS = ["a red fox", "a blue lake", "a green hill"]
SEEDS = ["0", "5"]


@pytest.fixture(scope="module")
def tuned_export(tmp_path_factory) -> Path:
    """A 'trained' tiny FLUX transformer (perturbed weights), exported like a run."""
    from fastvideo.models import build_adapter

    root = tmp_path_factory.mktemp("ckpt")
    adapter = build_adapter(ModelConfig(name="flux", tiny=True, height=32, width=32), "cpu")
    with torch.no_grad():
        for param in adapter.transformer.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    adapter.save_transformer(adapter.transformer, root / "run" / "export" / "transformer")
    return root / "run" / "export"


def _visualize(nproc: int, out: Path, prompt_file: Path, checkpoint: Path) -> subprocess.CompletedProcess:
    return torchrun(nproc, ["-m", "fastvideo.inference.visualize", "--model.name", "flux", "--model.tiny", "true",
                            "--height", "32", "--width", "32", "--num_steps", "3", "--prompt_file", str(prompt_file),
                            "--seeds", *SEEDS, "--checkpoints", str(checkpoint), "--batch_size", "2",
                            "--output_dir", str(out)], outputs=(out,))


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


@pytest.mark.slow
def test_two_ranks_split_prompts_and_match_one_rank(tmp_path, tuned_export):
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    one = tmp_path / "one"
    two = tmp_path / "two"
    _visualize(1, one, prompt_file, tuned_export)
    done = _visualize(2, two, prompt_file, tuned_export)
    logs = done.stdout + done.stderr
    assert "rank 0 of 2: 2 of 3 prompts" in logs and "rank 1 of 2: 1 of 3 prompts" in logs  # round-robin
    names = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(names) == 1 + 2 * len(PROMPTS) * len(SEEDS)  # grid + every (model, prompt, seed)
    assert names == sorted(p.relative_to(two) for p in two.rglob("*.png"))
    for name in names:  # pixel-equal here; float differences <= 1e-5 could at most flip a rounding
        a, b = _pixels(one / name), _pixels(two / name)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() <= 1e-3, name
    assert json.loads((one / "grid.json").read_text()) == json.loads((two / "grid.json").read_text())
    grid = _pixels(two / "grid.png")
    assert grid.shape == (len(PROMPTS) * len(SEEDS) * 32, 2 * 32, 3)
    assert np.abs(grid[:, :32] - grid[:, 32:]).mean() > 1.0  # the checkpoint column was really sampled
    assert np.abs(grid[:64, :32] - grid[64:128, :32]).max() > 0  # so a prompt mix-up between ranks would show
