"""An interrupted and resumed GRPO run next to an uninterrupted one (toy adapter), for
tests/test_checkpoint_stateful.py; also a torchrun worker:

    torchrun --nproc_per_node=N tests/resume_worker.py OUT

runs both on N ranks (FSDP2, gloo) and writes what differs to OUT (json, rank 0).

The run is MixGRPO-like: a progressive sliding window that moves every 2 iterations, EMA, per-prompt
reward statistics and a cosine LR schedule with warm-up. It is killed at the start of iteration 3,
one iteration after the checkpoint of iteration 2, so the resume also drops a logged iteration.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.trainer_utils import toy_config, toy_trainer  # noqa: E402

ITERATIONS, KILL_AT = 5, 3
TIMING_PREFIXES = ("time/", "sec_per_iteration")


class Killed(Exception):
    """Stands for the process being killed."""


def resume_config(root: Path, **overrides):
    settings = dict(train__max_iterations=ITERATIONS, checkpoint__every=2, train__ema_decay=0.9,
                    train__lr_scheduler="cosine", train__lr_warmup_steps=2, grpo__per_prompt_stat_tracking=True,
                    sampler__window_size=2, sampler__window_strategy="progressive", sampler__window_shift_every=2)
    return toy_config(root, **{**settings, **overrides})


def run(cfg, env=None, kill_at: int | None = None):
    """Train ``cfg`` (killed at the start of iteration ``kill_at``); returns the trainer, per iteration
    its window start and trained steps, and the iteration it started from."""
    trainer = toy_trainer(cfg, env=env)
    started_at = trainer.iteration
    seen: dict[int, dict] = {}
    step = trainer.train_iteration

    def recorded():
        if trainer.iteration == kill_at:
            raise Killed(f"killed at iteration {kill_at}")
        metrics = step()
        seen[trainer.iteration] = {"window_start": trainer.window.start(trainer.iteration),
                                   "train_steps": trainer.last_train_steps.clone()}
        return metrics

    trainer.train_iteration = recorded
    try:
        trainer.train()
    except Killed:
        trainer.metrics.close()
    return trainer, seen, started_at


def rng_snapshot() -> tuple:
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].tolist()


@dataclass
class Runs:
    straight: object
    resumed: object
    resumed_from: int
    seen_straight: dict
    seen_interrupted: dict
    seen_resumed: dict
    rng_straight: tuple
    rng_resumed: tuple


def _configs(root: Path, env, overrides: dict) -> tuple:
    """The three runs' configs. Every rank writes the same prompt files (``toy_config``): one rank after
    the other, and before any trainer reads them."""
    from fastvideo.distributed import barrier

    for rank in range(env.world_size if env else 1):
        if env is None or env.rank == rank:
            configs = (resume_config(root / "a", **overrides), resume_config(root / "b", **overrides),
                       resume_config(root / "b", checkpoint__resume="auto", **overrides))
        barrier()
    return configs


def straight_and_resumed(root: Path, env=None, **overrides) -> Runs:
    """``overrides``: config fields on top of ``resume_config``'s (e.g. another objective)."""
    straight_cfg, killed_cfg, resume_cfg = _configs(root, env, overrides)
    straight, seen_a, _ = run(straight_cfg, env)
    rng_a = rng_snapshot()
    _, seen_b, _ = run(killed_cfg, env, kill_at=KILL_AT)
    resumed, seen_c, resumed_from = run(resume_cfg, env)
    return Runs(straight, resumed, resumed_from, seen_a, seen_b, seen_c, rng_a, rng_snapshot())


def _local(value):
    from torch.distributed.tensor import DTensor

    return value.to_local() if isinstance(value, DTensor) else value


def _diff(a, b, path: str, out: list[str]) -> None:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and torch.equal(_local(a), _local(b)))
        if not same:
            out.append(path)
    elif isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            out.append(f"{path} (keys)")
        for key in a.keys() & b.keys():
            _diff(a[key], b[key], f"{path}.{key}", out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}.{i}", out)
    elif a != b:
        out.append(path)


def differences(a, b) -> list[str]:
    """Where two trainers' states differ: weights, AdamW state, EMA, LR schedule, tracker, iteration, the
    NFT old policy (this rank's shards under FSDP2)."""
    out: list[str] = []
    _diff(dict(a.model.named_parameters()), dict(b.model.named_parameters()), "model", out)
    _diff(a.optimizer.state_dict(), b.optimizer.state_dict(), "optim", out)
    _diff(a.ema.state_dict(), b.ema.state_dict(), "ema", out)
    _diff(a.lr_scheduler.state_dict(), b.lr_scheduler.state_dict(), "lr_scheduler", out)
    _diff(a.tracker.state_dict(), b.tracker.state_dict(), "tracker", out)
    _diff(a.iteration, b.iteration, "iteration", out)
    if a.old_policy is not None or b.old_policy is not None:  # DiffusionNFT's old policy
        _diff(a.old_policy.state_dict(), b.old_policy.state_dict(), "old_policy", out)
    return out


def metrics_records(trainer) -> list[dict]:
    """metrics.jsonl of a run without its wall-clock timings."""
    lines = (Path(trainer.cfg.output_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(TIMING_PREFIXES)} for line in lines]


def window_starts(*seen: dict) -> list[int]:
    merged = {k: v for s in seen for k, v in s.items()}  # later runs overwrite the iterations they redo
    return [merged[i]["window_start"] for i in range(ITERATIONS)]


def main(out: str) -> None:
    import torch.distributed as dist

    from fastvideo.distributed import destroy_distributed, init_distributed
    from fastvideo.training.checkpoint import saved_keys

    env = init_distributed()
    runs = straight_and_resumed(Path(out).parent / f"work-{env.world_size}", env)
    mine = differences(runs.straight, runs.resumed)
    mine += [f"train_steps.{i}" for i, rec in runs.seen_resumed.items()
             if not torch.equal(rec["train_steps"], runs.seen_straight[i]["train_steps"])]
    every = [None] * env.world_size
    dist.all_gather_object(every, mine)
    if env.is_main:
        checkpoint = Path(runs.resumed.cfg.output_dir) / "checkpoints" / "iter-000004"
        result = {"differences": every, "resumed_from": runs.resumed_from,
                  "metrics_equal": metrics_records(runs.straight) == metrics_records(runs.resumed),
                  "window_starts": [window_starts(runs.seen_straight),
                                    window_starts(runs.seen_interrupted, runs.seen_resumed)],
                  "saved_keys": sorted(saved_keys(checkpoint)),
                  "sharded": type(next(runs.resumed.model.parameters())).__name__}
        Path(out).write_text(json.dumps(result))
    destroy_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
