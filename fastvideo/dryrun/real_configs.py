"""Architecture configs of the public checkpoints the real recipes train, without any weights.

Each entry reproduces the ``config.json`` / ``scheduler_config.json`` / ``model_index.json`` values of a
public diffusers repository (keys the classes would otherwise default are left out) and the tokenizer's
``model_max_length``, so that ``write_checkpoint_dir`` materialises a directory in the layout
``directory_source`` reads, a few KB in all. The dry run (``fastvideo.dryrun``) builds every component
from it on fake tensors. Where a value could not be checked against the public file it says so.

Point ``model.path`` at a real download (``hf download REPO --include "*.json"`` is enough) to dry-run
against the files themselves instead.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

_CLIP_L_TEXT = {  # openai/clip-vit-large-patch14, text tower (FLUX text_encoder, Hunyuan text_encoder_2)
    "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
    "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
    "max_position_embeddings": 77, "vocab_size": 49408, "projection_dim": 768, "hidden_act": "quick_gelu",
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
_T5_XXL = {  # google/t5-v1_1-xxl encoder (FLUX.1 text_encoder_2)
    "architectures": ["T5EncoderModel"], "model_type": "t5", "d_model": 4096, "d_ff": 10240, "d_kv": 64,
    "num_heads": 64, "num_layers": 24, "vocab_size": 32128, "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "is_encoder_decoder": True, "tie_word_embeddings": False, "dense_act_fn": "gelu_new",
}
_LLAMA3_8B = {  # xtuner/llava-llama-3-8b-v1_1 language model (HunyuanVideo text_encoder)
    "architectures": ["LlamaModel"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32, "vocab_size": 128320,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
}
_FLOW_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000}
_HUNYUAN_TRANSFORMER = {
    "_class_name": "HunyuanVideoTransformer3DModel", "attention_head_dim": 128, "guidance_embeds": True,
    "in_channels": 16, "out_channels": 16, "mlp_ratio": 4.0, "num_attention_heads": 24, "num_layers": 20,
    "num_refiner_layers": 2, "num_single_layers": 40, "patch_size": 2, "patch_size_t": 1,
    "pooled_projection_dim": 768, "qk_norm": "rms_norm", "rope_axes_dim": [16, 56, 56], "rope_theta": 256.0,
    "text_embed_dim": 4096,
}
_HUNYUAN_VAE = {  # AutoencoderKLHunyuanVideo's defaults are the public config
    "_class_name": "AutoencoderKLHunyuanVideo", "latent_channels": 16, "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2, "spatial_compression_ratio": 8, "temporal_compression_ratio": 4,
    "scaling_factor": 0.476986,
}


def _hunyuan(transformer: dict[str, Any], pipeline: str) -> dict[str, Any]:
    return {
        "model_index.json": {"_class_name": pipeline},
        "transformer/config.json": transformer,
        "vae/config.json": _HUNYUAN_VAE,
        "text_encoder/config.json": _LLAMA3_8B,
        "text_encoder_2/config.json": _CLIP_L_TEXT,
        "tokenizer/tokenizer_config.json": {"model_max_length": 131072},
        "tokenizer_2/tokenizer_config.json": {"model_max_length": 77},
        "scheduler/scheduler_config.json": {**_FLOW_SCHEDULER, "shift": 7.0},
    }


CHECKPOINTS: dict[str, dict[str, Any]] = {
    # black-forest-labs/FLUX.1-dev
    "flux": {
        "model_index.json": {"_class_name": "FluxPipeline"},
        "transformer/config.json": {
            "_class_name": "FluxTransformer2DModel", "attention_head_dim": 128, "axes_dims_rope": [16, 56, 56],
            "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
            "num_layers": 19, "num_single_layers": 38, "patch_size": 1, "pooled_projection_dim": 768,
        },
        "vae/config.json": {
            "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 16,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
            "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
            "sample_size": 1024, "scaling_factor": 0.3611, "shift_factor": 0.1159,
            "use_quant_conv": False, "use_post_quant_conv": False, "mid_block_add_attention": True,
        },
        "text_encoder/config.json": _CLIP_L_TEXT,
        "text_encoder_2/config.json": _T5_XXL,
        "tokenizer/tokenizer_config.json": {"model_max_length": 77},
        "tokenizer_2/tokenizer_config.json": {"model_max_length": 512},
        "scheduler/scheduler_config.json": {
            **_FLOW_SCHEDULER, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
            "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096,
        },
    },
    # CompVis/stable-diffusion-v1-4
    "sd": {
        "model_index.json": {"_class_name": "StableDiffusionPipeline"},
        "unet/config.json": {
            "_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "out_channels": 4,
            "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "cross_attention_dim": 768,
            "attention_head_dim": 8, "norm_num_groups": 32,
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        },
        "vae/config.json": {
            "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
            "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
            "sample_size": 512, "scaling_factor": 0.18215,
        },
        "text_encoder/config.json": _CLIP_L_TEXT,
        "tokenizer/tokenizer_config.json": {"model_max_length": 77},
        "scheduler/scheduler_config.json": {
            "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
            "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False,
        },
    },
    # hunyuanvideo-community/HunyuanVideo (T2V; the T2I recipe is the same model at num_frames 1)
    "hunyuan": _hunyuan(_HUNYUAN_TRANSFORMER, "HunyuanVideoPipeline"),
    # Skywork/SkyReels-V1-Hunyuan-I2V transformer (image latents concatenated on channels: in_channels 32)
    # inside the HunyuanVideo pipeline directory, as diffusers' HunyuanSkyreelsImageToVideoPipeline loads it
    "skyreels_i2v": _hunyuan({**_HUNYUAN_TRANSFORMER, "in_channels": 32},
                             "HunyuanSkyreelsImageToVideoPipeline"),
    # stabilityai/stable-diffusion-3.5-medium
    "sd3": {
        "model_index.json": {"_class_name": "StableDiffusion3Pipeline"},
        "transformer/config.json": {
            "_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": 2, "in_channels": 16,
            "out_channels": 16, "num_layers": 24, "attention_head_dim": 64, "num_attention_heads": 24,
            "joint_attention_dim": 4096, "caption_projection_dim": 1536, "pooled_projection_dim": 2048,
            "pos_embed_max_size": 384, "dual_attention_layers": list(range(13)), "qk_norm": "rms_norm",
        },
        "vae/config.json": {
            "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 16,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
            "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
            "sample_size": 1024, "scaling_factor": 1.5305, "shift_factor": 0.0609,
            "use_quant_conv": False, "use_post_quant_conv": False,
        },
        "text_encoder/config.json": {**_CLIP_L_TEXT, "architectures": ["CLIPTextModelWithProjection"]},
        "text_encoder_2/config.json": {  # CLIP-G (laion CLIP-ViT-bigG-14) text tower
            **_CLIP_L_TEXT, "architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280,
            "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32, "projection_dim": 1280,
            "hidden_act": "gelu",
        },
        "text_encoder_3/config.json": _T5_XXL,
        "tokenizer/tokenizer_config.json": {"model_max_length": 77},
        "tokenizer_2/tokenizer_config.json": {"model_max_length": 77},
        "tokenizer_3/tokenizer_config.json": {"model_max_length": 512},
        "scheduler/scheduler_config.json": {**_FLOW_SCHEDULER, "shift": 3.0},
    },
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers (the VAE's latents_mean / latents_std are AutoencoderKLWan's defaults)
    "wan": {
        "model_index.json": {"_class_name": "WanPipeline"},
        "transformer/config.json": {
            "_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2], "num_attention_heads": 12,
            "attention_head_dim": 128, "in_channels": 16, "out_channels": 16, "text_dim": 4096, "freq_dim": 256,
            "ffn_dim": 8960, "num_layers": 30, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6, "rope_max_seq_len": 1024,
        },
        "vae/config.json": {"_class_name": "AutoencoderKLWan", "base_dim": 96, "z_dim": 16},
        "text_encoder/config.json": {**_T5_XXL, "architectures": ["UMT5EncoderModel"], "model_type": "umt5",
                                     "vocab_size": 256384},
        "tokenizer/tokenizer_config.json": {"model_max_length": 512},
        "scheduler/scheduler_config.json": {"_class_name": "UniPCMultistepScheduler", "flow_shift": 3.0,
                                            "prediction_type": "flow_prediction", "use_flow_sigmas": True},
    },
    # Qwen/Qwen-Image (the VAE's latents_mean / latents_std are AutoencoderKLQwenImage's defaults)
    "qwen_image": {
        "model_index.json": {"_class_name": "QwenImagePipeline"},
        "transformer/config.json": {
            "_class_name": "QwenImageTransformer2DModel", "patch_size": 2, "in_channels": 64, "out_channels": 16,
            "num_layers": 60, "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 3584,
            "guidance_embeds": False, "axes_dims_rope": [16, 56, 56],
        },
        "vae/config.json": {"_class_name": "AutoencoderKLQwenImage", "base_dim": 96, "z_dim": 16},
        "text_encoder/config.json": {  # Qwen2.5-VL-7B-Instruct
            "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
            "text_config": {"model_type": "qwen2_5_vl_text", "hidden_size": 3584, "intermediate_size": 18944,
                            "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                            "vocab_size": 152064, "rope_theta": 1000000.0, "max_position_embeddings": 128000,
                            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}},
            "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                              "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
                              "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]},
        },
        "tokenizer/tokenizer_config.json": {"model_max_length": 131072},
        "scheduler/scheduler_config.json": {
            **_FLOW_SCHEDULER, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 0.9,
            "base_image_seq_len": 256, "max_image_seq_len": 8192, "shift_terminal": 0.02,
        },
    },
}
"""Model name (``model.name``) -> relative file path -> JSON content."""

REPO_IDS = {
    "flux": "black-forest-labs/FLUX.1-dev", "sd": "CompVis/stable-diffusion-v1-4",
    "hunyuan": "hunyuanvideo-community/HunyuanVideo", "skyreels_i2v": "Skywork/SkyReels-V1-Hunyuan-I2V",
    "sd3": "stabilityai/stable-diffusion-3.5-medium", "wan": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "qwen_image": "Qwen/Qwen-Image",
}
"""Where each entry's values come from."""


def write_checkpoint_dir(model_name: str, root: str | Path) -> Path:
    """Write the config files of ``model_name``'s public checkpoint under ``root`` (no weights)."""
    if model_name not in CHECKPOINTS:
        raise KeyError(f"no shipped real config for model {model_name!r}; known: {', '.join(CHECKPOINTS)}")
    root = Path(root)
    for relative, content in CHECKPOINTS[model_name].items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(with_class_defaults(content), indent=2) + "\n")
    return root


def with_class_defaults(content: dict[str, Any]) -> dict[str, Any]:
    """A diffusers model config completed with its class's default arguments (adapters read the JSON itself,
    e.g. a video VAE's ``latents_mean``, and diffusers' ``load_config`` does not add defaults)."""
    import diffusers

    name = content.get("_class_name")
    if not name or name.endswith(("Pipeline", "Scheduler")) or not hasattr(diffusers, name):
        return content  # pipelines, schedulers and transformers configs (which fill their own defaults)
    signature = inspect.signature(getattr(diffusers, name).__init__)
    defaults = {key: _jsonable(p.default) for key, p in signature.parameters.items()
                if p.default is not inspect.Parameter.empty and key != "self"}
    return {**defaults, **content}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
