"""ImageReward (Xu et al. 2023) re-implemented on transformers' BLIP building blocks.

The published scorer (THUDM/ImageReward, ``ImageReward.pt`` + ``med_config.json``) is

    e_img = ViT(x)                                     BLIP ViT-L/16 image encoder, all tokens
    h     = BERT(c, cross-attention to e_img)          the "MED" text encoder (med_config.json)
    s     = MLP(h[:, 0])                               768 -> 1024 -> 128 -> 64 -> 16 -> 1, no activations
    r     = (s - 0.16717362830052426) / 1.0333394966054072

We do not use the ``image-reward`` package: it pins timm 0.6 and imports functions transformers 5
removed. Our module uses ``BlipVisionModel`` (same pre-norm ViT: LayerNorm eps 1e-6, exact GELU,
fused qkv with bias, final LayerNorm on all tokens) and ``BlipTextModel`` (a port of BLIP's
med.py; built with ``is_decoder=True`` only to create the cross-attention layers, run with
``is_decoder=False`` i.e. bidirectional self-attention, like ImageReward's text encoder).
``PUBLISHED_KEY_RULES`` maps every key of the published layout (blip.visual_encoder.*,
blip.text_encoder.*, mlp.layers.*) to ours; ``blip.vision_proj``/``blip.text_proj`` (unused by the
scorer) and the ``position_ids`` buffer are ignored.

Text: bert-base-uncased tokenizer plus the [DEC] and [ENC] tokens BLIP adds (ids 30522, 30523),
padded to max_length=35 with truncation. Image: resize shortest side to 224 (bicubic), centre crop,
CLIP mean/std, batched on tensors (see ``preprocess.py``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.rewards.base import (
    Reward,
    RewardWeightsError,
    load_checkpoint,
    register_reward,
    require_path,
    resolve_dtype,
)
from fastvideo.rewards.preprocess import preprocess_images

logger = logging.getLogger(__name__)

IMAGE_REWARD_MEAN = 0.16717362830052426
IMAGE_REWARD_STD = 1.0333394966054072
IMAGE_REWARD_CHECKPOINT = "data/ImageReward/ImageReward.pt"
IMAGE_REWARD_MED_CONFIG = "data/ImageReward/med_config.json"
IMAGE_REWARD_DOWNLOAD = (
    "hf download THUDM/ImageReward ImageReward.pt med_config.json --local-dir data/ImageReward"
)
BERT_TOKENIZER_DIR = "data/bert-base-uncased"
BERT_DOWNLOAD = (
    "hf download google-bert/bert-base-uncased vocab.txt tokenizer_config.json tokenizer.json "
    "--local-dir data/bert-base-uncased"
)
TEXT_MAX_LENGTH = 35
MLP_WIDTHS = (1024, 128, 64, 16, 1)

# (published template, our template). {i}: layer index, {p}: weight|bias, {rest}: any suffix.
PUBLISHED_KEY_RULES: tuple[tuple[str, str], ...] = (
    ("blip.visual_encoder.cls_token", "visual_encoder.embeddings.class_embedding"),
    ("blip.visual_encoder.pos_embed", "visual_encoder.embeddings.position_embedding"),
    ("blip.visual_encoder.patch_embed.proj.{p}", "visual_encoder.embeddings.patch_embedding.{p}"),
    ("blip.visual_encoder.blocks.{i}.norm1.{p}", "visual_encoder.encoder.layers.{i}.layer_norm1.{p}"),
    ("blip.visual_encoder.blocks.{i}.attn.qkv.{p}", "visual_encoder.encoder.layers.{i}.self_attn.qkv.{p}"),
    (
        "blip.visual_encoder.blocks.{i}.attn.proj.{p}",
        "visual_encoder.encoder.layers.{i}.self_attn.projection.{p}",
    ),
    ("blip.visual_encoder.blocks.{i}.norm2.{p}", "visual_encoder.encoder.layers.{i}.layer_norm2.{p}"),
    ("blip.visual_encoder.blocks.{i}.mlp.fc1.{p}", "visual_encoder.encoder.layers.{i}.mlp.fc1.{p}"),
    ("blip.visual_encoder.blocks.{i}.mlp.fc2.{p}", "visual_encoder.encoder.layers.{i}.mlp.fc2.{p}"),
    ("blip.visual_encoder.norm.{p}", "visual_encoder.post_layernorm.{p}"),
    ("blip.text_encoder.{rest}", "text_encoder.{rest}"),
    ("mlp.layers.{i}.{p}", "mlp.layers.{i}.{p}"),
)
IGNORED_PUBLISHED_KEYS = re.compile(
    r"^blip\.(vision_proj|text_proj)\.|^blip\.text_encoder\.embeddings\.position_ids$"
)
_PLACEHOLDERS = {"{i}": r"(?P<i>\d+)", "{p}": r"(?P<p>weight|bias)", "{rest}": r"(?P<rest>.+)"}


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for placeholder, group in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape(placeholder), group)
    return re.compile(f"^{pattern}$")


def _translate(key: str, source_index: int) -> str | None:
    for rule in PUBLISHED_KEY_RULES:
        match = _template_regex(rule[source_index]).match(key)
        if match:
            return rule[1 - source_index].format(**match.groupdict())
    return None


def published_to_ours(key: str) -> str | None:
    """Published ImageReward.pt key -> our module's key (None if no rule matches)."""
    return _translate(key, 0)


def ours_to_published(key: str) -> str | None:
    """Our module's key -> published ImageReward.pt key (the inverse of ``published_to_ours``)."""
    return _translate(key, 1)


class ImageRewardMLP(nn.Module):
    """The published head: Linear/Dropout stack without activations (keys mlp.layers.{0,2,4,6,7})."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        w = MLP_WIDTHS
        self.layers = nn.Sequential(
            nn.Linear(input_size, w[0]),
            nn.Dropout(0.2),
            nn.Linear(w[0], w[1]),
            nn.Dropout(0.2),
            nn.Linear(w[1], w[2]),
            nn.Dropout(0.1),
            nn.Linear(w[2], w[3]),
            nn.Linear(w[3], w[4]),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features)


class ImageRewardModel(nn.Module):
    """BLIP ViT + cross-attention BERT + MLP head; ``forward`` returns the normalised reward (b,)."""

    def __init__(self, med_config: dict[str, Any], vision: dict[str, int]) -> None:
        super().__init__()
        from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

        vision_config = BlipVisionConfig(
            hidden_size=vision["width"],
            intermediate_size=4 * vision["width"],
            num_hidden_layers=vision["layers"],
            num_attention_heads=vision["heads"],
            image_size=vision["image_size"],
            patch_size=vision["patch_size"],
            layer_norm_eps=1e-6,
            hidden_act="gelu",
            attention_dropout=0.0,
            initializer_range=vision.get("initializer_range", 1e-10),
        )
        text_config = BlipTextConfig(
            vocab_size=med_config["vocab_size"],
            hidden_size=med_config["hidden_size"],
            encoder_hidden_size=vision["width"],
            intermediate_size=med_config["intermediate_size"],
            num_hidden_layers=med_config["num_hidden_layers"],
            num_attention_heads=med_config["num_attention_heads"],
            max_position_embeddings=med_config["max_position_embeddings"],
            hidden_act=med_config.get("hidden_act", "gelu"),
            layer_norm_eps=med_config.get("layer_norm_eps", 1e-12),
            pad_token_id=med_config.get("pad_token_id", 0),
            bos_token_id=None,
            sep_token_id=None,
            is_decoder=True,
            initializer_range=med_config.get("initializer_range", 0.02),
        )
        text_config._attn_implementation = "eager"
        self.image_size = vision["image_size"]
        self.visual_encoder = BlipVisionModel(vision_config)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)
        self.mlp = ImageRewardMLP(med_config["hidden_size"])

    def forward(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        image_embeds = self.visual_encoder(pixel_values=pixel_values).last_hidden_state
        text_output = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(
                image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device
            ),
            is_decoder=False,
        )
        raw = self.mlp(text_output.last_hidden_state[:, 0].float()).squeeze(-1)
        return (raw - IMAGE_REWARD_MEAN) / IMAGE_REWARD_STD


def vision_dims_from_state_dict(state_dict: dict[str, Tensor], heads: int | None = None) -> dict[str, int]:
    """Infer the ViT size from published keys; heads default to width // 64 (ViT-L: 16)."""
    try:
        width = state_dict["blip.visual_encoder.cls_token"].shape[-1]
        patch_size = state_dict["blip.visual_encoder.patch_embed.proj.weight"].shape[-1]
        num_positions = state_dict["blip.visual_encoder.pos_embed"].shape[1]
    except KeyError as error:
        raise RewardWeightsError(
            f"not an ImageReward checkpoint: missing {error}. Download it with:\n    {IMAGE_REWARD_DOWNLOAD}"
        ) from error
    layer_ids = {
        int(m.group(1)) for k in state_dict if (m := re.match(r"blip\.visual_encoder\.blocks\.(\d+)\.", k))
    }
    grid = round((num_positions - 1) ** 0.5)
    return {
        "width": width,
        "layers": len(layer_ids),
        "heads": heads or max(1, width // 64),
        "patch_size": patch_size,
        "image_size": grid * patch_size,
    }


def load_image_reward_model(
    checkpoint: str | Path = IMAGE_REWARD_CHECKPOINT,
    med_config: str | Path = IMAGE_REWARD_MED_CONFIG,
    vision_heads: int | None = None,
) -> ImageRewardModel:
    """Build our module from ``med_config.json`` + the checkpoint's shapes and load ``ImageReward.pt``.

    Every published key is mapped (``PUBLISHED_KEY_RULES``); a weight of our module that the file
    does not provide is an error, an unknown extra key a warning.
    """
    state_dict = load_checkpoint(checkpoint, "ImageReward checkpoint", IMAGE_REWARD_DOWNLOAD)
    if not isinstance(state_dict, dict):
        raise RewardWeightsError(
            f"'{checkpoint}' is not a state dict. Download it with:\n    {IMAGE_REWARD_DOWNLOAD}"
        )
    state_dict = state_dict.get("state_dict", state_dict)
    config_path = require_path(med_config, "ImageReward med_config.json", IMAGE_REWARD_DOWNLOAD)
    med = json.loads(Path(config_path).read_text())
    model = ImageRewardModel(med, vision_dims_from_state_dict(state_dict, vision_heads))
    kept = {key: value for key, value in state_dict.items() if not IGNORED_PUBLISHED_KEYS.search(key)}
    mapped = {published_to_ours(key): value for key, value in kept.items() if published_to_ours(key)}
    unknown = [key for key in kept if published_to_ours(key) is None]
    try:
        missing, unexpected = model.load_state_dict(mapped, strict=False)
    except RuntimeError as error:
        raise RewardWeightsError(f"'{checkpoint}' does not match '{med_config}': {error}") from error
    if missing:
        raise RewardWeightsError(
            f"'{checkpoint}' lacks {len(missing)} ImageReward weights (e.g. {missing[:3]}). "
            f"Download it with:\n    {IMAGE_REWARD_DOWNLOAD}"
        )
    if unknown or unexpected:
        logger.warning("ImageReward checkpoint: ignoring unknown keys %s", (unknown + list(unexpected))[:5])
    return model.eval()


def load_blip_tokenizer(tokenizer_dir: str | Path = BERT_TOKENIZER_DIR):
    """bert-base-uncased + BLIP's [DEC] (bos) and [ENC] tokens, from a local directory."""
    from transformers import BertTokenizer

    directory = require_path(tokenizer_dir, "bert-base-uncased tokenizer", BERT_DOWNLOAD)
    tokenizer = BertTokenizer.from_pretrained(str(directory), local_files_only=True)
    tokenizer.add_tokens(["[DEC]", "[ENC]"], special_tokens=True)
    return tokenizer


@register_reward("image_reward")
class ImageRewardReward(Reward):
    """ImageReward score (normalised with the published mean/std; see the module docstring)."""

    input_kind = "image"

    def __init__(
        self,
        checkpoint: str | Path = IMAGE_REWARD_CHECKPOINT,
        med_config: str | Path = IMAGE_REWARD_MED_CONFIG,
        tokenizer_dir: str | Path = BERT_TOKENIZER_DIR,
        vision_heads: int | None = None,
        max_length: int = TEXT_MAX_LENGTH,
        device: str | torch.device | None = None,
        batch_size: int = 16,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.dtype = resolve_dtype(dtype)
        self.model = load_image_reward_model(checkpoint, med_config, vision_heads)
        self.model.visual_encoder.to(self.device, self.dtype)
        self.model.text_encoder.to(self.device, self.dtype)
        self.model.mlp.to(self.device)  # the head stays fp32, as in the published scorer
        self.model.requires_grad_(False)
        self.tokenizer = load_blip_tokenizer(tokenizer_dir)
        self.max_length = max_length

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        pixels = preprocess_images(images, self.model.image_size)
        text = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return self.model(
            pixels.to(self.dtype), text["input_ids"].to(self.device), text["attention_mask"].to(self.device)
        )
