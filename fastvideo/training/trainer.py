"""The one GRPO trainer. It never names a model or a reward: those come from the adapter and
reward registries chosen by the config.

One iteration: prompts -> batched rollout (G samples per prompt) -> decode -> score in memory ->
gather rewards over ranks -> group advantages -> the trained samples (``grpo.subset.train_selection``) ->
the objective's update (``grpo.objective``: micro-batched recomputation of each sample's trained steps
and the clipped loss, or a forward-process loss on the final latents) -> grad-norm clip -> AdamW step ->
LR schedule (-> EMA; -> the old policy's soft update).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastvideo.config import Config, config_to_dict, save_config
from fastvideo.distributed import DistEnv, all_gather_cat, all_reduce_mean, autocast, init_distributed
from fastvideo.grpo.advantage import PerPromptStatTracker, reward_advantages
from fastvideo.grpo.forward import OBJECTIVE_SPECS
from fastvideo.grpo.plan import iteration_plan
from fastvideo.grpo.rollout import initial_noise, make_sample_ids, rollout, train_step_subsets
from fastvideo.grpo.sampler import sampler_for
from fastvideo.grpo.subset import constant_groups, subset_rollout, train_selection
from fastvideo.grpo.window import SlidingWindow
from fastvideo.inference.sampling import generate
from fastvideo.training.data import PromptSource, iteration_prompts
from fastvideo.training.forward_update import ForwardSettings, run_forward_update
from fastvideo.training.lora import lora_off
from fastvideo.training.metrics import (
    MetricsLogger,
    PhaseTimer,
    iteration_call_counts,
    reward_metrics,
    save_grid,
    save_videos,
)
from fastvideo.training.optim import EMA, build_lr_scheduler, build_optimizer
from fastvideo.training.policy import prepare_policy
from fastvideo.training.update import UpdateSettings, gradient_sync, run_update

logger = logging.getLogger("fastvideo")


class NonFiniteRewardError(RuntimeError):
    """A reward was NaN or infinite and rewards.nan_policy is 'error'."""


def build_sampler(cfg: Config, adapter, num_steps: int | None = None):
    """The adapter's paradigm's sampler with the run's ``sampler`` settings (``grpo.sampler.sampler_for``)."""
    s = cfg.sampler
    try:
        return sampler_for(adapter, num_steps or s.num_steps, shift=s.shift, sde_type=s.sde_type, eta=s.eta,
                           noise_block=s.noise_block)
    except ValueError as err:
        raise ValueError(f"sampler settings: {err}") from None


def build_window(cfg: Config) -> SlidingWindow | None:
    """MixGRPO's sliding window of the run's ``sampler`` settings (None without one)."""
    s = cfg.sampler
    return SlidingWindow(s.num_steps, s.window_size, s.window_strategy, s.window_shift_every, s.window_stride,
                         cfg.train.seed) if s.window_size > 0 else None


class GRPOTrainer:
    """Builds everything from a ``Config`` and runs ``train()``; components can be injected for tests."""

    def __init__(self, cfg: Config, env: DistEnv | None = None, adapter=None, rewards=None, supervised_loss=None):
        self.cfg = cfg
        if cfg.train.supervised_coef > 0 and supervised_loss is None:
            raise ValueError("train.supervised_coef > 0 needs a supervised loss: GRPOTrainer(..., supervised_loss=fn) "
                             "(fastvideo.shapes.train_shapes supplies clean renders); set it to 0 otherwise")
        self.supervised_loss = supervised_loss  # fn(trained view, iteration, call_index) -> loss on ground truth
        self.env = env or init_distributed()
        self.run_dir = Path(cfg.output_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.env.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        torch.manual_seed(cfg.train.seed)
        self.adapter = adapter if adapter is not None else _build_adapter(cfg, self.env)
        self.sampler = build_sampler(cfg, self.adapter)
        self.eval_sampler = build_sampler(cfg, self.adapter, cfg.sampler.eval_num_steps or None)
        self.window = build_window(cfg)
        self.data = PromptSource(cfg, self.adapter, self.env.device)
        self.objective = OBJECTIVE_SPECS[cfg.grpo.objective]
        if cfg.grpo.train_cfg_free:
            self.adapter.check_real_cfg()  # now, not after the first rollout
        self.model = self._prepare_model()
        self.optimizer = build_optimizer(self.model, cfg.train)
        total_updates = cfg.train.max_iterations * cfg.train.updates_per_iteration * cfg.train.passes_per_rollout
        self.lr_scheduler = build_lr_scheduler(self.optimizer, cfg.train, total_updates)
        self.ema = EMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.rewards = rewards if rewards is not None else _build_rewards(cfg, self.env)
        self.tracker = PerPromptStatTracker() if cfg.grpo.per_prompt_stat_tracking else None
        from fastvideo.training.checkpoint import Checkpointer

        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", self.env, cfg.checkpoint.keep_last)
        self.metrics = MetricsLogger(self.run_dir, enabled=self.env.is_main, use_wandb=cfg.logging.wandb,
                                     wandb_project=cfg.logging.wandb_project, config=config_to_dict(cfg),
                                     use_tensorboard=cfg.logging.tensorboard)
        self.iteration = 0
        self._maybe_resume()

    # ----------------------------------------------------------------- setup
    def _prepare_model(self):
        policy = prepare_policy(self.cfg, self.adapter, self.env, self.objective.old_policy)
        self._reference, self.old_policy = policy.reference, policy.old_policy
        return policy.model

    def _maybe_resume(self) -> None:
        path = self.checkpointer.resolve(self.cfg.checkpoint.resume)
        if path is None:
            if self.cfg.checkpoint.resume == "auto":
                logger.info("resume=auto: no checkpoint in %s, starting fresh", self.checkpointer.root)
            return
        from fastvideo.training.checkpoint import rng_key

        states = self._checkpoint_states()
        # a rank beyond the saved world size has no RNG of its own; a tracker switched on later starts empty
        self.checkpointer.load(path, states, optional=(rng_key(self.env.rank), "tracker"))
        self.iteration = states["counters"]["iteration"]
        self.metrics.truncate_after(self.iteration - 1)
        logger.info("resumed from %s at iteration %d", path, self.iteration)

    def save_checkpoint(self) -> Path:
        return self.checkpointer.save(self.iteration, self._checkpoint_states())

    def _checkpoint_states(self) -> dict:
        """Everything a resume restores, as one dict of ``Stateful`` objects (see training/checkpoint.py)."""
        from fastvideo.training import checkpoint as ckpt

        states = {"model": ckpt.ModelState(self.model), "optim": ckpt.OptimizerState(self.model, self.optimizer),
                  "lr_scheduler": self.lr_scheduler, "counters": ckpt.Counters(iteration=self.iteration),
                  ckpt.rng_key(self.env.rank): ckpt.BlobState(ckpt.RNGState())}
        if self.ema is not None:
            states["ema"] = self.ema
        if self.window is not None:
            states["window"] = self.window
        if self.tracker is not None:
            states["tracker"] = ckpt.BlobState(self.tracker)
        if self.old_policy is not None:
            states["old_policy"] = self.old_policy
        return states

    # ----------------------------------------------------------------- model calls
    def _policy(self, module=None):
        """The adapter the rollout and the update call: the run's rollout guidance
        (``sampler.rollout_guidance_scale``, e.g. CFG-free training) and, for the KL term's reference
        policy, another ``module``. A view (``adapter.variant``): the adapter itself is never changed."""
        return self.adapter.variant(transformer=module, guidance_scale=self.cfg.sampler.rollout_guidance_scale)

    def _train_policy(self, module=None):
        """``_policy(module)`` as the forward-process loss sees it: the conditional branch alone with
        ``grpo.train_cfg_free`` (rollouts keep the guidance), else the rollout's own view."""
        view = self._policy(module)
        return view.conditional_branch() if self.cfg.grpo.train_cfg_free else view

    def _predict(self, latents, timesteps, cond, rows, adapter=None):
        """``adapter`` (default: ``self._policy()``) evaluated on the conditioning rows ``rows``."""
        from fastvideo.models.base import select_cond

        adapter = adapter if adapter is not None else self._policy()
        with autocast(self.env.device, self.cfg.train.mixed_precision):
            return adapter.predict(latents, timesteps.to(latents.device), select_cond(cond, rows))

    def _reference_predict(self, cond, ids):
        if self.cfg.grpo.kl_coef <= 0:
            return None
        if self._reference is not None:
            reference = self._train_policy(self._reference)
            return lambda x, t, rows: self._predict(x, t, cond, ids.local_prompt[rows], reference)
        policy = self._train_policy()

        def lora_disabled(x, t, rows):
            with lora_off(self.model):
                return self._predict(x, t, cond, ids.local_prompt[rows], policy)

        return lora_disabled

    # ----------------------------------------------------------------- one iteration
    def train_iteration(self) -> dict:
        cfg, env, it = self.cfg, self.env, self.iteration
        g, p = cfg.grpo.group_size, cfg.train.prompts_per_iteration
        timer = PhaseTimer()
        positions = list(range(env.rank * p, (env.rank + 1) * p))
        batch_prompts = iteration_prompts(len(self.data), it, p * env.world_size, cfg.train.seed)
        my_prompts = [batch_prompts[q] for q in positions]
        cond = self.data.conditioning(my_prompts)
        ids = make_sample_ids(positions, g)
        plan = self.plan(it)
        steps = torch.zeros(len(ids.sample_index), 0, dtype=torch.long) if self.objective.forward_process else \
            train_step_subsets(ids, plan.num_steps, plan.train_fraction, seed=cfg.train.seed, iteration=it,
                               candidates=plan.train_candidates)  # the forward objectives keep no transitions
        init = initial_noise(self.adapter.latent_shape(), ids, seed=cfg.train.seed, iteration=it,
                             same_in_group=cfg.sampler.init_same_noise, device=env.device)
        policy = self._policy()
        with timer("rollout"):
            ro = rollout(lambda x, t, rows: self._predict(x, t, cond, rows, policy), plan.sampler, init, ids, steps,
                         seed=cfg.train.seed, iteration=it, batch_size=cfg.train.rollout_batch_size,
                         stochastic_steps=plan.stochastic_steps, dpm_steps=plan.dpm_steps)
        self.last_plan, self.last_train_steps = plan, ro.train_steps  # for inspection and tests
        with timer("decode"):
            images = self.decode(ro.final_latents)
        texts = [self.data.prompts[my_prompts[j]] for j in ids.local_prompt.tolist()]
        with timer("reward"):
            total, breakdown = self.rewards(images, texts)
        all_total = all_gather_cat(total.float().to(env.device)).cpu()
        all_parts = {k: all_gather_cat(v.float().to(env.device)).cpu() for k, v in breakdown.items()}
        metrics = reward_metrics(all_total, all_parts)
        if not torch.isfinite(all_total).all():
            self._handle_nonfinite(all_total)
            metrics["skipped"] = 1.0
        else:
            all_texts = [self.data.prompts[batch_prompts[q]] for q in range(p * env.world_size) for _ in range(g)]
            adv_all = self.advantages(all_total, all_parts, all_texts)
            self.last_advantages = adv_all  # for inspection and tests
            adv = adv_all[env.rank * len(total):(env.rank + 1) * len(total)]
            keep = train_selection(adv, total.float(), g, best_of=cfg.grpo.train_best_of,
                                   drop_constant_groups=cfg.grpo.drop_constant_groups,
                                   positive_only=self.objective.positive_only, min_reward=cfg.grpo.rft_min_reward)
            if keep is not None:
                (ro, ids), adv = subset_rollout(ro, ids, keep), adv[keep]
            if cfg.grpo.drop_constant_groups:
                metrics["groups_dropped"] = int(constant_groups(all_total, g).sum())
            with timer("train"):
                metrics.update(self._update(policy, ro, adv, cond, ids, plan.sampler), samples_trained=len(adv))
            if self.old_policy is not None:
                metrics["old_policy_decay"] = self.old_policy.update(self.model, metrics.get("optimizer_steps", 0))
        metrics.update(timer.as_metrics())
        metrics.update(self._call_counts(plan, len(init), ro))
        metrics["lr"] = self.lr_scheduler.get_last_lr()[0]
        return metrics

    def plan(self, iteration: int):
        """The step plan (SDE / trained / higher-order ODE steps) of ``iteration``."""
        s = self.cfg.sampler
        return iteration_plan(self.sampler, self.window, iteration, timestep_fraction=self.cfg.grpo.timestep_fraction,
                              ode_solver=s.ode_solver, flash_ratio=s.flash_ratio)

    def _call_counts(self, plan, rolled_out: int, ro) -> dict:
        n, k = ro.train_steps.shape
        return iteration_call_counts(self.cfg, self.objective, plan.num_steps, rolled_out, n, k)

    def _update(self, policy, ro, adv, cond, ids, sampler) -> dict:
        """The objective's update: GRPO's over the stored transitions, or a forward-process objective's."""
        t, g = self.cfg.train, self.cfg.grpo
        common = dict(reference_predict=self._reference_predict(cond, ids), sync_context=gradient_sync(self.model),
                      on_step=(lambda: self.ema.update(self.model)) if self.ema else None,
                      extra_loss=self._supervised_term())
        if not self.objective.forward_process:
            settings = UpdateSettings(g.clip_range, t.train_batch_size, t.updates_per_iteration, t.max_grad_norm,
                                      g.kl_coef, t.passes_per_rollout)
            return run_update(ro, adv, self._rows_predict(cond, ids, policy), sampler, self.model, self.optimizer,
                              self.lr_scheduler, settings, **common)
        settings = ForwardSettings(g.objective, g.forward_timesteps or self.objective.timesteps, t.train_batch_size,
                                   t.updates_per_iteration, t.max_grad_norm, t.passes_per_rollout, g.adv_clip_max,
                                   g.nft_beta, g.kl_coef, t.seed, self.iteration)
        predict = self._rows_predict(cond, ids, self._train_policy() if g.train_cfg_free else policy)
        old = None
        if self.old_policy is not None:
            old = self._rows_predict(cond, ids, self._train_policy(self.old_policy.module))
        return run_forward_update(ro.final_latents, adv, ids, predict, self.sampler, self.model, self.optimizer,
                                  self.lr_scheduler, settings, old_predict=old, **common)

    def _rows_predict(self, cond, ids, view):
        """``predict(x, timesteps, rows)``: the adapter ``view`` on the conditioning of the samples ``rows``."""
        return lambda x, ts, rows: self._predict(x, ts, cond, ids.local_prompt[rows], view)

    def _supervised_term(self):
        """``extra_loss(call_index)`` of the update: ``train.supervised_coef`` x the caller's supervised loss of
        the trained view (None when the coefficient is 0)."""
        coef = self.cfg.train.supervised_coef
        if coef <= 0:
            return None
        view, iteration = self._train_policy(), self.iteration

        def term(index):
            with autocast(self.env.device, self.cfg.train.mixed_precision):
                loss = self.supervised_loss(view, iteration, index).float()
            return coef * loss, {"supervised_loss": loss.detach()}

        return term

    def advantages(self, total, parts, texts) -> torch.Tensor:
        """Group-normalised advantages of the gathered rewards (whole global batch, rank order):
        ``grpo.advantage.reward_advantages`` with the run's aggregation, tracker and clipping."""
        g, aggregation = self.cfg.grpo, self.cfg.rewards.aggregation
        return reward_advantages(total, parts, g.group_size, aggregation=aggregation, tracker=self.tracker,
                                 prompts=texts, weights=self.rewards.weights if aggregation == "advantage" else None,
                                 clip=g.adv_clip_max, scope=g.advantage_scope)

    def _handle_nonfinite(self, rewards) -> None:
        bad = int((~torch.isfinite(rewards)).sum())
        msg = f"iteration {self.iteration}: {bad} non-finite reward(s)"
        if self.cfg.rewards.nan_policy == "error":
            raise NonFiniteRewardError(msg + " (rewards.nan_policy=error)")
        logger.warning("%s: update skipped (set rewards.nan_policy=error to stop instead)", msg)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        bs = self.cfg.train.rollout_batch_size or len(latents)
        return torch.cat([self.adapter.decode(chunk).float() for chunk in latents.split(bs)])

    # ----------------------------------------------------------------- loop
    def train(self) -> list[dict]:
        cfg, history = self.cfg, []
        bar = tqdm(total=cfg.train.max_iterations, initial=self.iteration, desc="GRPO",
                   disable=not (self.env.is_main and cfg.logging.progress_bar), dynamic_ncols=True)
        loop_started = time.perf_counter()
        while self.iteration < cfg.train.max_iterations:
            start = time.perf_counter()
            metrics = self.train_iteration()
            metrics["sec_per_iteration"] = time.perf_counter() - start
            history.append(metrics)
            if self.iteration % cfg.logging.log_every == 0:
                self.metrics.log(self.iteration, metrics)
            self.iteration += 1
            bar.update(1)
            loss = metrics.get("loss", math.nan)
            bar.set_postfix(reward=f"{metrics['reward_mean']:.4f}",
                            loss=f"{loss:.2e}" if math.isfinite(loss) else "none (no group trained)")
            self._periodic()
            if self._out_of_time(loop_started):
                logger.info("train.max_minutes=%g reached after iteration %d: stopping",
                            cfg.train.max_minutes, self.iteration)
                if not self._checkpoint_due():  # else _periodic has just saved it
                    self.save_checkpoint()
                break
        bar.close()
        if cfg.checkpoint.export_at_end:
            from fastvideo.export import export_trained

            export_trained(self, self.run_dir / "export")
        self.metrics.close()
        return history

    def _out_of_time(self, loop_started: float) -> bool:
        """True on every rank once any rank's loop has run ``train.max_minutes`` (0: never)."""
        budget = self.cfg.train.max_minutes
        if budget <= 0:
            return False
        return all_reduce_mean(float(time.perf_counter() - loop_started >= 60.0 * budget)) > 0

    def _checkpoint_due(self) -> bool:
        """Every checkpoint.every iterations, and after the last one."""
        every, it = self.cfg.checkpoint.every, self.iteration
        return bool(every and it % every == 0) or it == self.cfg.train.max_iterations

    def _periodic(self) -> None:
        cfg, it = self.cfg, self.iteration
        if self._checkpoint_due():
            self.save_checkpoint()
        if cfg.logging.validation_every and (it % cfg.logging.validation_every == 0):
            self.validate()

    @torch.no_grad()
    def validate(self, texts: list[str] | None = None, seed: int = 1234) -> Path | None:
        """ODE samples of the validation prompts with fixed seeds, saved as an image grid."""
        texts = texts or list(self.cfg.data.validation_prompts) or self.data.prompts[:4]
        ids = make_sample_ids(range(len(texts)), 1)
        init = initial_noise(self.adapter.latent_shape(), ids, seed=seed, iteration=0, same_in_group=True,
                             device=self.env.device)
        images = generate(self.adapter, self.data.conditioning_for_texts(texts), init, self.eval_sampler, ids=ids,
                          seed=seed, mixed_precision=self.cfg.train.mixed_precision,
                          batch_size=self.cfg.train.rollout_batch_size)
        if not self.env.is_main:
            return None
        path = save_grid(images, 1, self.run_dir / "samples" / f"iter-{self.iteration:06d}.png")
        if images.ndim == 5:  # videos: also an animation, all validation prompts side by side
            save_videos(images, path.with_suffix(".gif"))
        self.metrics.log_image(self.iteration, "validation", path)
        return path


def _build_adapter(cfg: Config, env: DistEnv):
    from fastvideo.models import build_adapter

    return build_adapter(cfg.model, env.device)


def _build_rewards(cfg: Config, env: DistEnv):
    from fastvideo.rewards import RewardSet

    device = env.device if cfg.rewards.device == "auto" else torch.device(cfg.rewards.device)
    return RewardSet.from_config(cfg.rewards, device=device)
