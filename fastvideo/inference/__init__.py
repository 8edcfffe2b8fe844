"""Inference with trained checkpoints: load, sample, visualise, evaluate, best-of-N scaling.

- ``load_policy(model_cfg, checkpoint, device, which="policy"|"ema")`` -> adapter: the base pipeline
  (``model_cfg.path`` or tiny) with a run / export / DCP checkpoint applied (``checkpoints.py``);
  ``apply_checkpoint(adapter, checkpoint, which)`` swaps the denoiser of an adapter already built.
- ``sample(adapter, prompts, seeds, *, num_steps, shift, height, batch_size, sampler="ode")`` ->
  images (B, 3, H, W) (videos (B, T, 3, H, W)): batched deterministic sampling, the same seed giving the
  same image in any batch.
- Command lines: ``python -m fastvideo.inference.visualize`` (side-by-side grid; MP4/GIF for videos, ``video.py``),
  ``python -m fastvideo.inference.evaluate`` (rewards, CI, per-skill accuracy, resumable),
  ``python -m fastvideo.inference.best_of_n`` (inference scaling curve). See ``README.md`` here.
"""

from fastvideo.inference.checkpoints import CheckpointSpec, apply_checkpoint, load_policy, resolve_checkpoint
from fastvideo.inference.sampling import SAMPLERS, PromptEncodings, build_inference_sampler, sample
from fastvideo.inference.stats import best_of_n_curve, expected_best_of_n, summarize

__all__ = [
    "SAMPLERS",
    "CheckpointSpec",
    "PromptEncodings",
    "apply_checkpoint",
    "best_of_n_curve",
    "build_inference_sampler",
    "expected_best_of_n",
    "load_policy",
    "resolve_checkpoint",
    "sample",
    "summarize",
]
