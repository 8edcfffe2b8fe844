"""Worker for the rank-independence test: ``torchrun --nproc_per_node=N tests/dist_worker.py OUT P``.

Trains one GRPO iteration with P prompts per rank and saves the full parameters: the toy adapter
(paradigm ``flow`` / ``diffusion``) or a tiny real video model (``hunyuan`` T2V, ``skyreels_i2v``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastvideo.distributed import destroy_distributed, init_distributed  # noqa: E402
from fastvideo.export import full_state_dict  # noqa: E402
from tests.trainer_utils import toy_config, toy_trainer  # noqa: E402

VIDEO_MODELS = ("hunyuan", "skyreels_i2v")


def main(out: str, prompts_per_rank: int, paradigm: str) -> None:
    env = init_distributed()
    tmp = Path(out).parent / f"work-{env.world_size}"
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = toy_config(tmp, train__prompts_per_iteration=prompts_per_rank, train__max_iterations=1)
    if paradigm in VIDEO_MODELS:  # a tiny real video transformer, sharded with FSDP2 on 2 ranks
        from fastvideo.training.trainer import GRPOTrainer
        from tests.toy_models import BrightnessRewards

        cfg.model.name, cfg.model.tiny, cfg.model.height, cfg.model.width = paradigm, True, 32, 32
        cfg.model.num_frames, cfg.model.guidance_scale, cfg.sampler.num_steps = 5, 6.0, 4
        trainer = GRPOTrainer(cfg, env, rewards=BrightnessRewards())
    else:
        trainer = toy_trainer(cfg, paradigm, env=env)
    before = {name: value.clone() for name, value in full_state_dict(trainer.model).items()}
    history = trainer.train()
    state = full_state_dict(trainer.model)
    moved = sum(not torch.equal(before[name], value) for name, value in state.items())
    if env.is_main:
        torch.save({"state": state, "reward": history[0]["reward_mean"], "moved": moved}, out)
    destroy_distributed()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
