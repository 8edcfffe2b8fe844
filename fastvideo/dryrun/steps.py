"""The pieces of one dry-run iteration (``fastvideo.dryrun.run``): each phase on fake tensors, measured.

Everything here runs inside ``fake_tensors()``: the model calls are the adapter's own (``encode_prompts``,
``predict``, ``decode``), the policy is prepared by the trainer's ``prepare_policy``, the sampler is the
trainer's ``build_sampler``, and the losses are the objectives' own functions, so a shape mismatch at real
dimensions fails here as it would in the first iteration on a GPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from fastvideo.distributed import DistEnv, autocast
from fastvideo.dryrun.fake import local_bytes, real_tensors
from fastvideo.dryrun.rewards import build_reward_models
from fastvideo.grpo.forward import OBJECTIVE_SPECS
from fastvideo.grpo.loss import gaussian_kl, grpo_loss
from fastvideo.grpo.plan import iteration_plan
from fastvideo.grpo.rollout import make_sample_ids, train_step_subsets
from fastvideo.models.base import repeat_cond, select_cond
from fastvideo.training.forward_update import LOSSES, ForwardSettings, _Items
from fastvideo.training.metrics import iteration_call_counts
from fastvideo.training.optim import EMA, build_optimizer
from fastvideo.training.policy import prepare_policy
from fastvideo.training.trainer import build_sampler, build_window


def _data_dependent_errors() -> tuple[type[Exception], ...]:
    from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    return DataDependentOutputException, DynamicOutputShapeException, GuardOnDataDependentSymNode


DATA_DEPENDENT = _data_dependent_errors()
"""What fake tensors raise where a result depends on tensor values (a prompt length read from a mask)."""


def _words(index: int) -> str:
    return " ".join(f"word{index}" for _ in range(12))


class IterationPieces:
    """Builds the run's state once, then measures each phase with ``tracked`` (``run._tracked``)."""

    def __init__(self, cfg: Any, adapter: Any, env: DistEnv, mesh: Any, tracked):
        self.cfg, self.adapter, self.env, self._tracked_fn = cfg, adapter, env, tracked
        self.objective = OBJECTIVE_SPECS[cfg.grpo.objective]
        self.group, self.prompts = cfg.grpo.group_size, cfg.train.prompts_per_iteration
        self.samples = self.group * self.prompts
        self.rollout_batch = min(cfg.train.rollout_batch_size or self.samples, self.samples)
        self.online = cfg.data.embeddings_dir is None
        self.shapes: dict[str, tuple[int, ...]] = {}
        if hasattr(adapter, "first_frame_source") and adapter.first_frame_source is None \
                and not cfg.model.first_frame_file:  # image-to-video: random first frames of the right size
            adapter.first_frame_source = lambda texts: torch.rand(len(texts), 3, cfg.model.height, cfg.model.width)
        s = cfg.sampler
        with real_tensors():  # the schedule tables are real numbers
            self.sampler = build_sampler(cfg, adapter)
            self.step_plan = iteration_plan(self.sampler, build_window(cfg), 0, timestep_fraction=cfg.grpo.timestep_fraction,
                                            ode_solver=s.ode_solver, flash_ratio=s.flash_ratio)
        policy = prepare_policy(cfg, adapter, env, self.objective.old_policy, mesh)
        self.model, self.reference, self.old_policy = policy.model, policy.reference, policy.old_policy
        self.fsdp = env.distributed and cfg.train.fsdp
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.ema = EMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.rewards = build_reward_models(cfg.rewards)
        self.cond: dict[str, torch.Tensor] = {}
        self.probed = ""
        """Why the prompts were encoded by a probe (``_probe_encode``), if they were."""
        self.images: torch.Tensor | None = None

    # resident state ---------------------------------------------------------------------------
    def _frozen(self) -> dict[str, torch.nn.Module]:
        """Frozen components held during training (the text encoders only when encoding online)."""
        names = ["vae"] + ([n for n in self.adapter.text_component_names if "encoder" in n] if self.online else [])
        frozen = {n: self.adapter.component(n) for n in names}
        frozen.update({f"reward:{r.name}": r.module for r in self.rewards if r.module is not None})
        return frozen

    def _copies(self) -> dict[str, list[torch.Tensor]]:
        copies = {}
        if self.ema is not None:
            copies["EMA"] = list(self.ema.shadow.values())
        if self.reference is not None:
            copies["reference (KL)"] = [*self.reference.parameters(), *self.reference.buffers()]
        if self.old_policy is not None:
            copies["old policy (NFT)"] = [*self.old_policy.module.parameters(), *self.old_policy.module.buffers()]
        return copies

    def tracked(self, optimizer: bool = False, runs_model: bool = False):
        """The phase's memory tracker of the trained model: FSDP-aware when the phase runs the sharded model
        (``FSDPMemTracker`` miscounts phases that do not), else ``MemTracker``."""
        resident = (*self._frozen().values(), *(t for ts in self._copies().values() for t in ts))
        return self._tracked_fn(self.model, self.optimizer if optimizer else None, fsdp=self.fsdp and runs_model,
                                resident=resident)

    def add_resident(self, phases: list) -> None:
        """Add what every phase holds but its tracker does not see: frozen models, copies, optimizer state."""
        frozen = sum(local_bytes(module) for module in self._frozen().values())
        copies = sum(local_bytes(tensors) for tensors in self._copies().values())
        optimizer = self.state_bytes()["optimizer state (AdamW)"]
        for phase in phases:
            if not phase.sees_resident:
                phase.by_hand["frozen models (resident)"] = frozen
                if copies:
                    phase.by_hand["EMA / reference / old-policy copies"] = copies
            if "opt" not in phase.categories:
                phase.by_hand["optimizer state (steady state)"] = optimizer

    def _predict(self, module, x: torch.Tensor, t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        adapter = self.adapter.variant(transformer=module, guidance_scale=self.cfg.sampler.rollout_guidance_scale)
        with autocast(torch.device("cpu"), self.cfg.train.mixed_precision):  # CPU autocast stands in for CUDA's
            return adapter.predict(x, t, select_cond(self.per_sample_cond, rows)).float()

    # phases -----------------------------------------------------------------------------------
    def encode_phase(self):
        from fastvideo.dryrun.run import Phase

        texts = [_words(i) for i in range(self.prompts)]
        by_hand = {}
        try:
            with self.tracked() as result, torch.no_grad():
                self.cond = self.adapter.encode_prompts(texts)
        except DATA_DEPENDENT as error:  # the pipeline indexes by prompt lengths: encode with a probe
            self.cond = self._probe_encode(texts)
            by_hand = {"text encoder activations (not measured: data-dependent encoding)": 0}
            self.probed = type(error).__name__
        self.per_sample_cond = repeat_cond(self.cond, self.group)
        self.shapes.update({f"cond.{k}": tuple(v.shape) for k, v in self.cond.items()})
        if not self.online:  # the trainer reads the cache and never loads the text encoders
            self.adapter.free_text_encoders()
            return None
        if by_hand:
            return Phase("encode", 0, {}, by_hand, sees_resident=False)
        return Phase("encode", result["peak"], result["categories"], seconds=result["seconds"],
                     sees_resident=result["sees_resident"])

    def _probe_encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Encode on real tensors with 1-layer text encoders of the real widths (``build_probe_component``),
        then stand fake tensors of the same shapes in; the empty prompt (CFG) through ``load_cache_extras``."""
        from fastvideo.dryrun.fake import build_probe_component
        from fastvideo.models import build_adapter
        from fastvideo.models.sources import component_builder

        with real_tensors(), component_builder(build_probe_component), torch.no_grad():
            probe = build_adapter(self.cfg.model, "cpu")
            cond = probe.encode_prompts(texts)
            extras = probe.cache_extras()
        like = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in cond.items()}
        if extras:
            self.adapter.load_cache_extras({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in extras.items()})
        return like

    def rollout_phase(self):
        from fastvideo.dryrun.run import Phase

        shape = tuple(self.adapter.latent_shape())
        self.shapes["latents (per sample)"] = shape
        rows = torch.arange(self.rollout_batch)
        with self.tracked(runs_model=True) as result, torch.no_grad():
            x = torch.randn(self.rollout_batch, *shape)
            out = self._predict(self.model, x, self.sampler.model_timestep(0, len(x)), rows)
            self.sampler.step(0, out, x)
        trained = self._trained_steps()
        stored = self.samples * (2 * trained + 1) * math.prod(shape) * 4  # x, x_next per trained step + final
        by_hand = {"rollout trajectory (fp32, estimated)": stored}
        return Phase("rollout", result["peak"], result["categories"], by_hand, result["seconds"],
                     result["sees_resident"])

    def decode_phase(self):
        from fastvideo.dryrun.run import Phase

        with self.tracked() as result:
            self.images = self.adapter.decode(torch.randn(self.rollout_batch, *self.adapter.latent_shape()))
        self.shapes["decoded (per chunk)"] = tuple(self.images.shape)
        return Phase("decode", result["peak"], result["categories"], seconds=result["seconds"],
                     sees_resident=result["sees_resident"])

    def reward_phase(self):
        from fastvideo.dryrun.run import Phase

        if not any(r.module is not None for r in self.rewards):
            return None
        with self.tracked() as result, torch.no_grad():
            for reward in self.rewards:
                reward.score(self.images)
        return Phase("reward", result["peak"], result["categories"], seconds=result["seconds"],
                     sees_resident=result["sees_resident"])

    def train_phase(self):
        """Forward + backward of one micro-batch, then (separately tracked) clipping and the optimizer step.

        Clipping runs between the two trackers: ``MemTracker`` counts the outputs of in-place ops on
        DTensors at their global size (a phantom copy of every gradient), while ``clip_grad_norm_``
        only allocates per-tensor norms (one all-reduce, no all-gather)."""
        from fastvideo.dryrun.run import Phase

        with self.tracked(optimizer=True, runs_model=True) as backward:
            self._micro_batch_loss().backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(params, self.cfg.train.max_grad_norm)
        with self.tracked(optimizer=True, runs_model=True) as step:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.optimizer.zero_grad(set_to_none=True)
        return [Phase("train: forward + backward", backward["peak"], backward["categories"],
                      seconds=backward["seconds"], sees_resident=backward["sees_resident"]),
                Phase("train: optimizer step", step["peak"], step["categories"], seconds=step["seconds"],
                      sees_resident=step["sees_resident"])]

    def _micro_batch_loss(self) -> torch.Tensor:
        """One micro-batch of ``train.train_batch_size`` items through the objective's loss."""
        cfg, bs = self.cfg, self.cfg.train.train_batch_size
        rows = torch.arange(bs) % self.samples
        steps = torch.zeros(bs, dtype=torch.long)
        x = torch.randn(bs, *self.adapter.latent_shape())
        t = self.sampler.model_timestep(steps, bs)
        out = self._predict(self.model, x, t, rows)
        advantages = torch.randn(bs)
        if self.objective.forward_process:
            settings = ForwardSettings(cfg.grpo.objective, 1, bs, 1, cfg.train.max_grad_norm,
                                       adv_clip=cfg.grpo.adv_clip_max, nft_beta=cfg.grpo.nft_beta)
            items = _Items(out, x, torch.randn_like(x), torch.randn_like(x), steps, t, rows, advantages)
            old = self.old_policy.module if self.old_policy is not None else self.model
            return LOSSES[cfg.grpo.objective](items, self.sampler, settings,
                                              lambda xx, tt, rr: self._predict(old, xx, tt, rr))[0]
        res = self.sampler.step(steps, out, x, prev_sample=torch.randn_like(x))
        kl = None
        if cfg.grpo.kl_coef > 0:
            with torch.no_grad():
                ref_out = self._predict(self.reference or self.model, x, t, rows)
            kl = gaussian_kl(res.mean, self.sampler.step(steps, ref_out, x, prev_sample=res.prev_sample).mean,
                             res.std)
        return grpo_loss(res.log_prob, torch.randn(bs), advantages, cfg.grpo.clip_range, kl=kl,
                         kl_coef=cfg.grpo.kl_coef)[0]

    # what the report shows ----------------------------------------------------------------------
    def _trained_steps(self) -> int:
        if self.objective.forward_process:
            return 0
        plan = self.step_plan
        with real_tensors():
            ids = make_sample_ids(list(range(self.prompts)), self.group)
            return int(train_step_subsets(ids, plan.num_steps, plan.train_fraction, seed=0, iteration=0,
                                          candidates=plan.train_candidates).shape[1])

    def components(self) -> list:
        from fastvideo.dryrun.run import Component

        rows = [_component("transformer (trained)", self.model, True)]
        rows += [_component(name, module, True) for name, module in self._frozen().items()]
        if not self.online:
            rows += [Component(f"{n} (not loaded: embedding cache)", 0, 0, "-", 0, False)
                     for n in self.adapter.text_component_names if "encoder" in n]
        return rows

    def state_bytes(self) -> dict[str, int]:
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        state = {"parameters (fp32 master)": local_bytes(self.model),
                 "gradients (fp32)": sum(local_bytes([p]) for p in trainable),
                 "optimizer state (AdamW)": local_bytes([t for s in self.optimizer.state.values()
                                                         for t in s.values() if isinstance(t, torch.Tensor)])}
        state.update({name: local_bytes(tensors) for name, tensors in self._copies().items()})
        return state

    def plan(self) -> dict[str, Any]:
        cfg, k = self.cfg, self._trained_steps()
        calls = iteration_call_counts(cfg, self.objective, self.step_plan.num_steps, self.samples, self.samples, k)
        items = self.samples * (k or (cfg.grpo.forward_timesteps or self.objective.timesteps))
        per_step = math.ceil(items / cfg.train.updates_per_iteration)
        return {"samples per iteration (all GPUs)": self.samples * self.env.world_size,
                "samples per GPU": self.samples, "rollout chunks per GPU": math.ceil(self.samples / self.rollout_batch),
                "denoising steps": self.step_plan.num_steps, "trained steps per sample": k,
                "training items per GPU": items,
                "micro-batches per optimizer step": math.ceil(per_step / cfg.train.train_batch_size),
                "optimizer steps per iteration": cfg.train.updates_per_iteration * cfg.train.passes_per_rollout,
                "transformer blocks": len(self.adapter.transformer_blocks()),
                **{f"model {key}": value for key, value in calls.items()}}

    def settings(self) -> dict[str, Any]:
        m, t = self.cfg.model, self.cfg.train
        return {"model": m.name, "resolution": f"{m.height}x{m.width}" + (f"x{m.num_frames}" if m.num_frames > 1 else ""),
                "lora_rank": m.lora_rank, "gradient_checkpointing": m.gradient_checkpointing,
                "train_batch_size": t.train_batch_size, "rollout_batch_size": self.rollout_batch,
                "frozen dtype": m.dtype, "mixed_precision": t.mixed_precision, "fsdp": self.fsdp,
                "embedding cache": not self.online, "objective": self.cfg.grpo.objective,
                **({"encode": f"1-layer probe ({self.probed})"} if self.probed else {})}


def _component(name: str, module: torch.nn.Module, resident: bool):
    from fastvideo.dryrun.run import Component

    params = list(module.parameters())
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params})
    return Component(name, sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad),
                     "/".join(dtypes) or "-", local_bytes(module), resident)
