"""Conformance matrix: every model adapter x every algorithm option runs one rollout + one update and
keeps the invariants its objective has. The GRPO family: on-policy ratio 1, trainable parameters change,
frozen ones do not, only the planned steps are stored and trained. The forward-process objectives (nft,
awm, rft; no likelihood ratio): trainable parameters change, frozen ones do not, no transition is stored,
and NFT's old policy follows the model by its soft update. A new option is one more row here (its
overrides and the invariants it declares), not a trainer edit."""

from __future__ import annotations

import pytest
import torch

from fastvideo.distributed import DistEnv
from tests.toy_models import BrightnessRewards
from tests.trainer_utils import toy_config

FLOW_ONLY = {"flow_grpo", "cps", "flash", "flash_star", "block_noise"}
REAL_CFG_ONLY = {"nft_cfg_free"}
"""Options for models with an unconditional branch (not FLUX's embedded guidance)."""

RATIO_ONE = "ratio_one"
"""Every trained item is recomputed on-policy: ratio exp(logp - logp_old) == 1 (one pass only)."""
CHANGES = "trainable_change"
"""Every trainable parameter moved, every frozen one did not."""
PLANNED_STEPS = "planned_steps"
"""Only the plan's trainable steps are stored and trained."""
STEPS = "optimizer_steps"
"""passes_per_rollout x updates_per_iteration optimizer steps were taken."""
NO_TRANSITIONS = "no_transitions"
"""The forward objectives keep no transition of the rollout (only its final latents)."""
OLD_FOLLOWS = "old_policy_follows"
"""NFT's old policy is d theta_old + (1 - d) theta after the iteration."""

GRPO = frozenset({RATIO_ONE, CHANGES, PLANNED_STEPS, STEPS})
FORWARD = frozenset({CHANGES, NO_TRANSITIONS, STEPS})
ODE = {"sampler__sde_type": "ode", "sampler__init_same_noise": False}

OPTIONS = {
    "dance": ({}, GRPO),
    "flow_grpo": ({"sampler__sde_type": "flow_grpo", "sampler__eta": 0.7}, GRPO),
    "cps": ({"sampler__sde_type": "cps", "sampler__eta": 0.8}, GRPO),
    "window_progressive": ({"sampler__window_size": 2, "sampler__window_shift_every": 1}, GRPO),
    "window_random": ({"sampler__window_size": 2, "sampler__window_strategy": "random"}, GRPO),
    "flash": ({"sampler__window_size": 2, "sampler__ode_solver": "dpm2", "sampler__flash_ratio": 0.5}, GRPO),
    "flash_star": ({"sampler__window_size": 2, "sampler__window_strategy": "frozen", "sampler__ode_solver": "dpm2",
                    "sampler__flash_ratio": 0.34}, GRPO),
    "block_noise": ({"sampler__noise_block": 2}, GRPO),
    "kl_full": ({"grpo__kl_coef": 0.04}, GRPO),
    "lora": ({"model__lora_rank": 4}, GRPO),
    "lora_kl": ({"model__lora_rank": 4, "grpo__kl_coef": 0.04}, GRPO),
    "stat_tracking": ({"grpo__per_prompt_stat_tracking": True}, GRPO),
    "global_advantage": ({"grpo__advantage_scope": "global"}, GRPO),
    "cfg_free": ({"sampler__rollout_guidance_scale": 1.0}, GRPO),
    "grad_checkpointing": ({"model__gradient_checkpointing": True}, GRPO),
    "train_best_of": ({"grpo__group_size": 4, "grpo__train_best_of": 2}, GRPO),
    "ema_micro_batches": ({"train__ema_decay": 0.9, "train__train_batch_size": 1, "train__updates_per_iteration": 1},
                          GRPO),
    "drop_constant_groups": ({"grpo__drop_constant_groups": True}, GRPO),
    "passes_2": ({"train__passes_per_rollout": 2, "train__updates_per_iteration": 2}, GRPO - {RATIO_ONE}),
    "nft": ({"grpo__objective": "nft", **ODE}, FORWARD | {OLD_FOLLOWS}),
    "nft_lora_kl": ({"grpo__objective": "nft", "model__lora_rank": 4, "grpo__kl_coef": 1e-4, **ODE},
                    FORWARD | {OLD_FOLLOWS}),
    "nft_sde_passes": ({"grpo__objective": "nft", "grpo__nft_beta": 0.1, "train__passes_per_rollout": 2},
                       FORWARD | {OLD_FOLLOWS}),
    "nft_cfg_free": ({"grpo__objective": "nft", "grpo__train_cfg_free": True, **ODE}, FORWARD | {OLD_FOLLOWS}),
    "awm": ({"grpo__objective": "awm", **ODE}, FORWARD),
    "awm_kl": ({"grpo__objective": "awm", "grpo__kl_coef": 1e-3, **ODE}, FORWARD),
    "rft": ({"grpo__objective": "rft", "grpo__forward_timesteps": 3, **ODE}, FORWARD),
}

MODELS = {
    "flux": ({"guidance_scale": 3.5}, ()),
    "sd": ({"guidance_scale": 5.0}, ()),
    "sd3": ({"guidance_scale": 4.5}, ("transformer_blocks.1.attn.add_q_proj.lora_B",)),
    "wan": ({"guidance_scale": 5.0, "num_frames": 5}, ()),
    "qwen_image": ({"true_cfg_scale": 4.0}, ("transformer_blocks.1.attn.to_add_out.", "transformer_blocks.1.txt_mlp.")),
}
"""Tiny model settings per adapter (all 32x32, with the guidance each family trains with), and the parameters
without a gradient path by construction, which CHANGES does not require to move: the last of the 2 blocks
only reads the text (SD3's context_pre_only block: its text queries feed nothing, so a LoRA B initialised
at 0 stays 0; Qwen-Image discards the last block's text stream: its output projection and MLP get no grad)."""

MATRIX = [(m, o) for m in MODELS for o in OPTIONS
          if not (m == "sd" and o in FLOW_ONLY) and not (m == "flux" and o in REAL_CFG_ONLY)]


def _trainer(tmp_path, model, option):
    from fastvideo.training.trainer import GRPOTrainer

    overrides = OPTIONS[option][0]
    cfg = toy_config(tmp_path, **overrides)
    cfg.model.name, cfg.model.tiny, cfg.model.height, cfg.model.width = model, True, 32, 32
    for key, value in MODELS[model][0].items():
        setattr(cfg.model, key, value)
    cfg.sampler.num_steps, cfg.train.prompts_per_iteration = 6, 2
    cfg.grpo.group_size = overrides.get("grpo__group_size", 2)
    return GRPOTrainer(cfg, DistEnv(), rewards=BrightnessRewards())


@pytest.mark.slow
@pytest.mark.parametrize(("model", "option"), MATRIX, ids=[f"{m}-{o}" for m, o in MATRIX])
def test_one_iteration_keeps_the_invariants_of_its_objective(tmp_path, model, option):
    invariants = OPTIONS[option][1]
    trainer = _trainer(tmp_path, model, option)
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    metrics = trainer.train_iteration()
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("loss", "grad_norm"))
    if RATIO_ONE in invariants:
        assert abs(metrics["ratio_mean"] - 1) < 1e-5 and abs(metrics["ratio_max"] - 1) < 1e-5
    params = dict(trainer.model.named_parameters())
    if CHANGES in invariants:
        live = [n for n in trainable if not any(dead in n for dead in MODELS[model][1])]
        still = [n for n in live if torch.equal(trainable[n], params[n].detach())]
        assert not still, f"{len(still)} trainable parameters did not change: {still[:3]}"
        assert all(torch.equal(p, params[n].detach()) for n, p in frozen.items())
    t = trainer.cfg.train
    if STEPS in invariants:
        assert metrics["optimizer_steps"] == t.passes_per_rollout * t.updates_per_iteration
    plan, steps = trainer.last_plan, trainer.last_train_steps
    if PLANNED_STEPS in invariants:
        allowed = set(plan.train_candidates) if plan.train_candidates is not None else set(range(plan.num_steps - 1))
        assert steps.shape[1] > 0 and set(steps.unique().tolist()) <= allowed
    if NO_TRANSITIONS in invariants:
        assert steps.shape[1] == 0 and "ratio_mean" not in metrics
        assert metrics["samples_trained"] <= 4 and metrics["calls/train"] > 0
    if OLD_FOLLOWS in invariants:
        old, d = trainer.old_policy, metrics["old_policy_decay"]
        assert d == pytest.approx(trainer.cfg.grpo.nft_old_decay_rate * metrics["optimizer_steps"])
        old_params = dict(old.module.named_parameters())
        for n in old.names:  # theta_old <- d theta_old (= the initial weights) + (1 - d) theta
            torch.testing.assert_close(old_params[n], d * trainable[n] + (1 - d) * params[n].detach(),
                                       rtol=1e-5, atol=1e-6)
        assert all(not p.requires_grad for p in old.module.parameters())
    if trainer.cfg.grpo.train_best_of:
        trained_items = 2 * 2 * steps.shape[1]  # 2 of the 4 samples of each of the 2 groups
        assert metrics["calls/train"] == -(-trained_items // trainer.cfg.train.train_batch_size)
    if trainer.window is not None:
        assert steps.shape[1] == trainer.cfg.sampler.window_size
        assert metrics["calls/rollout"] == plan.num_steps
    if trainer.cfg.grpo.kl_coef > 0:
        assert metrics["kl"] == pytest.approx(0.0, abs=1e-10)  # policy == reference before the first step
        second = trainer.train_iteration()
        assert second["kl"] > 0


@pytest.mark.parametrize("option", sorted(FLOW_ONLY))
def test_flow_only_options_are_rejected_for_diffusion_models(tmp_path, option):
    with pytest.raises(ValueError, match="rectified-flow"):
        _trainer(tmp_path, "sd", option).train_iteration()
