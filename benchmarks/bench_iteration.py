"""One GRPO iteration, ours vs the reference way, side by side in one process.

Ours: the whole group rolled out in one batched model call per step, decoded and scored as a batch
in memory, and trained in micro-batches of (sample, step) pairs. Reference way (DanceGRPO's loops):
every sample rolled out alone, decoded alone, written to PNG, read back and scored alone, and one
backward per (sample, timestep). Same tiny model, same seeds, same G = 8, 2 prompts, 10 steps.

    python benchmarks/bench_iteration.py [--models flux sd] [--repeats 3]

Prints per-phase seconds and the speed ratio; "other" is the time outside model forward/backward,
VAE decode and reward (the framework's own overhead).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from fastvideo.config import Config  # noqa: E402
from fastvideo.distributed import DistEnv  # noqa: E402
from fastvideo.rewards import build_reward  # noqa: E402
from fastvideo.training.trainer import GRPOTrainer  # noqa: E402

PROMPTS = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen", "a city street in the rain"]


class Clock:
    """Accumulates seconds spent in model forward, backward, decode and reward."""

    def __init__(self):
        self.seconds = {"forward": 0.0, "backward": 0.0, "decode": 0.0, "reward": 0.0}

    @contextmanager
    def phase(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)
        return timed


class BatchedReward:
    def __init__(self, reward):
        self.reward = reward

    def __call__(self, images, prompts):
        r = self.reward(images, prompts)
        return r, {self.reward.name: r}


class PngOneByOneReward(BatchedReward):
    """The reference way: write each image as PNG, read it back, score it alone."""

    def __init__(self, reward, workdir: Path):
        super().__init__(reward)
        self.workdir = workdir

    def __call__(self, images, prompts):
        scores = []
        for i, (image, prompt) in enumerate(zip(images, prompts)):
            path = self.workdir / f"sample_{i}.png"
            pixels = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(path)
            back = torch.from_numpy(np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB")))
            scores.append(self.reward(back.permute(2, 0, 1)[None].float() / 255, [prompt]))
        r = torch.cat(scores)
        return r, {self.reward.name: r}


def make_config(model: str, workdir: Path, reference: bool) -> Config:
    cfg = Config()
    prompt_file = workdir / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    cfg.output_dir = str(workdir / ("ref" if reference else "ours"))
    cfg.data.prompt_file = str(prompt_file)
    cfg.model.name, cfg.model.tiny = model, True
    cfg.model.height = cfg.model.width = 32  # the debug configs' size
    cfg.model.guidance_scale = 5.0 if model == "sd" else 3.5
    cfg.sampler.num_steps, cfg.sampler.eta = 10, 1.0 if model == "sd" else 0.3
    cfg.grpo.group_size, cfg.train.prompts_per_iteration = 8, 2
    cfg.train.rollout_batch_size = 1 if reference else 0
    cfg.train.train_batch_size = 1 if reference else 16
    cfg.checkpoint.every, cfg.checkpoint.export_at_end, cfg.logging.progress_bar = 0, False, False
    return cfg


def time_iteration(model: str, workdir: Path, reference: bool, repeats: int) -> dict:
    cfg = make_config(model, workdir, reference)
    reward = build_reward("jpeg_compressibility")
    rewards = PngOneByOneReward(reward, workdir) if reference else BatchedReward(reward)
    trainer = GRPOTrainer(cfg, DistEnv(), rewards=rewards)
    clock = Clock()
    trainer.adapter.predict = clock.wrap("forward", trainer.adapter.predict)
    trainer.adapter.decode = clock.wrap("decode", trainer.adapter.decode)
    rewards.__class__.__call__ = _timed_call(clock, rewards.__class__.__call__)
    original_backward = torch.autograd.backward
    torch.autograd.backward = clock.wrap("backward", original_backward)
    try:
        trainer.train_iteration()  # warm-up (lazy loading, allocator)
        totals = []
        for _ in range(repeats):
            clock.seconds = dict.fromkeys(clock.seconds, 0.0)
            start = time.perf_counter()
            trainer.train_iteration()
            totals.append((time.perf_counter() - start, dict(clock.seconds)))
    finally:
        torch.autograd.backward = original_backward
    total, phases = min(totals, key=lambda item: item[0])
    phases["other"] = total - sum(phases.values())
    phases["total"] = total
    return phases


def _timed_call(clock, call):
    if getattr(call, "_timed", False):
        return call

    def timed(self, images, prompts):
        with clock.phase("reward"):
            return call(self, images, prompts)
    timed._timed = True
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["flux", "sd"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    header = f"{'model':<6}{'mode':<11}" + "".join(f"{k:>10}" for k in
                                                   ("forward", "backward", "decode", "reward", "other", "total"))
    print(header)
    for model in args.models:
        results = {}
        for reference in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                results[reference] = time_iteration(model, Path(tmp), reference, args.repeats)
            row = results[reference]
            mode = "reference" if reference else "ours"
            print(f"{model:<6}{mode:<11}" + "".join(f"{row[k]:>10.3f}" for k in
                                                    ("forward", "backward", "decode", "reward", "other", "total")))
        ours, ref = results[False], results[True]
        print(f"{model}: speed-up {ref['total'] / ours['total']:.1f}x, our overhead outside model/VAE/reward "
              f"{100 * ours['other'] / ours['total']:.1f}% of the iteration")


if __name__ == "__main__":
    main()
