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
from fastvideo.grpo.sampler import DDIMSampler, FlowSampler
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
    """FlowSampler (flow adapters) or DDIMSampler (diffusion adapters) over ``num_steps`` steps."""
    if adapter.paradigm == "flow":
        return FlowSampler.build(num_steps, shift, sde_type, eta)
    if adapter.paradigm == "diffusion":
        return DDIMSampler.build(adapter.alphas_cumprod, num_steps, eta,
                                 final_alpha_cumprod=adapter.final_alpha_cumprod)
    raise ValueError(f"unknown paradigm {adapter.paradigm!r} of adapter {type(adapter).__name__}")


def _step_plan(sampler: str, num_steps: int, paradigm: str) -> tuple[set[int] | None, set[int] | None]:
    """(stochastic_steps, dpm_steps) of the rollout for a sampler name."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
    if sampler == "sde":
        return None, None
    if sampler == "dpm2":
        if paradigm != "flow":
            raise ValueError("sampler 'dpm2' is for flow models; use 'ode' (DDIM eta = 0) for diffusion models")
        return set(), set(range(num_steps - 1))
    return set(), None


@contextmanager
def model_overrides(adapter: ModelAdapter, **values) -> Iterator[None]:
    """Temporarily set fields of ``adapter.model_cfg`` (height, width, guidance_scale); None = unchanged."""
    cfg = adapter.model_cfg
    saved = {key: getattr(cfg, key) for key, value in values.items() if value is not None}
    try:
        for key in saved:
            setattr(cfg, key, values[key])
        yield
    finally:
        for key, value in saved.items():
            setattr(cfg, key, value)


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
    solver = build_inference_sampler(adapter, num_steps, shift, sde_type=sde_type, eta=eta)
    stochastic, dpm = _step_plan(sampler, num_steps, adapter.paradigm)
    step = batch_size if batch_size > 0 else len(prompts)
    images = []
    with model_overrides(adapter, height=height, width=width, guidance_scale=guidance_scale), \
            eval_mode(adapter.transformer):
        shape = adapter.latent_shape()
        for start in range(0, len(prompts), step):
            chunk_prompts, chunk_seeds = prompts[start:start + step], seeds[start:start + step]
            cond = encodings.select(chunk_prompts)

            def predict(x: Tensor, t: Tensor, rows: Tensor, cond: Cond = cond) -> Tensor:
                with autocast(adapter.device, mixed_precision):
                    return adapter.predict(x, t.to(x.device), select_cond(cond, rows))

            count = len(chunk_seeds)
            ids = SampleIds(torch.tensor(chunk_seeds, dtype=torch.long), torch.zeros(count, dtype=torch.long),
                            torch.arange(count))
            init = seeded_normal(shape, chunk_seeds, adapter.device)
            result = rollout(predict, solver, init, ids, torch.zeros(count, 0, dtype=torch.long), seed=0,
                             iteration=0, stochastic_steps=stochastic, dpm_steps=dpm)
            images.append(adapter.decode(result.final_latents).float().clamp(0, 1).cpu())
            if on_batch is not None:
                on_batch(count)
    return torch.cat(images)
