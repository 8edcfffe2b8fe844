"""Model-agnostic trainer invariants on the toy adapter (fast, no diffusers)."""

from __future__ import annotations

import json

import pytest
import torch

from fastvideo.grpo.rollout import initial_noise, make_sample_ids, rollout, train_step_subsets
from fastvideo.training.update import UpdateSettings, run_update
from tests.trainer_utils import toy_config, toy_trainer


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("paradigm", ["flow", "diffusion"])
def test_first_update_is_on_policy_and_changes_every_parameter(tmp_path, paradigm):
    trainer = toy_trainer(toy_config(tmp_path), paradigm)
    before = _params(trainer.model)
    metrics = trainer.train_iteration()
    assert abs(metrics["ratio_mean"] - 1.0) < 1e-5
    assert abs(metrics["ratio_max"] - 1.0) < 1e-5
    assert metrics["clipfrac"] == 0.0
    for name, p in trainer.model.named_parameters():
        assert not torch.equal(before[name], p.detach()), f"{name} did not change"


def test_initial_noise_shared_within_group_and_distinct_across_groups():
    ids = make_sample_ids([0, 1], 3)
    same = initial_noise((2, 4, 4), ids, seed=1, iteration=0, same_in_group=True)
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], same[2])
    assert not torch.allclose(same[0], same[3])
    diff = initial_noise((2, 4, 4), ids, seed=1, iteration=0, same_in_group=False)
    assert not torch.allclose(diff[0], diff[1])
    # a function of (seed, iteration, prompt, sample), not of batch composition
    alone = initial_noise((2, 4, 4), make_sample_ids([1], 3), seed=1, iteration=0, same_in_group=True)
    assert torch.equal(alone[0], same[3])
    assert not torch.allclose(initial_noise((2, 4, 4), ids, seed=1, iteration=1, same_in_group=True), same)


def test_rollout_keeps_only_trained_steps_and_is_batch_size_invariant(tmp_path):
    trainer = toy_trainer(toy_config(tmp_path))
    ids = make_sample_ids([0, 1], 4)
    steps = train_step_subsets(ids, 6, 0.5, seed=0, iteration=0)
    assert steps.shape == (8, 2)  # floor((6 - 1) * 0.5) = 2 stored steps per sample
    cond = trainer.data.conditioning([0, 1])
    init = initial_noise((2, 4, 4), ids, seed=0, iteration=0, same_in_group=True)

    def predict(x, t, rows):
        return trainer._predict(x, t, cond, rows)

    full = rollout(predict, trainer.sampler, init, ids, steps, seed=0, iteration=0)
    assert full.latents.shape == (8, 2, 2, 4, 4) and full.log_probs.shape == (8, 2)
    micro = rollout(predict, trainer.sampler, init, ids, steps, seed=0, iteration=0, batch_size=3)
    torch.testing.assert_close(full.final_latents, micro.final_latents, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full.log_probs, micro.log_probs, rtol=1e-5, atol=1e-6)


class _GradRecorder:
    """Optimizer stand-in that records the accumulated gradients at step()."""

    def __init__(self, params):
        self.params = list(params)
        self.grads = []

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        self.grads.append([p.grad.detach().clone() for p in self.params])


class _NoSchedule:
    def step(self):
        pass


def _gradient(trainer, batch_size, updates=1):
    ids = make_sample_ids([0, 1], 4)
    steps = train_step_subsets(ids, 6, 0.5, seed=0, iteration=0)
    cond = trainer.data.conditioning([0, 1])
    init = initial_noise((2, 4, 4), ids, seed=0, iteration=0, same_in_group=False)

    def predict(x, t, rows):
        return trainer._predict(x, t, cond, ids.local_prompt[rows])

    ro = rollout(lambda x, t, r: trainer._predict(x, t, cond, r), trainer.sampler, init, ids, steps,
                 seed=0, iteration=0)
    adv = torch.linspace(-1.5, 1.5, 8)
    recorder = _GradRecorder(trainer.model.parameters())
    settings = UpdateSettings(0.2, batch_size, updates, max_grad_norm=1e9)
    run_update(ro, adv, predict, trainer.sampler, trainer.model, recorder, _NoSchedule(), settings)
    return recorder.grads


def test_micro_batching_is_invisible_in_the_gradient(tmp_path):
    trainer = toy_trainer(toy_config(tmp_path))
    reference = _gradient(trainer, batch_size=16)[0]
    for batch_size in (1, 2, 5):
        grads = _gradient(trainer, batch_size)[0]
        for g_ref, g in zip(reference, grads):
            assert g_ref.norm() > 0
            assert (g - g_ref).norm() / g_ref.norm() < 1e-6, batch_size


def test_updates_per_iteration_split_the_items(tmp_path):
    trainer = toy_trainer(toy_config(tmp_path))
    grads = _gradient(trainer, batch_size=3, updates=4)
    assert len(grads) == 4


def test_nonfinite_reward_skips_update_or_raises(tmp_path):
    from fastvideo.training.trainer import NonFiniteRewardError

    class NaNRewards:
        def __call__(self, images, prompts):
            r = torch.zeros(len(images))
            r[0] = float("nan")
            return r, {"nan": r}

    trainer = toy_trainer(toy_config(tmp_path), rewards=NaNRewards())
    before = _params(trainer.model)
    metrics = trainer.train_iteration()
    assert metrics["skipped"] == 1.0
    for name, p in trainer.model.named_parameters():
        assert torch.equal(before[name], p.detach())
    strict = toy_trainer(toy_config(tmp_path, rewards__nan_policy="error"), rewards=NaNRewards())
    with pytest.raises(NonFiniteRewardError, match="non-finite"):
        strict.train_iteration()


def test_resume_is_bit_exact(tmp_path):
    straight = toy_trainer(toy_config(tmp_path / "a", train__max_iterations=4))
    straight.train()
    cfg = toy_config(tmp_path / "b", train__max_iterations=2, checkpoint__every=2)
    toy_trainer(cfg).train()
    cfg_resume = toy_config(tmp_path / "b", train__max_iterations=4, checkpoint__every=2,
                            checkpoint__resume="auto")
    resumed = toy_trainer(cfg_resume)
    assert resumed.iteration == 2
    resumed.train()
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name
    log_a = [json.loads(x) for x in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["reward_mean"] for r in log_a] == [r["reward_mean"] for r in log_b]
    assert [r["iteration"] for r in log_b] == [0, 1, 2, 3]


def test_killed_checkpoint_write_leaves_previous_loadable(tmp_path, monkeypatch):
    import fastvideo.training.checkpoint as ckpt

    cfg = toy_config(tmp_path, train__max_iterations=1, checkpoint__every=1)
    trainer = toy_trainer(cfg)
    trainer.train()
    good = ckpt.list_checkpoints(trainer.checkpointer.root)
    assert [p.name for p in good] == ["iter-000001"]

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    trainer.iteration = 2
    monkeypatch.setattr(ckpt.dcp, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert ckpt.list_checkpoints(trainer.checkpointer.root) == good
    resumed = toy_trainer(toy_config(tmp_path, train__max_iterations=1, checkpoint__resume="auto"))
    assert resumed.iteration == 1


def test_ema_tracks_weights_and_is_checkpointed(tmp_path):
    cfg = toy_config(tmp_path, train__ema_decay=0.5, train__max_iterations=2, checkpoint__every=1)
    trainer = toy_trainer(cfg)
    initial = _params(trainer.model)
    trainer.train()
    for name, p in trainer.model.named_parameters():
        ema = trainer.ema.shadow[name]
        assert not torch.equal(ema, p.detach()) and not torch.equal(ema, initial[name])
    resumed = toy_trainer(toy_config(tmp_path, train__ema_decay=0.5, train__max_iterations=2,
                                     checkpoint__resume="auto"))
    for name in trainer.ema.names:
        assert torch.equal(resumed.ema.shadow[name], trainer.ema.shadow[name])


def test_run_directory_artifacts(tmp_path):
    cfg = toy_config(tmp_path, logging__validation_every=1)
    trainer = toy_trainer(cfg)
    trainer.train()
    run = tmp_path / "run"
    assert (run / "config.yaml").exists()
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for key in ("reward_mean", "reward_std", "reward/brightness_mean", "loss", "clipfrac", "approx_kl",
                "ratio_mean", "ratio_max", "grad_norm", "lr", "time/rollout", "time/decode", "time/reward",
                "time/train"):
        assert key in records[0], key
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["iter-000001.png", "iter-000002.png"]


def test_video_grid_and_animation(tmp_path):
    from PIL import Image

    from fastvideo.training.metrics import save_grid, save_videos

    videos = torch.rand(2, 9, 3, 8, 10)
    grid = save_grid(videos, 1, tmp_path / "grid.png")
    assert Image.open(grid).size == (8 * 10, 2 * 8)  # one row per video, 8 evenly spaced frames
    gif = save_videos(videos, tmp_path / "v.gif")
    with Image.open(gif) as im:
        assert im.size == (2 * 10, 8) and im.n_frames == 9
    assert save_videos(videos, tmp_path / "v.mp4").stat().st_size > 0


def test_time_budget_stops_after_the_iteration_that_crosses_it_and_checkpoints(tmp_path):
    """max_minutes: every iteration is past a 1e-9-minute budget, so the run stops after one, with a
    checkpoint a resume continues from; 0 means no budget."""
    cfg = toy_config(tmp_path / "a", train__max_iterations=5, train__max_minutes=1e-9, checkpoint__every=0)
    trainer = toy_trainer(cfg)
    assert len(trainer.train()) == 1 and trainer.iteration == 1
    resumed = toy_trainer(toy_config(tmp_path / "a", train__max_iterations=5, checkpoint__resume="auto"))
    assert resumed.iteration == 1 and len(resumed.train()) == 4
    from fastvideo.config import validate

    with pytest.raises(ValueError, match="max_minutes"):
        validate(toy_config(tmp_path / "b", train__max_minutes=-1.0))


class _RecordingRewards:
    """A two-reward RewardSet (brightness x2, JPEG compressibility x0.5) that keeps what it returned."""

    def __init__(self, aggregation: str):
        from fastvideo.rewards import RewardSet, RewardTerm
        from fastvideo.rewards.rule_based import BrightnessReward, JpegCompressibilityReward

        self.set = RewardSet([RewardTerm("bright", BrightnessReward(), 2.0),
                              RewardTerm("jpeg", JpegCompressibilityReward(), 0.5)], aggregation=aggregation)
        self.weights = self.set.weights
        self.calls = []

    def __call__(self, images, prompts):
        total, parts = self.set(images, prompts)
        self.calls.append((total, parts))
        return total, parts


@pytest.mark.parametrize("aggregation", ["sum", "advantage"])
def test_trainer_turns_rewards_into_advantages_by_the_configured_aggregation(tmp_path, aggregation):
    from fastvideo.grpo.advantage import group_advantages

    rewards = _RecordingRewards(aggregation)
    cfg = toy_config(tmp_path, rewards__aggregation=aggregation, grpo__adv_clip_max=2.5)
    trainer = toy_trainer(cfg, rewards=rewards)
    trainer.train_iteration()
    (total, parts), g = rewards.calls[0], cfg.grpo.group_size
    per_reward = 2.0 * group_advantages(parts["bright"], g, clip=2.5) + 0.5 * group_advantages(parts["jpeg"], g, clip=2.5)
    of_total = group_advantages(total, g, clip=2.5)
    assert not torch.allclose(per_reward, of_total)  # the two aggregations differ on these rewards
    expected = per_reward if aggregation == "advantage" else of_total
    torch.testing.assert_close(trainer.last_advantages, expected, rtol=0, atol=1e-6)


# --- which samples are trained, and how often ------------------------------------------------------

class _FirstGroupConstant:
    """Brightness, except that the first group of every batch (the first G samples) scores 0.25."""

    weights = {"brightness": 1.0}

    def __init__(self, group_size: int, all_constant: bool = False):
        self.group_size, self.all_constant = group_size, all_constant

    def __call__(self, images, prompts):
        r = images.float().flatten(1).mean(1).cpu()
        r[: len(r) if self.all_constant else self.group_size] = 0.25
        return r, {"brightness": r}


def _spy_on_updates(monkeypatch):
    """Record the sample identities each update of the trainer receives."""
    import fastvideo.training.trainer as trainer_module

    seen = []
    for name in ("run_update", "run_forward_update"):
        real = getattr(trainer_module, name)

        def spy(*args, _real=real, **kwargs):
            ids = args[2] if _real.__name__ == "run_forward_update" else None
            x0 = getattr(args[0], "final_latents", args[0])  # a Rollout (grpo) or the final latents
            seen.append((x0, args[1], ids))
            return _real(*args, **kwargs)

        monkeypatch.setattr(trainer_module, name, spy)
    return seen


@pytest.mark.parametrize("objective", ["grpo", "nft"])
def test_drop_constant_groups_trains_only_groups_with_reward_spread(tmp_path, monkeypatch, objective):
    seen = _spy_on_updates(monkeypatch)
    forward = {"grpo__objective": objective, "sampler__sde_type": "ode", "sampler__init_same_noise": False} \
        if objective != "grpo" else {}
    trainer = toy_trainer(toy_config(tmp_path, grpo__drop_constant_groups=True, **forward),
                          rewards=_FirstGroupConstant(4))
    metrics = trainer.train_iteration()
    assert metrics["groups_dropped"] == 1 and metrics["samples_trained"] == 4
    x0, adv, ids = seen[-1]
    assert len(x0) == len(adv) == 4  # the second group's samples only
    torch.testing.assert_close(adv, trainer.last_advantages[4:])
    if ids is not None:
        assert ids.sample_index.tolist() == [0, 1, 2, 3] and ids.local_prompt.tolist() == [1] * 4
    kept = toy_trainer(toy_config(tmp_path / "all", **forward), rewards=_FirstGroupConstant(4)).train_iteration()
    assert kept["samples_trained"] == 8 and "groups_dropped" not in kept


@pytest.mark.parametrize("objective", ["grpo", "nft"])
def test_all_groups_constant_takes_no_optimizer_step(tmp_path, objective):
    forward = {"grpo__objective": objective, "sampler__sde_type": "ode", "sampler__init_same_noise": False} \
        if objective != "grpo" else {}
    trainer = toy_trainer(toy_config(tmp_path, grpo__drop_constant_groups=True, **forward),
                          rewards=_FirstGroupConstant(4, all_constant=True))
    before = _params(trainer.model)
    metrics = trainer.train_iteration()
    assert metrics["groups_dropped"] == 2 and metrics["samples_trained"] == 0 and metrics["optimizer_steps"] == 0
    assert all(torch.equal(before[n], p.detach()) for n, p in trainer.model.named_parameters())
    kept = toy_trainer(toy_config(tmp_path / "all", **forward), rewards=_FirstGroupConstant(4, all_constant=True))
    assert kept.train_iteration()["optimizer_steps"] == 1  # without the option the zero-advantage samples cost a step


@pytest.mark.parametrize("objective", ["grpo", "awm"])
def test_passes_per_rollout_take_passes_times_the_optimizer_steps(tmp_path, objective):
    forward = {"grpo__objective": objective, "sampler__sde_type": "ode", "sampler__init_same_noise": False} \
        if objective != "grpo" else {}
    one = toy_trainer(toy_config(tmp_path / "one", train__updates_per_iteration=2, **forward))
    two = toy_trainer(toy_config(tmp_path / "two", train__updates_per_iteration=2, train__passes_per_rollout=2,
                                 **forward))
    m1, m2 = one.train_iteration(), two.train_iteration()
    assert (m1["optimizer_steps"], m2["optimizer_steps"]) == (2, 4)
    assert m2["calls/train"] == 2 * m1["calls/train"]
    steps = {int(s["step"]) for s in two.optimizer.state.values()}
    assert steps == {4}  # AdamW stepped 4 times
    assert two.lr_scheduler.last_epoch == 4
    assert one.lr_scheduler.last_epoch == 2
    assert any(not torch.equal(p, q) for p, q in zip(one.model.parameters(), two.model.parameters()))
    if objective == "grpo":
        assert m2["ratio_max"] > 1.0 + 1e-7  # off-policy in the second pass (the PPO clip keeps it valid)


def test_min_reward_trains_only_the_accepted_samples():
    from fastvideo.grpo.subset import train_selection

    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    rewards = torch.tensor([1.0, 0.0, 0.6, 0.2])
    assert train_selection(adv, rewards, 2, min_reward=0.5).tolist() == [0, 2]
    assert train_selection(adv, rewards, 2, positive_only=True, min_reward=0.9).tolist() == [0]
    assert train_selection(adv, rewards, 2) is None
