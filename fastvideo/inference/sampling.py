"""Batched sampling of an adapter with per-sample seeds (the GRPO rollout machinery, deterministic steps).

Sample ``k`` starts from ``randn(latent_shape, generator=torch.Generator().manual_seed(seeds[k]))``
drawn on the CPU (``fastvideo.grpo.rollout.seeded_normal``), so a seed gives the same image whatever the
batch it is sampled in, the batch size or the rank. Samplers:

- ``ode`` (default): Euler steps of the probability-flow ODE (flow models) / DDIM with eta = 0
  (diffusion models) — what the trainer's validation and the shapes evaluation use;
- ``dpm2``: 2nd-order DPM-Solver++(2M) (flow models only);
- ``sde``: the training SDE (``sde_type``, ``eta``); its noise is also a function of the seed only.

Prompts are encoded once with the adapter's own text encoders (``PromptEncodings``); the conditioning
of a sample is looked up by its text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from fastvideo.distributed import autocast
from fastvideo.grpo.rollout import SampleIds, rollout, seeded_normal
from fastvideo.grpo.sampler import sampler_for
from fastvideo.models.base import Cond, ModelAdapter, cat_cond, cond_to, select_cond

SAMPLERS = ("ode", "dpm2", "sde")


class PromptEncodings:
    """Conditioning of a set of texts, encoded once in batches, looked up by text."""

    def __init__(self, adapter: ModelAdapter, texts: Sequence[str], batch_size: int = 16):
        self.texts = list(dict.fromkeys(texts))
        self.index = {text: row for row, text in enumerate(self.texts)}
        chunks = [adapter.encode_prompts(self.texts[start:start + batch_size])
                  for start in range(0, len(self.texts), batch_size)]
        self.cond: Cond = cond_to(cat_cond(chunks), adapter.device) if chunks else {}

    def select(self, texts: Sequence[str]) -> Cond:
        """Rows of ``texts`` (each must have been encoded)."""
        missing = [t for t in texts if t not in self.index]
        if missing:
            raise KeyError(f"prompts not encoded: {missing[:3]}")
        return select_cond(self.cond, [self.index[t] for t in texts])


def build_inference_sampler(adapter: ModelAdapter, num_steps: int, shift: float = 3.0, *,
                            sde_type: str = "dance", eta: float = 0.3):
    """The adapter's paradigm's sampler (``fastvideo.grpo.sampler.sampler_for``) over ``num_steps`` steps."""
    return sampler_for(adapter, num_steps, shift=shift, sde_type=sde_type, eta=eta)


def step_plan(mode: str, sampler) -> tuple[set[int] | None, set[int] | None]:
    """(stochastic_steps, dpm_steps) of the rollout for a sampling mode (``SAMPLERS``)."""
    if mode not in SAMPLERS:
        raise ValueError(f"unknown sampler {mode!r}; expected one of {SAMPLERS}")
    if mode == "sde":
        return None, None
    if mode == "dpm2":
        if not hasattr(sampler, "dpm2_step"):
            raise ValueError("sampler 'dpm2' is for flow models; use 'ode' (DDIM eta = 0) for diffusion models")
        return set(), set(range(sampler.num_steps - 1))
    return set(), None


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the block (a trainer's policy is in train mode), restoring the flag after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@torch.no_grad()
def generate(adapter, cond: Cond, init: Tensor, sampler, *, mode: str = "ode", ids: SampleIds | None = None,
             seed: int = 0, mixed_precision: str = "auto", batch_size: int = 0) -> Tensor:
    """The one sampling loop: decoded samples of the initial latents ``init`` (B, *latent), row k
    conditioned on row k of ``cond``; (B, 3, H, W) (videos (B, T, 3, H, W)) in [0, 1], fp32, CPU.

    ``mode``: 'ode' (Euler / DDIM eta = 0), 'dpm2' (2nd-order DPM-Solver++, flow samplers) or 'sde'
    (the training SDE, its noise drawn from ``seed`` and ``ids``: sample k's prompt/sample index;
    default row k). ``batch_size`` samples per model call and per decode (0 = all at once). Used by the
    trainer's validation, ``sample``, the shapes lab's evaluation and the I2V first frames.
    """
    count = init.shape[0]
    ids = ids if ids is not None else SampleIds(torch.arange(count), torch.zeros(count, dtype=torch.long),
                                                torch.arange(count))
    stochastic, dpm = step_plan(mode, sampler)

    def predict(x: Tensor, t: Tensor, rows: Tensor) -> Tensor:
        with autocast(x.device, mixed_precision):
            return adapter.predict(x, t.to(x.device), select_cond(cond, rows))

    result = rollout(predict, sampler, init, ids, torch.zeros(count, 0, dtype=torch.long), seed=seed,
                     iteration=0, batch_size=batch_size, stochastic_steps=stochastic, dpm_steps=dpm)
    chunks = result.final_latents.split(batch_size if batch_size > 0 else max(count, 1))
    return torch.cat([adapter.decode(chunk).float().clamp(0, 1).cpu() for chunk in chunks])


@torch.no_grad()
def sample(adapter: ModelAdapter, prompts: Sequence[str], seeds: Sequence[int], *, num_steps: int,
           shift: float = 3.0, height: int | None = None, width: int | None = None, batch_size: int = 8,
           sampler: str = "ode", sde_type: str = "dance", eta: float = 0.3, guidance_scale: float | None = None,
           encodings: PromptEncodings | None = None, mixed_precision: str = "auto",
           on_batch: Callable[[int], None] | None = None) -> Tensor:
    """Images (B, 3, H, W) in [0, 1], fp32, on the CPU: sample k of ``prompts[k]`` from ``seeds[k]``.

    Video adapters (``model_cfg.num_frames`` > 1) return videos (B, T, 3, H, W), as their ``decode``.

    ``batch_size`` samples per model call (0 = all at once); ``encodings`` reuses prompts encoded
    before (else the prompts are encoded here); ``on_batch(n)`` is called after each batch of n samples.
    """
    prompts, seeds = list(prompts), [int(s) for s in seeds]
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if not prompts:
        return torch.zeros(0, 3, height or adapter.model_cfg.height, width or adapter.model_cfg.width)
    encodings = encodings if encodings is not None else PromptEncodings(adapter, prompts)
    view = adapter.variant(height=height, width=width, guidance_scale=guidance_scale)
    solver = build_inference_sampler(view, num_steps, shift, sde_type=sde_type, eta=eta)
    step = batch_size if batch_size > 0 else len(prompts)
    images = []
    with eval_mode(view.transformer):
        shape = view.latent_shape()
        for start in range(0, len(prompts), step):
            chunk_prompts, chunk_seeds = prompts[start:start + step], seeds[start:start + step]
            count = len(chunk_seeds)
            ids = SampleIds(torch.tensor(chunk_seeds, dtype=torch.long), torch.zeros(count, dtype=torch.long),
                            torch.arange(count))
            init = seeded_normal(shape, chunk_seeds, view.device)
            images.append(generate(view, encodings.select(chunk_prompts), init, solver, mode=sampler, ids=ids,
                                   mixed_precision=mixed_precision))
            if on_batch is not None:
                on_batch(count)
    return torch.cat(images)
