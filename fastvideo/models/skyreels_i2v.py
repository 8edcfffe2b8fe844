"""SkyReels-V1 image-to-video (HunyuanVideo with an image-latent input) behind the ``ModelAdapter`` contract.

Same classes, latents, text encoding and validation as ``HunyuanAdapter``; the differences follow
``diffusers.HunyuanSkyreelsImageToVideoPipeline``:

- The transformer has twice the latent channels as input. The first frame's VAE latent (image in
  [-1, 1] -> VAE encode of one frame -> posterior mode x scaling factor; the pipeline samples the
  posterior, we take its mode so the conditioning is deterministic) is zero-padded over the latent
  frames and concatenated after the noisy latents on the channel axis. The conditioning dict carries
  the one-frame latent as ``image_latents`` (B, C, 1, h, w); ``predict`` pads it.
- Real classifier-free guidance with the empty prompt, in one batched call on [uncond, cond]:
  ``uncond + s * (cond - uncond)`` with s = ``model_cfg.guidance_scale`` (SkyReels: 5; <= 1 disables
  it). The embedded guidance is fixed at 1.0 (``EMBEDDED_GUIDANCE``, as the pipeline's default). The
  empty-prompt embedding is encoded once and travels with the embedding cache (``cache_extras``).

Where the first frames come from (``encode_prompts`` needs one image per prompt), in this order:
1. a callable set with ``set_first_frame_source(fn)``: ``fn(prompts) -> (B, 3, H, W)`` in [0, 1],
   e.g. ``T2IFirstFrames(t2i_adapter)`` which samples our own text-to-image model in memory;
2. a first-frame file: ``model_cfg.first_frame_file`` or the environment variable
   ``FASTVIDEO_FIRST_FRAME_FILE``: JSON (a list of {"prompt", "image"} objects, or {prompt: image}) or
   CSV with columns ``prompt,image``; relative image paths are relative to the file;
3. tiny models only: a deterministic synthetic image per prompt (debug runs without data).
Otherwise ``encode_prompts`` raises. Images are resized to cover H x W and centre-cropped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from fastvideo.models.base import Cond, ModelAdapter
from fastvideo.models.hunyuan import HUNYUAN_DEFAULT_DIR, HUNYUAN_REPO_ID, TEXT_KEYS, HunyuanAdapter
from fastvideo.models.registry import register_adapter
from fastvideo.models.sources import ComponentSource

SKYREELS_REPO_ID = "Skywork/SkyReels-V1-Hunyuan-I2V"
SKYREELS_DEFAULT_DIR = "./data/SkyReels-V1-Hunyuan-I2V"
FIRST_FRAME_ENV = "FASTVIDEO_FIRST_FRAME_FILE"
EMBEDDED_GUIDANCE = 1.0
IMAGE_KEY = "image_latents"

FrameSource = Callable[[list[str]], Tensor]


# --- first frames ---------------------------------------------------------------------------------


def fit_frames(images: Tensor, height: int, width: int) -> Tensor:
    """(B, 3, h, w) -> (B, 3, height, width): centre crop to the target aspect, then antialiased resize."""
    _, _, h, w = images.shape
    if h * width > w * height:  # too tall: crop rows
        keep = round(w * height / width)
        images = images[:, :, (h - keep) // 2:(h - keep) // 2 + keep]
    elif h * width < w * height:  # too wide: crop columns
        keep = round(h * width / height)
        images = images[:, :, :, (w - keep) // 2:(w - keep) // 2 + keep]
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images.float(), size=(height, width), mode="bilinear", antialias=True,
                               align_corners=False)
    return images.float().clamp(0, 1)


def read_first_frame_table(path: str | os.PathLike[str]) -> dict[str, Path]:
    """{prompt: image path} from a JSON or CSV first-frame file (relative paths resolved against it)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"first-frame file not found: {file}")
    if file.suffix.lower() == ".csv":
        with file.open(newline="", encoding="utf-8") as handle:
            rows = [(row["prompt"], row["image"]) for row in csv.DictReader(handle)]
    else:
        data = json.loads(file.read_text(encoding="utf-8"))
        rows = list(data.items()) if isinstance(data, dict) else [(row["prompt"], row["image"]) for row in data]
    return {prompt: (file.parent / image).resolve() for prompt, image in rows}


def load_image(path: Path) -> Tensor:
    """(3, H, W) float image in [0, 1] (RGB)."""
    import numpy as np
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"first-frame image not found: {path}")
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class FirstFrameFile:
    """First frames looked up by prompt in a JSON/CSV file of (prompt, image path)."""

    def __init__(self, path: str | os.PathLike[str], height: int, width: int):
        self.path, self.height, self.width = Path(path), height, width
        self.table = read_first_frame_table(path)

    def __call__(self, prompts: list[str]) -> Tensor:
        missing = [prompt for prompt in prompts if prompt not in self.table]
        if missing:
            raise KeyError(f"no first frame for prompt {missing[0]!r} in {self.path}")
        return torch.cat([fit_frames(load_image(self.table[p])[None], self.height, self.width) for p in prompts])


def prompt_seed(prompt: str, seed: int = 0) -> int:
    """A stable 63-bit seed per (prompt, seed): the same prompt always gets the same first frame."""
    digest = hashlib.blake2b(f"{seed}/{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def synthetic_first_frames(prompts: Sequence[str], height: int, width: int) -> Tensor:
    """Deterministic smooth colour images, one per prompt (tiny debug models without a first-frame file)."""
    frames = []
    for prompt in prompts:
        generator = torch.Generator().manual_seed(prompt_seed(prompt))
        coarse = torch.rand(1, 3, 4, 4, generator=generator)
        frames.append(F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False))
    return torch.cat(frames)


@torch.no_grad()
def first_frames_from_t2i(t2i_adapter: ModelAdapter, prompts: list[str], seeds: Sequence[int],
                          num_steps: int = 20, shift: float = 3.0) -> Tensor:
    """Sample one image per prompt with the ODE (no SDE noise) from ``t2i_adapter``, in memory.

    Initial noise of prompt i is drawn from ``seeds[i]``; flow adapters use ``num_steps`` Euler steps
    with time shift ``shift``, diffusion adapters DDIM with eta = 0. Returns (B, 3, H, W) in [0, 1].
    """
    from fastvideo.grpo.rollout import seeded_normal
    from fastvideo.grpo.sampler import sampler_for
    from fastvideo.inference.sampling import generate

    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    sampler = sampler_for(t2i_adapter, num_steps, shift=shift, sde_type="ode", eta=0.0)
    init = seeded_normal(t2i_adapter.latent_shape(), list(seeds), t2i_adapter.device)
    images = generate(t2i_adapter, t2i_adapter.encode_prompts(list(prompts)), init, sampler, mixed_precision="fp32")
    return images[:, 0] if images.ndim == 5 else images


class T2IFirstFrames:
    """First frames sampled in memory from one of our text-to-image adapters (seed per prompt)."""

    def __init__(self, t2i_adapter: ModelAdapter, seed: int = 0, num_steps: int = 20, shift: float = 3.0):
        self.t2i_adapter, self.seed, self.num_steps, self.shift = t2i_adapter, seed, num_steps, shift

    def __call__(self, prompts: list[str]) -> Tensor:
        seeds = [prompt_seed(prompt, self.seed) for prompt in prompts]
        return first_frames_from_t2i(self.t2i_adapter, prompts, seeds, self.num_steps, self.shift)


# --- the adapter ----------------------------------------------------------------------------------


class SkyReelsI2VAdapter(HunyuanAdapter):
    """SkyReels-V1-Hunyuan-I2V from a local diffusers directory (HunyuanVideo layout) or the tiny config."""

    name = "skyreels_i2v"
    real_cfg_field = "guidance_scale"
    cond_batch_keys = (*TEXT_KEYS, IMAGE_KEY)
    pipeline_class_name = "HunyuanSkyreelsImageToVideoPipeline"
    tiny_kind = "skyreels_i2v"

    def __init__(self, source: ComponentSource, model_cfg: Any, device: torch.device,
                 vae_config: dict[str, Any], transformer_config: dict[str, Any]):
        super().__init__(source, model_cfg, device, vae_config, transformer_config)
        in_channels = int(self.transformer_config["in_channels"])
        if in_channels != 2 * self.latent_channels:
            raise ValueError(f"an image-to-video transformer takes 2 x {self.latent_channels} latent channels, "
                             f"this one takes {in_channels}: is transformer/ the SkyReels-I2V transformer?")
        self.first_frame_source: FrameSource | None = None

    @classmethod
    def download_hint(cls, path: str | None) -> str:
        """HunyuanVideo's directory with SkyReels' transformer in ``transformer/``."""
        root = path or SKYREELS_DEFAULT_DIR
        return (f"huggingface-cli download {HUNYUAN_REPO_ID} --local-dir {root} && rm -rf {root}/transformer && "
                f"huggingface-cli download {SKYREELS_REPO_ID} --local-dir {root}/transformer "
                f"(the VAE/text encoders are HunyuanVideo's, e.g. a copy of {HUNYUAN_DEFAULT_DIR})")

    @property
    def cfg_scale(self) -> float:
        """SkyReels' real CFG scale is ``model_cfg.guidance_scale`` (the embedded guidance is fixed at 1)."""
        return float(self.model_cfg.guidance_scale)

    # first frames ----------------------------------------------------------------------------
    def set_first_frame_source(self, source: FrameSource | None) -> None:
        """Use ``source(prompts) -> (B, 3, H, W)`` in [0, 1] for the first frames (None: back to the defaults)."""
        self.first_frame_source = source

    def first_frames(self, prompts: list[str]) -> Tensor:
        """(B, 3, H, W) first frames in [0, 1] at the configured size (see the module docstring)."""
        height, width = int(self.model_cfg.height), int(self.model_cfg.width)
        if self.first_frame_source is not None:
            return fit_frames(self.first_frame_source(list(prompts)).to("cpu"), height, width)
        path = getattr(self.model_cfg, "first_frame_file", None) or os.environ.get(FIRST_FRAME_ENV)
        if path:
            self.first_frame_source = FirstFrameFile(path, height, width)
            return self.first_frame_source(list(prompts))
        if self.model_cfg.tiny:
            return synthetic_first_frames(prompts, height, width)
        raise ValueError("skyreels_i2v needs first frames: set model.first_frame_file (or the environment "
                         f"variable {FIRST_FRAME_ENV}) to a JSON/CSV of prompt,image, or call "
                         "set_first_frame_source()")

    @torch.no_grad()
    def encode_first_frames(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> one-frame latents (B, C, 1, h, w), fp32 (posterior mode x scaling factor)."""
        vae = self.component("vae")
        pixels = (images.to(self.device, torch.float32) * 2 - 1).unsqueeze(2)
        latents = [vae.encode(clip.to(self.dtype)).latent_dist.mode() for clip in pixels.split(1)]
        return torch.cat(latents).float() * self.vae_config["scaling_factor"]

    # conditioning ----------------------------------------------------------------------------
    def encode_prompts(self, prompts: list[str]) -> Cond:
        """Text conditioning (as HunyuanAdapter) plus the first frames' ``image_latents``."""
        prompts = list(prompts)
        self.negative_cond()
        cond = self.encode_text(prompts)
        cond[IMAGE_KEY] = self.encode_first_frames(self.first_frames(prompts))
        return cond

    # denoiser --------------------------------------------------------------------------------
    def predict(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """Velocity (fp32) with the image latents concatenated, and real CFG when guidance_scale > 1."""
        image = cond[IMAGE_KEY].to(latents.device, latents.dtype)
        if image.shape[1] != latents.shape[1] or image.shape[3:] != latents.shape[3:]:
            raise ValueError(f"image_latents {tuple(image.shape[1:])} do not match latents "
                             f"{tuple(latents.shape[1:])}: were the first frames encoded (e.g. preprocessed) at "
                             "another model.height/width?")
        pad = image.new_zeros(*image.shape[:2], latents.shape[2] - image.shape[2], *image.shape[3:])
        x = torch.cat([latents, torch.cat([image, pad], dim=2)], dim=1)
        return self.guided_call(x, timestep, cond, EMBEDDED_GUIDANCE, self.cfg_scale)


register_adapter("skyreels_i2v", SkyReelsI2VAdapter.from_config)
