"""Two ranks under torchrun (gloo, FSDP2) give the same parameters as one rank with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("dist_worker.py")


def _run(nproc: int, out: Path, prompts_per_rank: int, paradigm: str, objective: str = "grpo") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORCE_CPU": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone",
           str(WORKER), str(out), str(prompts_per_rank), paradigm, objective]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("paradigm, objective", [
    *[(paradigm, "grpo") for paradigm in ["flow", "diffusion", "hunyuan", "skyreels_i2v", "sd3", "wan", "qwen_image"]],
    ("flow", "nft"), ("hunyuan", "nft"),  # the forward-process objective of the front door, and on a video model
])
def test_two_ranks_equal_one_rank(tmp_path, paradigm, objective):
    one = _run(1, tmp_path / "one.pt", 2, paradigm, objective)
    two = _run(2, tmp_path / "two.pt", 1, paradigm, objective)
    assert one["reward"] == pytest.approx(two["reward"], abs=1e-6)
    assert one["moved"] > 0 and one["moved"] == two["moved"]  # the step changed the parameters
    assert one["state"].keys() == two["state"].keys()
    for name, value in one["state"].items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-5, atol=1e-5, msg=name)
