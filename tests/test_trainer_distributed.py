"""Two ranks under torchrun (gloo, FSDP2) give the same parameters as one rank with the same global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.torchrun import torchrun

WORKER = Path(__file__).with_name("dist_worker.py")


def _run(nproc: int, out: Path, prompts_per_rank: int, paradigm: str, objective: str = "grpo") -> dict:
    torchrun(nproc, [str(WORKER), str(out), str(prompts_per_rank), paradigm, objective], outputs=(out,))
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
