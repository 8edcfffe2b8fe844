"""``train.supervised_coef``: a supervised loss on ground truth added to every micro-batch of the update
(InstructGPT's pretraining mix), and the shapes lab's clean-render loss that supplies it."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from fastvideo.config import Config, ConfigError, validate
from fastvideo.distributed import DistEnv
from fastvideo.training.update import optimize_items
from tests.toy_models import BrightnessRewards
from tests.trainer_utils import toy_config

REPO = Path(__file__).resolve().parents[1]


class _Settings:
    passes, updates_per_iteration, train_batch_size, max_grad_norm = 1, 1, 2, 1e9


def test_the_term_is_added_to_every_micro_batch_with_its_share():
    """5 items in micro-batches of 2, 2, 1: grad = sum_mb |mb|/5 * grad(mean_mb (w.x)^2 + c (i+1) |w|^2)."""
    torch.manual_seed(0)
    x, c = torch.randn(5, 3), 0.3
    model = torch.nn.Linear(3, 1, bias=False)
    w0 = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    calls = []

    def loss_fn(mb, pass_index):
        return model(x[mb]).square().mean(), {}

    def extra(index):
        calls.append(index)
        term = c * (index + 1) * model.weight.square().sum()
        return term, {"supervised_loss": term.detach()}

    metrics = optimize_items(torch.arange(5), loss_fn, model, optimizer, scheduler, _Settings(), extra_loss=extra)
    assert calls == [0, 1, 2] and metrics["optimizer_steps"] == 1
    shares = [2 / 5, 2 / 5, 1 / 5]
    expected = sum(s * 2 * (x[rows] @ w0.T * x[rows]).mean(0) for s, rows in zip(shares, ([0, 1], [2, 3], [4])))
    expected = expected + sum(s * c * (i + 1) * 2 * w0[0] for i, s in enumerate(shares))
    torch.testing.assert_close(model.weight.grad[0], expected, rtol=1e-5, atol=1e-6)
    assert metrics["supervised_loss"] == pytest.approx(sum(c * (i + 1) for i in range(3)) / 3 * float(w0.square().sum()))


def _flux_trainer(tmp_path, coef: float, supervised_loss=None, **overrides):
    from fastvideo.training.trainer import GRPOTrainer

    cfg = toy_config(tmp_path, train__supervised_coef=coef, **overrides)
    cfg.model.name, cfg.model.tiny, cfg.model.height, cfg.model.width = "flux", True, 32, 32
    cfg.sampler.num_steps, cfg.train.prompts_per_iteration, cfg.grpo.group_size = 3, 1, 2
    return GRPOTrainer(cfg, DistEnv(), rewards=BrightnessRewards(), supervised_loss=supervised_loss)


NFT = dict(grpo__objective="nft", sampler__sde_type="ode", sampler__init_same_noise=False, grpo__forward_timesteps=2)


@pytest.mark.parametrize("overrides", [NFT, {}], ids=["nft", "dance_grpo"])
def test_the_trainer_calls_the_loss_on_the_trained_policy_once_per_micro_batch(tmp_path, overrides):
    seen = []

    def supervised(view, iteration, index):
        seen.append((iteration, index))
        assert view.transformer is trainer.model  # the trained module, not the reference or old policy
        return sum(p.square().sum() for p in view.transformer.parameters() if p.requires_grad)

    trainer = _flux_trainer(tmp_path / "a", 0.5, supervised, **overrides)
    plain = _flux_trainer(tmp_path / "b", 0.0, **overrides)
    plain.model.load_state_dict(trainer.model.state_dict())
    metrics = trainer.train_iteration()
    reference = plain.train_iteration()
    micro_batches = metrics["calls/train"] // (2 if overrides else 1)  # NFT also calls its old policy per batch
    assert seen == [(0, i) for i in range(micro_batches)] and micro_batches >= 1
    assert metrics["supervised_loss"] > 0 and "supervised_loss" not in reference
    assert metrics["loss"] == pytest.approx(reference["loss"] + 0.5 * metrics["supervised_loss"], rel=1e-4)
    moved = [n for n, p in trainer.model.named_parameters()
             if not torch.equal(p, dict(plain.model.named_parameters())[n])]
    assert moved  # the term changed the step


def test_a_coefficient_without_a_loss_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="supervised_loss=fn"):
        _flux_trainer(tmp_path, 0.1)
    cfg = Config()
    cfg.train.supervised_coef = -1.0
    with pytest.raises(ConfigError, match="supervised_coef"):
        validate(cfg)


def test_clean_render_loss_is_a_pure_function_of_its_draw_and_trains_the_view(tmp_path):
    from fastvideo.shapes.clean_renders import CleanRenderLoss

    trainer = _flux_trainer(tmp_path, 0.0)
    view = trainer._train_policy()
    loss = CleanRenderLoss(batch_size=3, seed=5)
    value = loss(view, 2, 1)
    value.backward()
    first = float(value.detach())
    assert math.isfinite(first) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.parameters())
    with torch.no_grad():
        assert float(loss(view, 2, 1)) == pytest.approx(first, rel=1e-6)  # resumable: same draw, same loss
        others = {float(loss(view, 2, 2)), float(loss(view, 3, 1)), float(CleanRenderLoss(3, seed=5, rank=1)(view, 2, 1))}
    assert first not in others and len(others) == 3


def test_clean_render_loss_refuses_a_video_adapter(tmp_path):
    from fastvideo.shapes.clean_renders import CleanRenderLoss

    trainer = _flux_trainer(tmp_path, 0.0)
    video = copy.copy(trainer.adapter)
    video.model_cfg = dataclasses.replace(trainer.adapter.model_cfg, num_frames=5)
    with pytest.raises(ValueError, match="still images"):
        CleanRenderLoss(2, seed=0)(video, 0, 0)
