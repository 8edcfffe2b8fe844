"""HPS-v2.1 (Human Preference Score v2.1) through open_clip directly.

    HPS(x, c) = < f_img(x) / |f_img(x)| , f_txt(c) / |f_txt(c)| >   (cosine, about 0.2 - 0.4)

with open_clip's ViT-H-14 CLIP loaded from ``HPS_v2.1_compressed.pt`` (``torch.load(...)["state_dict"]``).

We use ``open_clip`` instead of the ``hpsv2`` package: hpsv2 pins protobuf<4 and pytest 7, and its
vendored copy of open_clip ships without its BPE vocabulary file, so it neither installs cleanly
beside our stack nor tokenizes offline. open_clip's ViT-H-14 has the same state-dict keys as the
vendored one, and ``open_clip.get_tokenizer("ViT-H-14")`` ships its vocabulary.

Preprocessing follows hpsv2's ``preprocess_val`` (open_clip's ``resize_longest_max=True``): resize
the longest side to 224 (bicubic), zero-pad to a square, CLIP mean/std; for square images this is
the same as resize + centre crop. It runs on tensors in a batch (see ``preprocess.py`` for the
deviation from PIL). hpsv2 scores under CUDA autocast (fp16); we score in ``dtype`` (fp32 default).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from fastvideo.rewards.base import (
    Reward,
    RewardWeightsError,
    load_checkpoint,
    register_reward,
    require_path,
    resolve_dtype,
)
from fastvideo.rewards.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess_images

logger = logging.getLogger(__name__)

HPS_CHECKPOINT = "hps_ckpt/HPS_v2.1_compressed.pt"
HPS_DOWNLOAD = "hf download xswu/HPSv2 HPS_v2.1_compressed.pt --local-dir hps_ckpt"
OPEN_CLIP_DOWNLOAD = (
    "hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K open_clip_pytorch_model.bin --local-dir hps_ckpt"
)


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning() -> Iterator[None]:
    """Hide open_clip's 'initialized randomly' warning (logged on the root logger)."""
    log_filter = _DropRandomInitWarning()
    logging.getLogger().addFilter(log_filter)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(log_filter)


def load_hps_model(
    checkpoint: str | Path = HPS_CHECKPOINT,
    model_name: str = "ViT-H-14",
    pretrained: str | Path | None = None,
) -> torch.nn.Module:
    """Build open_clip ``model_name`` (optionally from ``pretrained`` open_clip weights) and load
    the HPS state dict (file layout ``{"state_dict": {...}}``). Missing keys are an error."""
    import open_clip

    state = load_checkpoint(checkpoint, "HPS-v2.1 checkpoint", HPS_DOWNLOAD)
    if not isinstance(state, dict) or "state_dict" not in state:
        raise RewardWeightsError(
            f"'{checkpoint}' has no 'state_dict' entry; not an HPS checkpoint. Download it with:\n    {HPS_DOWNLOAD}"
        )
    if pretrained is not None:
        pretrained = str(require_path(pretrained, "open_clip ViT-H-14 weights", OPEN_CLIP_DOWNLOAD))
    with _quiet_random_init_warning():  # the HPS state dict below replaces every weight
        model = open_clip.create_model(model_name, pretrained=pretrained, device="cpu")
    state_dict = {key.removeprefix("module."): value for key, value in state["state_dict"].items()}
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shape mismatch: another architecture's checkpoint
        raise RewardWeightsError(f"'{checkpoint}' does not fit open_clip {model_name}: {error}") from error
    if missing:
        raise RewardWeightsError(
            f"'{checkpoint}' lacks {len(missing)} weights of open_clip {model_name} (e.g. {missing[:3]}). "
            f"Download the HPS-v2.1 checkpoint with:\n    {HPS_DOWNLOAD}"
        )
    if unexpected:
        logger.warning(
            "HPS checkpoint: ignoring %d unexpected keys, e.g. %s", len(unexpected), unexpected[:3]
        )
    return model.eval()


@register_reward("hps")
class HPSReward(Reward):
    """HPS-v2.1 reward: cosine of normalised open_clip image and text features (see module docstring)."""

    input_kind = "image"

    def __init__(
        self,
        checkpoint: str | Path = HPS_CHECKPOINT,
        model_name: str = "ViT-H-14",
        pretrained: str | Path | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 16,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        super().__init__(device=device, batch_size=batch_size)
        import open_clip

        self.dtype = resolve_dtype(dtype)
        self.model = load_hps_model(checkpoint, model_name, pretrained).to(self.device, self.dtype)
        self.model.requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        image_size = self.model.visual.image_size
        self.image_size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        pixels = preprocess_images(
            images, self.image_size, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, mode="longest_pad"
        )
        tokens = self.tokenizer(prompts).to(self.device)
        image_features = self.model.encode_image(pixels.to(self.dtype), normalize=True)
        text_features = self.model.encode_text(tokens, normalize=True)
        return (image_features.float() * text_features.float()).sum(dim=-1)
