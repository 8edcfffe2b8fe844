"""Reward throughput: batched in-memory scoring vs the reference's one-image-at-a-time PNG round trip.

The reference scripts write every generated image to disk as PNG, read it back and score it alone.
We score the whole group in memory, in batches. Model rewards are built at tiny size from random
weights (fastvideo.rewards.tiny), so the numbers measure the pipeline overhead, not a ViT-H.

    python benchmarks/bench_rewards.py [--num-images 32] [--size 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from fastvideo.rewards import Reward, build_reward, tiny  # noqa: E402
from fastvideo.rewards.rule_based import to_uint8_hwc  # noqa: E402

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a red circle", "a blue triangle"]
TINY_BUILDERS = {
    "hps": tiny.write_tiny_hps,
    "pickscore": tiny.write_tiny_clip,
    "clip_score": tiny.write_tiny_clip,
    "image_reward": tiny.write_tiny_image_reward,
}


def build(name: str, workdir: Path, device: str, batch_size: int) -> Reward:
    kwargs = TINY_BUILDERS[name](workdir / name) if name in TINY_BUILDERS else {}
    kwargs.update(device=device, batch_size=batch_size)
    return build_reward(name, **kwargs)


def score_batched(reward: Reward, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    return reward(images, prompts)


def score_via_png_one_by_one(reward: Reward, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """The reference way: save each image as PNG, read it back, score it alone."""
    scores = []
    with tempfile.TemporaryDirectory() as directory:
        for index, (image, prompt) in enumerate(zip(images, prompts)):
            path = Path(directory) / f"{index}.png"
            Image.fromarray(to_uint8_hwc(image)).save(path)
            array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
            reloaded = torch.from_numpy(array).permute(2, 0, 1)[None]
            scores.append(reward(reloaded, [prompt]))
    return torch.cat(scores)


def images_per_second(
    fn: Callable, reward: Reward, images: torch.Tensor, prompts: list[str], repeats: int
) -> float:
    fn(reward, images[:2], prompts[:2])  # warm-up
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(reward, images, prompts)
        durations.append(time.perf_counter() - start)
    return images.shape[0] / statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-images", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rewards",
        nargs="+",
        default=[
            "brightness",
            "jpeg_compressibility",
            "shapes_verifier",
            "hps",
            "pickscore",
            "clip_score",
            "image_reward",
        ],
    )
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.num_images, 3, args.size, args.size, generator=generator)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.num_images)]
    print(
        f"{args.num_images} images {args.size}x{args.size}, device {args.device}, "
        f"torch threads {torch.get_num_threads()}; model rewards at tiny size (random weights)"
    )
    print(f"{'reward':<24}{'batched img/s':>15}{'PNG 1-by-1 img/s':>18}{'speed-up':>10}{'max |diff|':>12}")
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.rewards:
            reward = build(name, Path(workdir), args.device, batch_size=args.num_images)
            batched = images_per_second(score_batched, reward, images, prompts, args.repeats)
            reference = images_per_second(score_via_png_one_by_one, reward, images, prompts, args.repeats)
            difference = (
                (score_batched(reward, images, prompts) - score_via_png_one_by_one(reward, images, prompts))
                .abs()
                .max()
                .item()
            )
            print(
                f"{name:<24}{batched:>15.1f}{reference:>18.1f}{batched / reference:>9.1f}x{difference:>12.2e}"
            )


if __name__ == "__main__":
    main()
