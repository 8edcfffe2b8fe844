"""HunyuanVideo (rectified flow, text-to-video) behind the ``ModelAdapter`` contract.

Latents are the VAE's (B, C, T', h, w) with T' = (num_frames - 1) / 4 + 1 latent frames and
h, w = H / 8, W / 8 (HunyuanVideo: C = 16). ``num_frames = 1`` is the text-to-image mode: one latent
frame, and ``decode`` returns images (B, 3, H, W) instead of videos (B, T, 3, H, W).

Sizes are validated because the model fails quietly otherwise: the video VAE needs 4k+1 frames, and
the transformer silently crops latents whose height/width are not multiples of its patch size, so
H and W must be multiples of (VAE spatial factor x patch size) = 16.

Prompts are encoded as ``diffusers.HunyuanVideoPipeline.encode_prompt`` does: the prompt goes into
HunyuanVideo's Llama prompt template, the Llama-3 ``text_encoder``'s third-to-last hidden state is
taken and the template prefix (``crop_start`` tokens) is cropped, keeping 256 text tokens (or
``model_cfg.max_sequence_length``, as the pipeline's argument) and their attention mask (right padding;
the transformer needs the mask); CLIP ``text_encoder_2``'s pooled output is ``pooled_projections``.
``crop_start`` is counted with the model's own tokenizer (for HunyuanVideo's Llama-3 tokenizer this is
the pipeline's 95).

``predict`` feeds the transformer as the pipeline's denoising loop does: ``timestep = sigma * 1000``,
embedded guidance ``guidance = guidance_scale * 1000`` (HunyuanVideo: 6.0), the text embedding, its
attention mask and the pooled CLIP embedding. With ``model_cfg.true_cfg_scale`` s > 1 (the stock
pipeline's ``true_cfg_scale``; only for models trained with prompt dropout) the velocity is
``v_u + s (v_c - v_u)`` against the empty prompt, in one batched call on [uncond, cond]; the empty
prompt is encoded once and travels with the embedding cache (``cache_extras``).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.models.base import Cond, ModelAdapter, unwrap_module
from fastvideo.models.registry import register_adapter
from fastvideo.models.sources import (
    MODEL_WEIGHTS,
    ComponentSource,
    RequiredFiles,
    directory_source,
    download_command,
)

logger = logging.getLogger("fastvideo")

HUNYUAN_REPO_ID = "hunyuanvideo-community/HunyuanVideo"
HUNYUAN_DEFAULT_DIR = "./data/HunyuanVideo"
LLAMA_MAX_SEQUENCE_LENGTH = 256  # HunyuanVideoPipeline's max_sequence_length
CLIP_MAX_SEQUENCE_LENGTH = 77
HIDDEN_LAYERS_TO_SKIP = 2  # the pipeline reads hidden_states[-(2 + 1)]
TIMESTEP_SCALE = 1000.0
TEXT_KEYS = ("prompt_embeds", "prompt_attention_mask", "pooled_prompt_embeds")
NEGATIVE_PREFIX = "negative_"
HUNYUAN_REQUIRED_FILES: RequiredFiles = (
    ("model_index.json", ()),
    ("transformer/", ("config.json",)), ("transformer/", MODEL_WEIGHTS),
    ("vae/", ("config.json",)), ("vae/", MODEL_WEIGHTS),
    ("text_encoder/", ("config.json",)), ("text_encoder/", MODEL_WEIGHTS),
    ("text_encoder_2/", ("config.json",)), ("text_encoder_2/", MODEL_WEIGHTS),
    ("tokenizer/", ("tokenizer.json", "tokenizer_config.json")),
    ("tokenizer_2/", ("vocab.json", "tokenizer.json")),
    ("scheduler/", ("scheduler_config.json",)),
)


def hunyuan_components() -> dict[str, tuple[Any, str]]:
    """(class, subfolder) of every component of a HunyuanVideo-layout diffusers directory."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTokenizer, LlamaModel

    return {
        "transformer": (HunyuanVideoTransformer3DModel, "transformer"),
        "vae": (AutoencoderKLHunyuanVideo, "vae"),
        "text_encoder": (LlamaModel, "text_encoder"), "text_encoder_2": (CLIPTextModel, "text_encoder_2"),
        "tokenizer": (AutoTokenizer, "tokenizer"), "tokenizer_2": (CLIPTokenizer, "tokenizer_2"),
        "scheduler": (FlowMatchEulerDiscreteScheduler, "scheduler"),
    }


def default_prompt_template() -> dict[str, Any]:
    """HunyuanVideo's Llama prompt template (``template`` with one ``{}``; ``crop_start`` for its tokenizer)."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    return dict(DEFAULT_PROMPT_TEMPLATE)


def check_num_frames(num_frames: int, temporal_factor: int) -> int:
    """Latent frames of a ``num_frames`` clip; ValueError naming the nearest valid counts if not k*f+1."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if (num_frames - 1) % temporal_factor:
        below = (num_frames - 1) // temporal_factor * temporal_factor + 1
        raise ValueError(f"num_frames={num_frames} is not a valid video length: the video VAE needs "
                         f"{temporal_factor}k+1 frames; nearest valid counts are {below} and "
                         f"{below + temporal_factor}")
    return (num_frames - 1) // temporal_factor + 1


def check_frame_size(height: int, width: int, spatial_factor: int, patch_size: int) -> tuple[int, int]:
    """Latent (h, w); ValueError unless H and W are multiples of spatial_factor * patch_size."""
    step = spatial_factor * patch_size
    if height % step or width % step:
        raise ValueError(f"video size {height}x{width} must be divisible by {step} (VAE factor {spatial_factor} "
                         f"x patch size {patch_size}); the transformer would silently crop the rest. "
                         f"Nearest valid: {height // step * step or step}x{width // step * step or step}")
    return height // spatial_factor, width // spatial_factor


class HunyuanAdapter(ModelAdapter):
    """HunyuanVideo (T2V, or T2I with num_frames = 1) from a local diffusers directory or the tiny config."""

    name = "hunyuan"
    real_cfg_field = "true_cfg_scale"
    paradigm = "flow"
    default_lora_targets = ["to_q", "to_k", "to_v", "to_out.0"]
    cond_batch_keys = ("prompt_embeds", "prompt_attention_mask", "pooled_prompt_embeds")
    pipeline_class_name = "HunyuanVideoPipeline"
    transformer_subfolder = "transformer"
    text_component_names = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
    tiny_kind = "hunyuan"

    def __init__(self, source: ComponentSource, model_cfg: Any, device: torch.device,
                 vae_config: dict[str, Any], transformer_config: dict[str, Any]):
        super().__init__(source, model_cfg, device)
        self.vae_config = dict(vae_config)
        self.transformer_config = dict(transformer_config)
        self.spatial_factor = int(self.vae_config.get("spatial_compression_ratio", 8))
        self.temporal_factor = int(self.vae_config.get("temporal_compression_ratio", 4))
        self.patch_size = int(self.transformer_config.get("patch_size", 2))
        self.prompt_template = default_prompt_template()
        self.max_sequence_length = int(getattr(model_cfg, "max_sequence_length", 0) or LLAMA_MAX_SEQUENCE_LENGTH)
        self._crop_start: int | None = None
        self._negative: Cond | None = None

    @classmethod
    def download_hint(cls, path: str | None) -> str:
        """The command(s) that fetch the model into the configured (or default) directory."""
        return download_command(HUNYUAN_REPO_ID, path, HUNYUAN_DEFAULT_DIR)

    @classmethod
    def from_config(cls, model_cfg: Any, device: torch.device) -> HunyuanAdapter:
        """From ``model_cfg.path`` (a HunyuanVideo diffusers directory) or the tiny model (``model_cfg.tiny``)."""
        if model_cfg.tiny:
            from fastvideo.models.tiny_video import tiny_video_source

            source = tiny_video_source(cls.tiny_kind)
        else:
            source = directory_source(model_cfg.path, hunyuan_components(), HUNYUAN_REQUIRED_FILES,
                                      cls.download_hint(model_cfg.path))
        return cls(source, model_cfg, device, source.load_config("vae"), source.load_config("transformer"))

    # text ------------------------------------------------------------------------------------
    @property
    def crop_start(self) -> int:
        """Tokens of the template before the prompt (BOS included), counted with the Llama tokenizer."""
        if self._crop_start is None:
            prefix = self.prompt_template["template"].split("{}")[0]
            self._crop_start = len(self.component("tokenizer")(prefix).input_ids)
            reference = self.prompt_template.get("crop_start")
            if not self.model_cfg.tiny and reference is not None and reference != self._crop_start:
                logger.warning("HunyuanVideo template prefix is %d tokens with this tokenizer, but the "
                               "pipeline's crop_start is %d: is this HunyuanVideo's tokenizer?",
                               self._crop_start, reference)
        return self._crop_start

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Cond:
        """Llama sequence (B, 256, D), its mask (B, 256) and the pooled CLIP embedding (B, D_clip)."""
        tokenizer, crop = self.component("tokenizer"), self.crop_start
        texts = [self.prompt_template["template"].format(prompt) for prompt in prompts]
        tokens = tokenizer(texts, max_length=self.max_sequence_length + crop, padding="max_length",
                           padding_side="right", truncation=True, return_tensors="pt")  # mask = valid prefix
        mask = tokens.attention_mask.to(self.device)
        hidden = self.component("text_encoder")(input_ids=tokens.input_ids.to(self.device), attention_mask=mask,
                                                output_hidden_states=True).hidden_states
        sequence = hidden[-(HIDDEN_LAYERS_TO_SKIP + 1)][:, crop:]
        clip_tokenizer = self.component("tokenizer_2")
        clip_ids = clip_tokenizer(list(prompts), padding="max_length", max_length=CLIP_MAX_SEQUENCE_LENGTH,
                                  truncation=True, return_tensors="pt").input_ids
        clip_encoder = self.component("text_encoder_2")
        pooled = clip_encoder(clip_ids.to(self.device), output_hidden_states=False).pooler_output
        return {"prompt_embeds": sequence.to(self.dtype), "prompt_attention_mask": mask[:, crop:].long(),
                "pooled_prompt_embeds": pooled.to(self.dtype)}

    def encode_prompts(self, prompts: list[str]) -> Cond:
        """Text conditioning, like ``HunyuanVideoPipeline.encode_prompt`` (see the module docstring)."""
        if self.cfg_scale > 1.0:
            self.negative_cond()  # encoded while the text encoders are loaded
        return self.encode_text(list(prompts))

    @property
    def cfg_scale(self) -> float:
        """Real CFG scale against the empty prompt (``model_cfg.true_cfg_scale``; <= 1: off)."""
        return float(getattr(self.model_cfg, "true_cfg_scale", 1.0) or 1.0)

    def negative_cond(self) -> Cond:
        """Text conditioning of the empty prompt (1 row), encoded once or taken from the cache."""
        if self._negative is None:
            self._negative = self.encode_text([""])
        return self._negative

    def cache_extras(self) -> dict[str, Tensor]:
        """The empty prompt's embedding when real CFG is on (the cache then needs no text encoder)."""
        if self.cfg_scale <= 1.0:
            return {}
        return {NEGATIVE_PREFIX + key: value.cpu() for key, value in self.negative_cond().items()}

    def load_cache_extras(self, extras: dict[str, Tensor]) -> None:
        missing = [NEGATIVE_PREFIX + key for key in TEXT_KEYS if NEGATIVE_PREFIX + key not in extras]
        if missing and self.cfg_scale > 1.0:
            raise KeyError(f"the embedding cache has no {missing} (the empty prompt for classifier-free "
                           f"guidance, scale {self.cfg_scale}); re-run the {self.name} preprocessing")
        if not missing:
            self._negative = {key: extras[NEGATIVE_PREFIX + key].to(self.device) for key in TEXT_KEYS}

    # latents ---------------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return int(self.vae_config["latent_channels"])

    def latent_shape(self) -> tuple[int, ...]:
        """(C, T', h, w) for the configured num_frames/height/width (validated, see the module docstring)."""
        frames = check_num_frames(int(self.model_cfg.num_frames), self.temporal_factor)
        h, w = check_frame_size(int(self.model_cfg.height), int(self.model_cfg.width), self.spatial_factor,
                                self.patch_size)
        return (self.latent_channels, frames, h, w)

    # denoiser --------------------------------------------------------------------------------
    def transformer_call(self, hidden_states: Tensor, timestep: Tensor, cond: Cond, guidance: float) -> Tensor:
        """One transformer call: ``timestep`` is sigma (B,), ``guidance`` the embedded guidance scale."""
        transformer = self.transformer
        dtype = unwrap_module(transformer).x_embedder.proj.weight.dtype  # the transformer's compute dtype
        device, batch = hidden_states.device, hidden_states.shape[0]
        sigma = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch).float()
        guidance_embed = torch.full((batch,), float(guidance), device=device, dtype=dtype) * TIMESTEP_SCALE
        output = transformer(
            hidden_states=hidden_states.to(dtype), timestep=sigma * TIMESTEP_SCALE,
            encoder_hidden_states=cond["prompt_embeds"].to(device=device, dtype=dtype),
            encoder_attention_mask=cond["prompt_attention_mask"].to(device=device, dtype=dtype),
            pooled_projections=cond["pooled_prompt_embeds"].to(device=device, dtype=dtype),
            guidance=guidance_embed, return_dict=False,
        )[0]
        return output.float()

    def guided_call(self, hidden_states: Tensor, timestep: Tensor, cond: Cond, guidance: float,
                    scale: float) -> Tensor:
        """``transformer_call``, with real CFG ``v_u + scale (v_c - v_u)`` against the empty prompt when
        ``scale`` > 1 (one call on the doubled batch [uncond, cond])."""
        if scale <= 1.0:
            return self.transformer_call(hidden_states, timestep, cond, guidance)
        batch, device = hidden_states.shape[0], hidden_states.device
        t = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch)
        negative = {key: value.to(device).expand(batch, *value.shape[1:]) for key, value in self.negative_cond().items()}
        both = {key: torch.cat([negative[key], cond[key].to(device)]) for key in TEXT_KEYS}
        doubled = torch.cat([hidden_states, hidden_states])
        uncond, conditional = self.transformer_call(doubled, torch.cat([t, t]), both, guidance).chunk(2)
        return uncond + scale * (conditional - uncond)

    def predict(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """Velocity (fp32) at flow time sigma = ``timestep`` (B,); embedded guidance = model_cfg.guidance_scale,
        real CFG = model_cfg.true_cfg_scale (module docstring)."""
        return self.guided_call(latents, timestep, cond, float(self.model_cfg.guidance_scale), self.cfg_scale)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> videos (B, T, 3, H, W) in [0, 1], fp32 (images (B, 3, H, W) when T = 1).

        Divides by the VAE's own scaling factor; one clip at a time with the VAE's tiling enabled
        (a no-op below its 256-pixel tiles) to bound memory.
        """
        vae = self.component("vae")
        if hasattr(vae, "enable_tiling") and not getattr(vae, "use_tiling", True):
            vae.enable_tiling()
        x = latents.to(self.device, torch.float32) / self.vae_config["scaling_factor"]
        clips = [vae.decode(clip.to(self.dtype), return_dict=False)[0] for clip in x.split(1)]
        videos = (torch.cat(clips).float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)
        return videos[:, 0] if videos.shape[1] == 1 else videos

    def transformer_blocks(self) -> list[nn.Module]:
        """The double-stream then single-stream blocks (HunyuanVideo: 20 + 40)."""
        module = unwrap_module(self.transformer)
        return list(module.transformer_blocks) + list(module.single_transformer_blocks)


register_adapter("hunyuan", HunyuanAdapter.from_config)
