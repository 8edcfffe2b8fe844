"""Worker for the rank-independence test: ``torchrun --nproc_per_node=N tests/dist_worker.py OUT P PARADIGM
[OBJECTIVE]``.

Trains one iteration of OBJECTIVE (default ``grpo``; ``nft``: DiffusionNFT on ODE rollouts with independent
noise and its soft-updated old policy) with P prompts per rank and saves the full parameters: the toy adapter
(paradigm ``flow`` / ``diffusion``) or a tiny real model (``hunyuan`` T2V, ``skyreels_i2v``, ``sd3``, ``wan``,
``qwen_image``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastvideo.distributed import destroy_distributed, init_distributed  # noqa: E402
from fastvideo.export import full_state_dict  # noqa: E402
from tests.trainer_utils import toy_config, toy_trainer  # noqa: E402

REAL_MODELS = {
    "hunyuan": {"num_frames": 5, "guidance_scale": 6.0},
    "skyreels_i2v": {"num_frames": 5, "guidance_scale": 6.0},
    "sd3": {"guidance_scale": 4.5},
    "wan": {"num_frames": 5, "guidance_scale": 5.0},
    "qwen_image": {"true_cfg_scale": 4.0},
}
"""Tiny real models (32x32) and their settings; every other name is a toy-adapter paradigm."""
ADAM_EPS = {"sd3": 1e-4, "wan": 1e-4, "qwen_image": 1e-4, "skyreels_i2v": 1e-4}
"""Adam's first step is lr * g / (|g| + eps): with eps 1e-8 it is nearly sign(g) for the parameters of these
tiny models whose gradients are ~1e-8..1e-6, so the fp32 rounding of one vs two ranks (gradients equal to
~1e-4 relative) moved them differently by up to 7% of a step; a larger eps keeps the comparison about the
gradient (Wan at eps 1e-4: max parameter difference 1.2e-7). SkyReels I2V joined them with diffusers 0.42.1 /
transformers 5.25: at eps 1e-8 its two-rank step differed by up to 2.9e-4, at 1e-4 by 1.1e-6."""


OBJECTIVE_SETTINGS = {
    "grpo": {},
    "nft": {"grpo__objective": "nft", "sampler__sde_type": "ode", "sampler__init_same_noise": False,
            "grpo__forward_timesteps": 2},
}
"""Config overrides per objective (``nft``: the front door's recipe, fewer re-noised timesteps)."""


def main(out: str, prompts_per_rank: int, paradigm: str, objective: str = "grpo") -> None:
    env = init_distributed()
    tmp = Path(out).parent / f"work-{env.world_size}"
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = toy_config(tmp, train__prompts_per_iteration=prompts_per_rank, train__max_iterations=1,
                     **OBJECTIVE_SETTINGS[objective])
    if paradigm in REAL_MODELS:  # a tiny real transformer, sharded with FSDP2 on 2 ranks
        from fastvideo.training.trainer import GRPOTrainer
        from tests.toy_models import BrightnessRewards

        cfg.model.name, cfg.model.tiny, cfg.model.height, cfg.model.width = paradigm, True, 32, 32
        for key, value in REAL_MODELS[paradigm].items():
            setattr(cfg.model, key, value)
        cfg.sampler.num_steps = 4
        cfg.train.adam_eps = ADAM_EPS.get(paradigm, cfg.train.adam_eps)
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
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], *sys.argv[4:5])
