"""Checkpoints as one dict of Stateful objects given to DCP (fastvideo/training/checkpoint.py): a run
resumed in the middle of a progressive-window schedule equals the uninterrupted run bit for bit, every
Stateful round-trips, and mismatched or missing states are refused clearly."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributed.checkpoint import CheckpointException

from fastvideo.distributed import DistEnv
from fastvideo.grpo.advantage import PerPromptStatTracker
from fastvideo.grpo.window import SlidingWindow
from fastvideo.training.checkpoint import (
    BlobState,
    Checkpointer,
    Counters,
    ModelState,
    OptimizerState,
    RNGState,
    rng_key,
    saved_keys,
)
from fastvideo.training.optim import EMA
from tests.resume_worker import (
    ITERATIONS,
    differences,
    metrics_records,
    resume_config,
    straight_and_resumed,
    window_starts,
)
from tests.torchrun import torchrun
from tests.trainer_utils import toy_trainer

TRAINER_KEYS = ["counters", "ema", "lr_scheduler", "model", "optim", "rng/rank0", "tracker", "window"]


def test_run_resumed_mid_window_equals_the_uninterrupted_run_bit_for_bit(tmp_path):
    runs = straight_and_resumed(tmp_path)
    assert runs.resumed_from == 2 and runs.resumed.iteration == runs.straight.iteration == ITERATIONS
    assert sorted(saved_keys(tmp_path / "b" / "run" / "checkpoints" / "iter-000002")) == TRAINER_KEYS
    assert differences(runs.straight, runs.resumed) == []  # weights, AdamW, EMA, LR, tracker (torch.equal)
    assert runs.straight.ema.updates == runs.resumed.ema.updates == ITERATIONS
    assert runs.straight.tracker.stats  # the per-prompt buffers hold rewards
    assert runs.straight.lr_scheduler.get_last_lr() == runs.resumed.lr_scheduler.get_last_lr()
    starts = window_starts(runs.seen_straight)
    assert starts == [0, 0, 1, 1, 2] == window_starts(runs.seen_interrupted, runs.seen_resumed)
    for i, record in runs.seen_resumed.items():  # the trained steps of every redone iteration
        assert torch.equal(record["train_steps"], runs.seen_straight[i]["train_steps"]), i
    records = metrics_records(runs.resumed)
    assert [r["iteration"] for r in records] == list(range(ITERATIONS))  # the killed run's iteration 2 dropped
    assert records == metrics_records(runs.straight)
    rng_a, rng_b = runs.rng_straight, runs.rng_resumed
    assert torch.equal(rng_a[0], rng_b[0]) and rng_a[1:] == rng_b[1:]


def test_nft_run_resumed_mid_run_equals_the_uninterrupted_run_with_its_old_policy(tmp_path):
    """DiffusionNFT's old policy (a SoftCopy) is a checkpointed state: without it a resumed run would restart
    it from the current weights. A fast decay (0.2 per optimizer step) keeps it well apart from the model."""
    runs = straight_and_resumed(tmp_path, grpo__objective="nft", sampler__sde_type="ode",
                                sampler__init_same_noise=False, grpo__forward_timesteps=3,
                                grpo__nft_old_decay_rate=0.2, grpo__nft_old_decay_max=0.9)
    assert runs.resumed_from == 2
    assert sorted(saved_keys(tmp_path / "b" / "run" / "checkpoints" / "iter-000002")) == sorted(
        [*TRAINER_KEYS, "old_policy"])
    assert differences(runs.straight, runs.resumed) == []  # weights, AdamW, EMA, ..., the old policy (torch.equal)
    old, model = runs.straight.old_policy, dict(runs.straight.model.named_parameters())
    assert old.steps == ITERATIONS and old.current_decay() == pytest.approx(0.9)
    assert all(not torch.equal(old.state_dict()[n], model[n].detach()) for n in old.names)
    assert metrics_records(runs.resumed) == metrics_records(runs.straight)


def _tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)  # a frozen weight (the base of a LoRA run): never saved
    return model


def _pieces(seed: int):
    model = _tiny_model(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    ema = EMA(model, 0.9, warmup=True)
    return model, optimizer, scheduler, ema


def _step(model, optimizer, scheduler, ema, seed: int) -> None:
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed))
    model(x).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    ema.update(model)


def _states(model, optimizer, scheduler, ema, tracker, window, counters) -> dict:
    return {"model": ModelState(model), "optim": OptimizerState(model, optimizer), "lr_scheduler": scheduler,
            "ema": ema, "tracker": BlobState(tracker), "window": window, "counters": counters,
            rng_key(0): BlobState(RNGState())}


def _draws() -> tuple:
    return torch.rand(3), random.random(), float(np.random.rand())


def test_every_stateful_round_trips_through_dcp(tmp_path):
    checkpointer = Checkpointer(tmp_path, DistEnv(), keep_last=1)
    model, optimizer, scheduler, ema = _pieces(seed=0)
    for i in range(3):
        _step(model, optimizer, scheduler, ema, seed=i)
    tracker = PerPromptStatTracker(buffer_size=4, min_count=2)
    tracker.update(["a.b", "c d", "a.b", "ünïcode"], [1.0, 2.0, 3.5, -1.0])  # prompts are data, not keys
    window = SlidingWindow(8, 3, "progressive", shift_every=2)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = checkpointer.save(7, _states(model, optimizer, scheduler, ema, tracker, window, Counters(iteration=7)))
    expected_draws = _draws()
    assert (path / "COMPLETE").read_text() == "7\n"
    assert "model.0.bias" not in {k for k in _fqns(path)} and "model.0.weight" in _fqns(path)

    fresh = _pieces(seed=1)  # other weights, empty AdamW state, LR schedule at step 0, EMA never updated
    fresh_model = fresh[0]
    frozen_bias = fresh_model[0].bias.detach().clone()
    fresh_tracker, counters = PerPromptStatTracker(buffer_size=4, min_count=2), Counters(iteration=0)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    checkpointer.load(path, _states(*fresh, fresh_tracker, SlidingWindow(8, 3, "progressive", shift_every=2),
                                    counters))

    draws = _draws()
    assert torch.equal(draws[0], expected_draws[0]) and draws[1:] == expected_draws[1:]
    assert counters["iteration"] == 7
    assert fresh_tracker.state_dict() == tracker.state_dict()
    assert fresh[2].state_dict() == scheduler.state_dict()
    assert fresh[3].updates == ema.updates == 3
    assert all(torch.equal(fresh[3].shadow[n], ema.shadow[n]) for n in ema.names)
    assert torch.equal(fresh_model[0].bias, frozen_bias)  # frozen weights are the new model's own
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(torch.equal(dict(fresh_model.named_parameters())[n], dict(model.named_parameters())[n])
               for n in trained)
    _assert_same(fresh[1].state_dict(), optimizer.state_dict())
    with torch.no_grad():  # the same base weights, as in a real resume
        fresh_model[0].bias.copy_(model[0].bias)
    _step(*fresh, seed=5)  # and the next step is the same too (AdamW moments and step count restored)
    _step(model, optimizer, scheduler, ema, seed=5)
    assert all(torch.equal(dict(fresh_model.named_parameters())[n], dict(model.named_parameters())[n])
               for n in trained)


def _fqns(path: Path) -> set[str]:
    import torch.distributed.checkpoint as dcp

    return set(dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata)


def _assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


class _Code:
    """Not plain data: a checkpoint holding it must not unpickle it."""


class _Holder:
    def __init__(self, value):
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def test_non_tensor_values_load_with_weights_only_semantics(tmp_path):
    checkpointer = Checkpointer(tmp_path, DistEnv())
    path = checkpointer.save(1, {"plain": _Holder((1, "a", [2.5, None])), "code": _Holder(_Code())})
    plain = _Holder(None)
    checkpointer.load(path, {"plain": plain})
    assert plain.value == (1, "a", [2.5, None])
    with pytest.raises(CheckpointException, match="Unsupported global.*_Code"):  # a BaseException
        checkpointer.load(path, {"code": _Holder(None)})


def test_window_with_other_settings_is_refused():
    saved = SlidingWindow(8, 3, "progressive", shift_every=2).state_dict()
    assert saved == {"num_steps": 8, "size": 3, "strategy": "progressive", "shift_every": 2, "stride": 1, "seed": 0}
    with pytest.raises(ValueError, match="shift_every: 2 in the checkpoint, 3 now"):
        SlidingWindow(8, 3, "progressive", shift_every=3).load_state_dict(saved)
    with pytest.raises(ValueError, match="strategy: 'progressive' in the checkpoint, 'frozen' now"):
        SlidingWindow(8, 3, "frozen", shift_every=2).load_state_dict(saved)
    SlidingWindow(8, 3, "progressive", shift_every=2, seed=5).load_state_dict(saved)  # seed: random only
    with pytest.raises(ValueError, match="seed: 0 in the checkpoint, 5 now"):
        SlidingWindow(8, 3, "random", seed=5).load_state_dict(SlidingWindow(8, 3, "random").state_dict())


def test_resume_with_another_window_schedule_raises(tmp_path):
    toy_trainer(resume_config(tmp_path, train__max_iterations=2)).train()
    with pytest.raises(ValueError, match="another sliding window.*shift_every: 2 in the checkpoint, 3 now"):
        toy_trainer(resume_config(tmp_path, train__max_iterations=2, sampler__window_shift_every=3,
                                  checkpoint__resume="auto"))


def test_missing_states_raise_unless_optional(tmp_path, caplog):
    checkpointer = Checkpointer(tmp_path, DistEnv())
    path = checkpointer.save(3, {"counters": Counters(iteration=3), rng_key(0): BlobState(RNGState())})
    counters = Counters(iteration=0)
    with pytest.raises(KeyError, match="holds no 'ema' state"):
        checkpointer.load(path, {"counters": counters, "ema": EMA(nn.Linear(2, 2), 0.5)})
    with caplog.at_level(logging.WARNING, logger="fastvideo"):  # rank 1 of a run saved by one rank
        checkpointer.load(path, {"counters": counters, rng_key(1): BlobState(RNGState())}, optional=[rng_key(1)])
    assert counters["iteration"] == 3 and "'rng/rank1'" in caplog.text
    legacy = tmp_path / "iter-000009"
    legacy.mkdir()
    (legacy / "trainer_state.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="earlier checkpoint layout"):
        checkpointer.load(legacy, {"counters": counters})


def test_ema_state_round_trips_and_reads_the_former_pretraining_layout():
    model = _tiny_model(0)
    ema = EMA(model, 0.999, warmup=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    assert ema.current_decay() == pytest.approx(2 / 11)  # warm-up: (1 + n) / (10 + n)
    state = ema.state_dict()
    assert state[EMA.UPDATES] == 1 and set(state) == {*ema.names, EMA.UPDATES}
    other = EMA(_tiny_model(1), 0.999, warmup=True)
    other.load_state_dict({"shadow": {**_tiny_model(7).state_dict(), **state}, "updates": 1})  # old pretraining
    assert other.updates == 1 and all(torch.equal(other.shadow[n], ema.shadow[n]) for n in ema.names)
    averaged = ema.averaged_copy(model)
    assert not averaged.training and not any(p.requires_grad for p in averaged.parameters())
    assert all(torch.equal(dict(averaged.named_parameters())[n], ema.shadow[n]) for n in ema.names)
    assert torch.equal(averaged[0].bias, model[0].bias)  # not averaged (frozen): the module's own


@pytest.mark.slow
def test_two_ranks_fsdp2_resume_mid_window_equals_the_uninterrupted_run(tmp_path):
    out = tmp_path / "result.json"
    torchrun(2, [str(Path(__file__).with_name("resume_worker.py")), str(out)], outputs=(tmp_path / "work-2",))
    result = json.loads(out.read_text())
    assert result["sharded"] == "DTensor" and result["resumed_from"] == 2
    assert result["differences"] == [[], []]
    assert result["metrics_equal"] and result["window_starts"] == [[0, 0, 1, 1, 2]] * 2
    assert result["saved_keys"] == sorted([*TRAINER_KEYS, "rng/rank1"])
