"""Worker for the rank-independence test: ``torchrun --nproc_per_node=N tests/dist_worker.py OUT P``.

Trains one GRPO iteration of the toy adapter with P prompts per rank and saves the full parameters.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastvideo.distributed import destroy_distributed, init_distributed  # noqa: E402
from fastvideo.export import full_state_dict  # noqa: E402
from tests.trainer_utils import toy_config, toy_trainer  # noqa: E402


def main(out: str, prompts_per_rank: int, paradigm: str) -> None:
    env = init_distributed()
    tmp = Path(out).parent / f"work-{env.world_size}"
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = toy_config(tmp, train__prompts_per_iteration=prompts_per_rank, train__max_iterations=1)
    trainer = toy_trainer(cfg, paradigm, env=env)
    history = trainer.train()
    state = full_state_dict(trainer.model)
    if env.is_main:
        torch.save({"state": state, "reward": history[0]["reward_mean"]}, out)
    destroy_distributed()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
