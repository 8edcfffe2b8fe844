"""The gradient-coherence benchmark's recorder: one gradient per iteration, weights untouched, and the reference
weight change exactly theta_ref - theta_0 (so the reported cosines are against the change it claims)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.bench_loader import load_benchmark

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model.tiny", "true", "--model.height", "32", "--model.width", "32", "--sampler.num_steps", "3",
        "--grpo.group_size", "2", "--train.prompts_per_iteration", "1",
        "--rewards.terms", "[{name: brightness, weight: 1.0}]"]


def _bench():
    return load_benchmark("bench_gradient_coherence")


def test_recorded_gradients_and_reference_change(tmp_path, monkeypatch):
    from fastvideo.config import load_config
    from fastvideo.distributed import DistEnv
    from fastvideo.training.trainer import GRPOTrainer

    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/shapes/flux_grpo.yaml")
    prompts = ["--data.prompt_file", str(REPO / "assets/shapes/prompts/train.txt")]
    cfg = load_config(config, [*TINY, *prompts])
    cfg.output_dir = str(tmp_path / "init")
    named = [(n, p) for n, p in GRPOTrainer(cfg, DistEnv()).model.named_parameters() if p.requires_grad]
    shift = {n: torch.full_like(p, 0.01 * (i + 1)) for i, (n, p) in enumerate(named)}
    save_file({n: (p.detach() + shift[n]).contiguous() for n, p in named}, str(tmp_path / "ref.safetensors"))

    grads, delta = _bench().recorded_gradients(config, [*TINY, *prompts], 2, 1000,
                                               reference=str(tmp_path / "ref.safetensors"))
    assert len(grads) == 2 and all(g.shape == delta.shape for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    torch.testing.assert_close(delta, torch.cat([shift[n].flatten() for n, _ in named]))
