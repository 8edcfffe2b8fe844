"""CLIP-family rewards on transformers' ``CLIPModel``: PickScore and CLIP score.

Both embed the image and the prompt, normalise, and take the cosine

    cos(x, c) = < f_img(x) / |f_img(x)| , f_txt(c) / |f_txt(c)| >.

PickScore (Kirstain et al.): the CLIP-H processor (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``) and
the ``yuvalkirstain/PickScore_v1`` model. Published convention ``"logit"``: exp(logit_scale) * cos
(about 18 - 24); ``"cosine"`` returns the raw cosine, what DanceGRPO trained on.

CLIP score: convention ``"cosine"`` (default) or ``"torchmetrics"``: 100 * max(cos, 0).

Image preprocessing uses the processor's own config values (shortest-edge size, crop size,
mean/std) but runs batched on tensors (see ``preprocess.py``). Text: padding to the longest prompt,
truncation at 77 tokens, as the published PickScore snippet does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from fastvideo.rewards.base import Reward, RewardWeightsError, register_reward, require_path, resolve_dtype
from fastvideo.rewards.preprocess import preprocess_images

PICKSCORE_PROCESSOR = "data/CLIP-ViT-H-14-laion2B-s32B-b79K"
PICKSCORE_MODEL = "data/PickScore_v1"
PICKSCORE_PROCESSOR_DOWNLOAD = (
    'hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K --include "*.json" "*.txt" '
    "--local-dir data/CLIP-ViT-H-14-laion2B-s32B-b79K"
)
PICKSCORE_MODEL_DOWNLOAD = "hf download yuvalkirstain/PickScore_v1 --local-dir data/PickScore_v1"
CLIP_MODEL = "data/clip-vit-large-patch14"
CLIP_DOWNLOAD = "hf download openai/clip-vit-large-patch14 --local-dir data/clip-vit-large-patch14"


def _features(output: object) -> Tensor:
    """transformers < 5 returns the projected features; 5.x a ModelOutput with ``pooler_output``."""
    return output if isinstance(output, Tensor) else output.pooler_output


def _size_from(value: object, default: int) -> int:
    """An image-processor size (int, dict or transformers 5 SizeDict) -> shortest edge / height."""
    if isinstance(value, (int, float)):
        return int(value)
    get = value.get if isinstance(value, dict) else (lambda name: getattr(value, name, None))
    return int(get("shortest_edge") or get("height") or default)


def _require_file(directory: str | Path, filename: str, what: str, download: str) -> Path:
    directory = require_path(directory, what, download)
    if not (Path(directory) / filename).exists():
        raise RewardWeightsError(
            f"'{directory}' has no {filename}; not a {what}. Download it with:\n    {download}"
        )
    return Path(directory)


class HFClipScorer:
    """A transformers CLIPModel + tokenizer + image-processor settings from local directories."""

    def __init__(
        self,
        model_dir: str | Path,
        processor_dir: str | Path,
        downloads: tuple[str, str],
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        model_download, processor_download = downloads
        model_dir = _require_file(model_dir, "config.json", "CLIP model directory", model_download)
        processor_dir = _require_file(
            processor_dir, "preprocessor_config.json", "CLIP processor directory", processor_download
        )
        self.model = CLIPModel.from_pretrained(model_dir, local_files_only=True).eval().to(device, dtype)
        self.model.requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(processor_dir, local_files_only=True)
        image_processor = CLIPImageProcessor.from_pretrained(processor_dir, local_files_only=True)
        self.size = _size_from(image_processor.size, 224)
        self.crop_size = _size_from(image_processor.crop_size, self.size)
        self.mean = tuple(image_processor.image_mean)
        self.std = tuple(image_processor.image_std)
        self.device, self.dtype = device, dtype

    def cosine(self, images: Tensor, prompts: list[str]) -> Tensor:
        """cos(f_img, f_txt) per pair, float32 (b,)."""
        pixels = preprocess_images(images, self.size, self.mean, self.std, crop_size=self.crop_size)
        text = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        image_features = _features(self.model.get_image_features(pixel_values=pixels.to(self.dtype)))
        text_features = _features(
            self.model.get_text_features(
                input_ids=text["input_ids"].to(self.device),
                attention_mask=text["attention_mask"].to(self.device),
            )
        )
        image_features = torch.nn.functional.normalize(image_features.float(), dim=-1)
        text_features = torch.nn.functional.normalize(text_features.float(), dim=-1)
        return (image_features * text_features).sum(dim=-1)


@register_reward("pickscore")
class PickScoreReward(Reward):
    """PickScore: exp(logit_scale) * cos (``convention="logit"``, published) or cos (``"cosine"``)."""

    input_kind = "image"
    conventions = ("logit", "cosine")

    def __init__(
        self,
        model_dir: str | Path = PICKSCORE_MODEL,
        processor_dir: str | Path = PICKSCORE_PROCESSOR,
        convention: str = "logit",
        device: str | torch.device | None = None,
        batch_size: int = 16,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        if convention not in self.conventions:
            raise ValueError(
                f"unknown PickScore convention {convention!r}; expected one of {self.conventions}"
            )
        super().__init__(device=device, batch_size=batch_size)
        self.convention = convention
        self.scorer = HFClipScorer(
            model_dir,
            processor_dir,
            (PICKSCORE_MODEL_DOWNLOAD, PICKSCORE_PROCESSOR_DOWNLOAD),
            self.device,
            resolve_dtype(dtype),
        )

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        cosine = self.scorer.cosine(images, prompts)
        if self.convention == "cosine":
            return cosine
        return self.scorer.model.logit_scale.exp().float() * cosine


@register_reward("clip_score")
class ClipScoreReward(Reward):
    """CLIP score: cos (``convention="cosine"``) or 100 * max(cos, 0) (``"torchmetrics"``)."""

    input_kind = "image"
    conventions = ("cosine", "torchmetrics")

    def __init__(
        self,
        model_dir: str | Path = CLIP_MODEL,
        processor_dir: str | Path | None = None,
        convention: str = "cosine",
        device: str | torch.device | None = None,
        batch_size: int = 16,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        if convention not in self.conventions:
            raise ValueError(
                f"unknown CLIP score convention {convention!r}; expected one of {self.conventions}"
            )
        super().__init__(device=device, batch_size=batch_size)
        self.convention = convention
        processor_dir = model_dir if processor_dir is None else processor_dir
        self.scorer = HFClipScorer(
            model_dir, processor_dir, (CLIP_DOWNLOAD, CLIP_DOWNLOAD), self.device, resolve_dtype(dtype)
        )

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        cosine = self.scorer.cosine(images, prompts)
        return cosine if self.convention == "cosine" else 100.0 * cosine.clamp(min=0)
