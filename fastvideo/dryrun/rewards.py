"""Reward models at their published architectures, built without weights for the dry run.

One builder per reward that holds a network (rule-based rewards, verifiers and the toy rewards hold none):

- ``hps``: open_clip ViT-H-14 (HPS-v2.1), 224 px, 77 text tokens;
- ``pickscore``: CLIP ViT-H/14 (``yuvalkirstain/PickScore_v1``), 224 px;
- ``clip_score``: CLIP ViT-L/14 (``openai/clip-vit-large-patch14``), 224 px;
- ``image_reward``: BLIP ViT-L/16 + the 12-layer cross-attention BERT (``THUDM/ImageReward``), 35 tokens;
- ``videoalign``: Qwen2-VL-2B (VideoAlign's base). Its vision tower's variable-length attention cannot run
  on fake tensors, so its forward is the language model on the token count of the sampled frames
  (estimated: frames x (h/28) x (w/28) visual tokens + 64 text tokens; parameters exact).

Frozen reward weights are in ``kwargs.dtype`` (the rewards' default: float32).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fastvideo.dryrun.fake import default_dtype
from fastvideo.rewards.base import resolve_dtype


@dataclass
class RewardModel:
    name: str
    module: nn.Module | None
    score: Callable[[torch.Tensor], Any]
    """Runs the network on decoded images (B, 3, H, W) or videos (B, T, 3, H, W)."""


def _pixels(images: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    if images.dim() == 5:  # a video reward on images or an image reward on videos: the first frames
        images = images[:, 0]
    return F.interpolate(images.float(), size=(size, size), mode="bilinear").to(dtype)


def _hps(kwargs: dict[str, Any], dtype: torch.dtype) -> RewardModel:
    import open_clip

    config = open_clip.get_model_config(kwargs.get("model_name", "ViT-H-14"))  # create_model would .to() it
    with default_dtype(dtype):
        model = open_clip.CLIP(**config).eval()

    def score(images):
        tokens = torch.zeros(len(images), 77, dtype=torch.long)
        return model.encode_image(_pixels(images, 224, dtype)), model.encode_text(tokens)
    return RewardModel("hps", model, score)


def _clip(name: str, text: dict[str, int], vision: dict[str, int], projection: int, dtype: torch.dtype) -> RewardModel:
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(text_config=text, vision_config={**vision, "patch_size": 14, "image_size": 224},
                        projection_dim=projection)
    config._attn_implementation = "sdpa"
    with default_dtype(dtype):
        model = CLIPModel(config).eval()

    def score(images):
        ids = torch.zeros(len(images), 77, dtype=torch.long)
        return model(input_ids=ids, pixel_values=_pixels(images, 224, dtype))
    return RewardModel(name, model, score)


def _image_reward(kwargs: dict[str, Any], dtype: torch.dtype) -> RewardModel:
    from fastvideo.rewards.image_reward import TEXT_MAX_LENGTH, ImageRewardModel

    med = {"vocab_size": 30524, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
           "num_attention_heads": 12, "max_position_embeddings": 512}
    with default_dtype(dtype):
        model = ImageRewardModel(med, {"width": 1024, "layers": 24, "heads": 16, "patch_size": 16,
                                       "image_size": 224}).eval()

    def score(images):
        ids = torch.zeros(len(images), TEXT_MAX_LENGTH, dtype=torch.long)
        return model(_pixels(images, 224, dtype), ids, torch.ones_like(ids))
    return RewardModel("image_reward", model, score)


def _videoalign(kwargs: dict[str, Any], dtype: torch.dtype) -> RewardModel:
    from transformers import Qwen2VLConfig, Qwen2VLModel

    config = Qwen2VLConfig(
        text_config={"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}},
        vision_config={"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2})
    config._attn_implementation = "sdpa"
    with default_dtype(dtype):
        model = Qwen2VLModel(config).eval()

    def score(videos):
        frames = videos.shape[1] if videos.dim() == 5 else 1
        h, w = videos.shape[-2:]
        tokens = max(1, frames // 2) * max(1, h // 28) * max(1, w // 28) + 64
        embeds = torch.randn(len(videos), tokens, 1536, dtype=dtype)
        return model.language_model(inputs_embeds=embeds)
    return RewardModel("videoalign", model, score)


_CLIP_H = ({"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24},
           {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 16, "num_hidden_layers": 32}, 1024)
_CLIP_L = ({"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12},
           {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24}, 768)

BUILDERS: dict[str, Callable[[dict[str, Any], torch.dtype], RewardModel]] = {
    "hps": _hps,
    "pickscore": lambda kwargs, dtype: _clip("pickscore", *_CLIP_H, dtype),
    "clip_score": lambda kwargs, dtype: _clip("clip_score", *_CLIP_L, dtype),
    "image_reward": _image_reward,
    "videoalign": _videoalign,
}
"""Reward registry name -> builder of its network (rewards not listed hold no network)."""


def build_reward_models(rewards_cfg: Any) -> list[RewardModel]:
    """The networks of the configured reward terms (call inside ``fake_tensors()``)."""
    models = []
    for term in rewards_cfg.terms:
        build = BUILDERS.get(term.name)
        if build is None:
            models.append(RewardModel(term.name, None, lambda images: None))
            continue
        model = build(dict(term.kwargs), resolve_dtype(term.kwargs.get("dtype", "float32")))  # as each Reward reads it
        model.module.requires_grad_(False)  # as every Reward freezes its network
        models.append(model)
    return models
