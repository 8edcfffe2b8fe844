"""The reward interface, the reward registry and the binary threshold wrapper.

A reward maps generated images (B, 3, H, W) in [0, 1] (or videos (B, T, 3, H, W)) and their
prompts to one float32 score per sample, shape (B,), on the CPU. Scoring is batched (chunks of
``batch_size``), runs under ``torch.no_grad`` and on the reward's own ``device``. An image reward
given a video scores every frame and returns the mean over frames:

    r(video) = (1 / T) * sum_t r(frame_t)

Model-based rewards import their heavy dependencies (open_clip, transformers) inside their
constructor, so ``import fastvideo.rewards`` stays cheap.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastvideo.errors import UserError

INPUT_KINDS = ("image", "video")


class RewardWeightsError(RuntimeError, UserError):
    """A reward's weight file is missing or is not what the reward expects."""


class RewardWeightsNotFoundError(RewardWeightsError, FileNotFoundError):
    """A reward's weight file or directory does not exist (the message says how to download it)."""


def require_path(path: str | Path, what: str, download_command: str) -> Path:
    """Return ``path`` if it exists, else raise ``RewardWeightsNotFoundError`` with the download command."""
    path = Path(path)
    if not path.exists():
        raise RewardWeightsNotFoundError(
            f"{what} not found at '{path}'. Download it with:\n    {download_command}\n"
            "or pass the path as a reward kwarg."
        )
    return path


def load_checkpoint(path: str | Path, what: str, download_command: str) -> dict[str, Any]:
    """Load a checkpoint safely: safetensors by suffix, else ``torch.load(weights_only=True)``.

    A missing file raises ``RewardWeightsNotFoundError``; an unreadable one ``RewardWeightsError``;
    both messages carry the download command.
    """
    path = require_path(path, what, download_command)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any reader failure means a wrong file
        raise RewardWeightsError(
            f"could not read {what} at '{path}' ({type(error).__name__}: {error}). "
            f"Is it the right file? Download it with:\n    {download_command}"
        ) from error


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None or "auto" -> cuda if available else cpu; anything else -> torch.device(device)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """ "float32" / "bfloat16" / "float16" (or a torch.dtype) -> torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return resolved


def _check_inputs(images: Tensor, prompts: list[str], input_kind: str) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    expected = (4, 5) if input_kind == "image" else (5,)
    if images.ndim not in expected or images.shape[-3] != 3:
        layout = "(B, 3, H, W) or (B, T, 3, H, W)" if input_kind == "image" else "(B, T, 3, H, W)"
        raise ValueError(f"expected {input_kind} input of shape {layout}, got {tuple(images.shape)}")
    if len(prompts) != images.shape[0]:
        raise ValueError(f"{len(prompts)} prompts for {images.shape[0]} samples")


class Reward(abc.ABC):
    """Base class of every reward. Subclasses implement ``score_batch`` on one chunk.

    ``__call__(images, prompts)`` validates the input, splits it into chunks of ``batch_size``,
    moves each chunk to ``self.device``, scores it and returns a float32 (B,) CPU tensor.
    """

    name: str = "reward"
    input_kind: str = "image"
    differentiable: bool = False

    def __init__(self, device: str | torch.device | None = None, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = batch_size

    @abc.abstractmethod
    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        """Score one chunk already on ``self.device``: images (b, 3, H, W) or (b, T, 3, H, W) -> (b,)."""

    is_verifier: bool = False
    """A verifier knows, per sample, whether every claim of its prompt holds (``correct_batch``)."""

    @classmethod
    def prompt_category(cls, text: str) -> str | None:
        """The category of a prompt in per-category reports (a verifier's skill); None: none."""
        return None

    def correct_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        """(B,) 0/1: every claim of the prompt holds (verifiers only, ``is_verifier``)."""
        raise NotImplementedError(f"{type(self).__name__} is not a verifier")

    def __call__(self, images: Tensor, prompts: list[str]) -> Tensor:
        prompts = list(prompts)
        _check_inputs(images, prompts, self.input_kind)
        with torch.no_grad():
            if images.ndim == 5 and self.input_kind == "image":
                num_videos, num_frames = images.shape[:2]
                frame_prompts = [prompt for prompt in prompts for _ in range(num_frames)]
                frame_scores = self._score_in_chunks(images.flatten(0, 1), frame_prompts)
                return frame_scores.view(num_videos, num_frames).mean(dim=1)
            return self._score_in_chunks(images, prompts)

    def _score_in_chunks(self, images: Tensor, prompts: list[str]) -> Tensor:
        scores = []
        for start in range(0, images.shape[0], self.batch_size):
            chunk = images[start : start + self.batch_size].to(self.device, torch.float32)
            chunk_scores = self.score_batch(chunk, prompts[start : start + self.batch_size])
            scores.append(chunk_scores.detach().float().reshape(-1).cpu())
        return torch.cat(scores) if scores else torch.zeros(0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device})"


class ThresholdReward(Reward):
    """Binary reward: r = 1 if inner(x, c) > threshold else 0 (DanceGRPO's binary HPS > 0.28)."""

    differentiable = False

    def __init__(self, inner: Reward, threshold: float) -> None:
        self.inner = inner
        self.threshold = float(threshold)
        self.name = f"{inner.name}>{self.threshold:g}"
        self.input_kind = inner.input_kind
        self.device = inner.device
        self.batch_size = inner.batch_size

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        return (self.inner.score_batch(images, prompts) > self.threshold).float()

    def __call__(self, images: Tensor, prompts: list[str]) -> Tensor:
        return (self.inner(images, prompts) > self.threshold).float()


_REGISTRY: dict[str, type[Reward]] = {}


def register_reward(name: str) -> Callable[[type[Reward]], type[Reward]]:
    """Class decorator: register a ``Reward`` subclass under ``name`` (also sets ``cls.name``)."""

    def decorator(cls: type[Reward]) -> type[Reward]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"reward name {name!r} is already registered by {_REGISTRY[name].__name__}")
        if getattr(cls, "input_kind", None) not in INPUT_KINDS:
            raise ValueError(f"{cls.__name__}.input_kind must be one of {INPUT_KINDS}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_rewards() -> list[str]:
    """The registered reward names (plugins included), sorted."""
    from fastvideo.plugins import load_plugins

    load_plugins()
    return sorted(_REGISTRY)


def build_reward(name: str, **kwargs: Any) -> Reward:
    """Instantiate the reward registered as ``name`` with ``kwargs``."""
    return reward_class(name)(**kwargs)


def reward_class(name: str) -> type[Reward]:
    """The class registered as ``name``, importing the plugins (``fastvideo.plugins``) on a miss."""
    if name not in _REGISTRY:
        available = available_rewards()  # loads the plugins
        if name not in _REGISTRY:
            raise ValueError(f"unknown reward {name!r}; available rewards: {', '.join(available)}")
    return _REGISTRY[name]
