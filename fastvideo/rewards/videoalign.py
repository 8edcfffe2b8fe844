"""VideoAlign (VideoReward): a Qwen2-VL-2B video reward with visual-quality, motion-quality and
text-alignment heads, scored in memory on decoded videos (B, T, 3, H, W) in [0, 1].

Model (as KwaiVGI/VideoAlign's ``Qwen2VLRewardModelBT``): the Qwen2-VL backbone (``Qwen2VLModel``) reads
the video and the ``detailed_special`` prompt, which contains three reward tokens
``<|VQ_reward|> <|MQ_reward|> <|TA_reward|>``; a bias-free linear head ``rm_head`` maps the last hidden
state at those tokens to the raw scores (output_dim 1: one scalar per token; output_dim 3: the
diagonal), or at the last token (``reward_token = "last"``).

    r_k = (raw_k - mean_k) / std_k       k in {VQ, MQ, TA}   (published constants: inference_config)
    reward = r_vq | r_mq | r_ta | sum_k w_k r_k   (kwarg ``head``: vq | mq | ta | weighted)

DanceGRPO trains on VQ for text-to-video and MQ for image-to-video.

Files (``checkpoint_dir``, KwaiVGI/VideoReward; ``base_model_path``, Qwen/Qwen2-VL-2B-Instruct)::

    videoalign_ckpt/model_config.json              data_config, model_config, peft_lora_config, inference_config
    videoalign_ckpt/checkpoint-<step>/model.pth    full state dict of the LoRA-wrapped reward model, or
    videoalign_ckpt/checkpoint-<step>/adapter_model.safetensors + non_lora_state_dict.pth
    Qwen2-VL-2B-Instruct/                          config, weights, processor, tokenizer, chat template

The LoRA factors are merged into the backbone weights at load time (W + alpha/r * B A), so no peft
wrapper runs at scoring time. Checkpoint keys of older transformers layouts are mapped to the current
``Qwen2VLModel`` names; a key that maps nowhere, or a backbone weight the checkpoint lacks (full
variant), raises.

Frames are sampled as qwen-vl-utils does for a video at ``source_fps`` read at the config's ``fps``
(2): n = round2(clamp(T / source_fps * fps, 4, T)) uniformly spaced frames; each frame is quantised to
8 bits (the reference reads an encoded video), resized to Qwen2-VL's 28-pixel grid within
[min_pixels, max_pixels] (bicubic, antialiased, 8-bit again) and handed to the Qwen2-VL processor.
The reference writes MP4 files and decodes them; we never touch the disk (no codec loss).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fastvideo.rewards.base import (
    Reward,
    RewardWeightsError,
    load_checkpoint,
    register_reward,
    require_path,
    resolve_dtype,
)

VIDEOALIGN_DOWNLOAD = "hf download KwaiVGI/VideoReward --local-dir {path}"
QWEN2VL_DOWNLOAD = "hf download Qwen/Qwen2-VL-2B-Instruct --local-dir {path}"
REWARD_TOKENS = ("<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>")
HEADS = ("vq", "mq", "ta")
IMAGE_FACTOR, FRAME_FACTOR, MIN_FRAMES = 28, 2, 4
VIDEO_MIN_PIXELS = 128 * 28 * 28  # qwen-vl-utils
# VideoAlign's "detailed_special" prompt, verbatim: it is model input (the reward head reads its tokens).
DETAILED_SPECIAL_PROMPT = """
You are tasked with evaluating a generated video based on three distinct criteria: Visual Quality, Motion Quality, and Text Alignment. Please provide a rating from 0 to 10 for each of the three categories, with 0 being the worst and 10 being the best. Each evaluation should be independent of the others.

**Visual Quality:**  
Evaluate the overall visual quality of the video, with a focus on static factors. The following sub-dimensions should be considered:
- **Reasonableness:** The video should not contain any significant biological or logical errors, such as abnormal body structures or nonsensical environmental setups.
- **Clarity:** Evaluate the sharpness and visibility of the video. The image should be clear and easy to interpret, with no blurring or indistinct areas.
- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).
- **Aesthetic and Creativity:** Assess the artistic aspects of the video, including the color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.
- **Safety:** The video should not contain harmful or inappropriate content, such as political, violent, or adult material. If such content is present, the image quality and satisfaction score should be the lowest possible. 

Please provide the ratings of Visual Quality: <|VQ_reward|>
END

**Motion Quality:**  
Assess the dynamic aspects of the video, with a focus on dynamic factors. Consider the following sub-dimensions:
- **Stability:** Evaluate the continuity and stability between frames. There should be no sudden, unnatural jumps, and the video should maintain stable attributes (e.g., no fluctuating colors, textures, or missing body parts).
- **Naturalness:** The movement should align with physical laws and be realistic. For example, clothing should flow naturally with motion, and facial expressions should change appropriately (e.g., blinking, mouth movements).
- **Aesthetic Quality:** The movement should be smooth and fluid. The transitions between different motions or camera angles should be seamless, and the overall dynamic feel should be visually pleasing.
- **Fusion:** Ensure that elements in motion (e.g., edges of the subject, hair, clothing) blend naturally with the background, without obvious artifacts or the feeling of cut-and-paste effects.
- **Clarity of Motion:** The video should be clear and smooth in motion. Pay attention to any areas where the video might have blurry or unsteady sections that hinder visual continuity.
- **Amplitude:** If the video is largely static or has little movement, assign a low score for motion quality.

Please provide the ratings of Motion Quality: <|MQ_reward|>
END

**Text Alignment:**  
Assess how well the video matches the textual prompt across the following sub-dimensions:
- **Subject Relevance** Evaluate how accurately the subject(s) in the video (e.g., person, animal, object) align with the textual description. The subject should match the description in terms of number, appearance, and behavior.
- **Motion Relevance:** Evaluate if the dynamic actions (e.g., gestures, posture, facial expressions like talking or blinking) align with the described prompt. The motion should match the prompt in terms of type, scale, and direction.
- **Environment Relevance:** Assess whether the background and scene fit the prompt. This includes checking if real-world locations or scenes are accurately represented, though some stylistic adaptation is acceptable.  
- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well the video adheres to this style.
- **Camera Movement Relevance:** Check if the camera movements (e.g., following the subject, focus shifts) are consistent with the expected behavior from the prompt.

Textual prompt - {text_prompt}
Please provide the ratings of Text Alignment: <|TA_reward|>
END
"""  # noqa: W291 (trailing spaces are part of the published prompt)


# --- frames -----------------------------------------------------------------------------------------


def sample_frame_indices(num_frames: int, source_fps: float, fps: float, fixed: int | None = None) -> Tensor:
    """qwen-vl-utils' uniform sampling: a multiple of 2 frames, at least 4 (or all, if fewer), ~``fps``."""
    if fixed is None:
        low = math.ceil(MIN_FRAMES / FRAME_FACTOR) * FRAME_FACTOR
        high = max(num_frames // FRAME_FACTOR * FRAME_FACTOR, FRAME_FACTOR)
        wanted = min(max(num_frames / source_fps * fps, low), high)
    else:
        wanted = fixed
    count = max(round(wanted / FRAME_FACTOR) * FRAME_FACTOR, FRAME_FACTOR)
    return torch.linspace(0, num_frames - 1, count).round().long()


def frame_size(height: int, width: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's ``smart_resize``: multiples of 28, aspect kept, pixels within [min_pixels, max_pixels]."""
    new_h = max(IMAGE_FACTOR, round(height / IMAGE_FACTOR) * IMAGE_FACTOR)
    new_w = max(IMAGE_FACTOR, round(width / IMAGE_FACTOR) * IMAGE_FACTOR)
    if new_h * new_w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        new_h = max(IMAGE_FACTOR, math.floor(height / beta / IMAGE_FACTOR) * IMAGE_FACTOR)
        new_w = max(IMAGE_FACTOR, math.floor(width / beta / IMAGE_FACTOR) * IMAGE_FACTOR)
    elif new_h * new_w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        new_h = math.ceil(height * beta / IMAGE_FACTOR) * IMAGE_FACTOR
        new_w = math.ceil(width * beta / IMAGE_FACTOR) * IMAGE_FACTOR
    return new_h, new_w


def prepare_frames(video: Tensor, indices: Tensor, size: tuple[int, int]) -> Tensor:
    """(T, 3, H, W) in [0, 1] -> sampled, 8-bit, resized (bicubic, antialiased) frames in [0, 1]."""
    frames = (video[indices.to(video.device)].float().clamp(0, 1) * 255).round()
    if tuple(frames.shape[-2:]) != size:
        frames = F.interpolate(frames, size=size, mode="bicubic", antialias=True, align_corners=False)
    return frames.round().clamp(0, 255) / 255


# --- checkpoint ---------------------------------------------------------------------------------------

_LORA = re.compile(r"^(?P<module>.+)\.lora_(?P<factor>[AB])(\.[^.]+)?\.weight$")


def backbone_key(key: str) -> str | None:
    """A checkpoint key -> ``VideoAlignModel`` name (``backbone.*``, ``rm_head.*``; None: drop the LM head)."""
    key = key.removeprefix("base_model.model.")
    renames = (("model.visual.", "backbone.visual."), ("model.language_model.", "backbone.language_model."),
               ("visual.", "backbone.visual."), ("model.", "backbone.language_model."), ("rm_head.", "rm_head."))
    for old, new in renames:
        if key.startswith(old):
            return new + key.removeprefix(old)
    return None if key.startswith("lm_head.") else key


def merge_lora(state: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """Fold PEFT LoRA factors into their base weights: W <- W + scale * B @ A (keys lose ``base_layer``)."""
    factors: dict[str, dict[str, Tensor]] = {}
    merged: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _LORA.match(key)
        if match:
            factors.setdefault(match["module"], {})[match["factor"]] = value
        elif "lora_embedding_" in key or ".original_module." in key:
            if "lora_embedding_" in key:
                raise RewardWeightsError(f"LoRA on embeddings is not supported (checkpoint key {key})")
        else:
            merged[key.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")] = value
    for module, pair in factors.items():
        weight_key = module + ".weight"
        if set(pair) != {"A", "B"} or weight_key not in merged:
            raise RewardWeightsError(f"incomplete LoRA factors for {module} in the VideoAlign checkpoint")
        delta = pair["B"].float() @ pair["A"].float()
        merged[weight_key] = (merged[weight_key].float() + scale * delta).to(merged[weight_key].dtype)
    return merged


def find_checkpoint(checkpoint_dir: Path, step: int | None) -> Path:
    """``checkpoint-<step>`` (the highest step when ``step`` is None) inside ``checkpoint_dir``."""
    found = {int(p.name.split("-")[-1]): p for p in checkpoint_dir.glob("checkpoint-*") if p.name[11:].isdigit()}
    command = VIDEOALIGN_DOWNLOAD.format(path=checkpoint_dir)
    if not found:
        require_path(checkpoint_dir / "checkpoint-<step>", "VideoAlign checkpoint folder", command)
    if step is not None and step not in found:
        require_path(checkpoint_dir / f"checkpoint-{step}", "VideoAlign checkpoint folder", command)
    return found[step if step is not None else max(found)]


def read_checkpoint_state(folder: Path, lora_cfg: dict[str, Any], command: str) -> tuple[dict[str, Tensor], bool]:
    """Merged reward-model state dict (backbone + rm_head names) and whether it holds the full model."""
    full = folder / "model.pth"
    if full.exists():
        raw = load_checkpoint(full, "VideoAlign checkpoint", command)
    else:
        raw = load_checkpoint(folder / "adapter_model.safetensors", "VideoAlign LoRA weights", command)
        raw.update(load_checkpoint(folder / "non_lora_state_dict.pth", "VideoAlign non-LoRA weights", command))
    rank, alpha = float(lora_cfg.get("lora_r", 1)), float(lora_cfg.get("lora_alpha", 1))
    scale = alpha / (math.sqrt(rank) if lora_cfg.get("use_rslora") else rank)
    state: dict[str, Tensor] = {}
    for key, value in merge_lora(raw, scale).items():
        name = backbone_key(key)
        if name is not None:
            state[name] = value
    return state, full.exists()


class VideoAlignModel(nn.Module):
    """Qwen2-VL backbone + bias-free linear reward head pooled at the reward tokens (or the last token)."""

    def __init__(self, backbone: nn.Module, output_dim: int, reward_token: str, token_ids: list[int]):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.text_config.hidden_size
        self.rm_head = nn.Linear(hidden, output_dim, bias=False)
        self.reward_token, self.token_ids = reward_token, token_ids

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Raw (B, 3) scores: VQ, MQ, TA."""
        hidden = self.backbone(**batch, use_cache=False).last_hidden_state
        scores = self.rm_head(hidden.to(self.rm_head.weight.dtype)).float()
        ids, rows = batch["input_ids"], torch.arange(hidden.shape[0], device=hidden.device)
        if self.reward_token == "last":
            return scores[rows, batch["attention_mask"].sum(1) - 1][:, :3]
        pooled = []
        for token_id in self.token_ids:
            hits = ids == token_id
            if not bool((hits.sum(1) == 1).all()):
                counts = hits.sum(1).tolist()
                raise RuntimeError(f"reward token {token_id} must occur once per sample, got {counts}")
            pooled.append(scores[rows, hits.int().argmax(1)])
        stacked = torch.stack(pooled, dim=1)  # (B, 3 tokens, output_dim)
        return stacked[..., 0] if stacked.shape[-1] == 1 else stacked.diagonal(dim1=1, dim2=2)


def _read_model_config(checkpoint_dir: Path) -> dict[str, Any]:
    path = require_path(checkpoint_dir / "model_config.json", "VideoAlign model_config.json",
                        VIDEOALIGN_DOWNLOAD.format(path=checkpoint_dir))
    config = json.loads(path.read_text(encoding="utf-8"))
    for section in ("data_config", "model_config", "peft_lora_config"):
        if not isinstance(config.get(section), dict):
            raise RewardWeightsError(f"{path} has no '{section}' section: is it VideoAlign's model_config.json?")
    return config


def load_videoalign(checkpoint_dir: str | Path, base_model_path: str | Path, step: int | None,
                    dtype: torch.dtype) -> tuple[VideoAlignModel, Any, dict[str, Any]]:
    """(reward model, Qwen2-VL processor with the reward tokens, model_config.json) on the CPU."""
    from transformers import AutoProcessor, Qwen2VLModel

    checkpoint_dir, base = Path(checkpoint_dir), Path(base_model_path)
    config = _read_model_config(checkpoint_dir)
    folder = find_checkpoint(checkpoint_dir, step)
    require_path(base / "config.json", "Qwen2-VL base model", QWEN2VL_DOWNLOAD.format(path=base))
    model_cfg = config["model_config"]
    processor = AutoProcessor.from_pretrained(str(base))
    processor.tokenizer.padding_side = "right"
    if model_cfg.get("use_special_tokens"):
        processor.tokenizer.add_special_tokens({"additional_special_tokens": list(REWARD_TOKENS)})
    token_ids = [int(i) for i in processor.tokenizer.convert_tokens_to_ids(list(REWARD_TOKENS))]
    backbone = Qwen2VLModel.from_pretrained(str(base), dtype=dtype, attn_implementation="sdpa")
    backbone.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)
    reward_token = model_cfg.get("reward_token", "last")
    if reward_token not in ("special", "last"):
        raise RewardWeightsError(f"unsupported VideoAlign reward_token {reward_token!r} (special or last)")
    model = VideoAlignModel(backbone, int(model_cfg.get("output_dim", 1)), reward_token, token_ids)
    command = VIDEOALIGN_DOWNLOAD.format(path=checkpoint_dir)
    state, full = read_checkpoint_state(folder, config["peft_lora_config"], command)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or "rm_head.weight" in missing or (full and missing):
        raise RewardWeightsError(f"VideoAlign checkpoint {folder} does not fit the model: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}")
    return model.to(dtype).eval().requires_grad_(False), processor, config


def _per_head(values: Any, name: str) -> Tensor:
    """{vq, mq, ta} (any case) or a 3-list -> tensor (3,) in VQ, MQ, TA order."""
    if isinstance(values, dict):
        lowered = {str(k).lower(): float(v) for k, v in values.items()}
        if set(lowered) != set(HEADS):
            raise ValueError(f"videoalign {name} needs exactly the keys {HEADS}, got {sorted(lowered)}")
        return torch.tensor([lowered[h] for h in HEADS])
    if values is None or any(value is None for value in values):
        raise ValueError(f"videoalign {name} needs 3 values (VQ, MQ, TA), got {values!r}")
    tensor = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if tensor.numel() != 3:
        raise ValueError(f"videoalign {name} needs 3 values (VQ, MQ, TA), got {values!r}")
    return tensor


@register_reward("videoalign")
class VideoAlignReward(Reward):
    """VideoAlign score of videos (B, T, 3, H, W) in [0, 1] (see the module docstring).

    kwargs: ``checkpoint_dir`` (./videoalign_ckpt), ``base_model_path`` (./Qwen2-VL-2B-Instruct),
    ``head`` (vq | mq | ta | weighted), ``weights`` ({vq, mq, ta} for "weighted"; default 1 each =
    VideoAlign's Overall), ``normalize`` (True), ``mean`` / ``std`` (per head; default the checkpoint's
    inference_config), ``source_fps`` (24, the fps the videos are played at), ``fps`` / ``num_frames``
    (frame sampling; default the checkpoint's data_config), ``min_pixels`` / ``max_pixels`` (per frame),
    ``checkpoint_step`` (latest), ``dtype`` (float32), ``device``, ``batch_size`` (2).
    """

    input_kind = "video"

    def __init__(self, checkpoint_dir: str = "./videoalign_ckpt", base_model_path: str = "./Qwen2-VL-2B-Instruct",
                 head: str = "vq", weights: Any = None, normalize: bool = True, mean: Any = None, std: Any = None,
                 source_fps: float = 24.0, fps: float | None = None, num_frames: int | None = None,
                 min_pixels: int = VIDEO_MIN_PIXELS, max_pixels: int | None = None,
                 checkpoint_step: int | None = None,
                 dtype: str = "float32", device: str | torch.device | None = None, batch_size: int = 2) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if head not in (*HEADS, "weighted"):
            raise ValueError(f"videoalign head must be one of {(*HEADS, 'weighted')}, got {head!r}")
        self.head, self.normalize = head, bool(normalize)
        self.dtype = resolve_dtype(dtype)
        model, self.processor, config = load_videoalign(checkpoint_dir, base_model_path, checkpoint_step,
                                                        self.dtype)
        self.model = model.to(self.device)
        data_cfg, published = config["data_config"], config.get("inference_config") or {}
        self.source_fps, self.fps = float(source_fps), float(fps or data_cfg.get("fps") or 2.0)
        self.num_frames = num_frames if num_frames is not None else data_cfg.get("num_frames")
        self.min_pixels = int(min_pixels)
        self.max_pixels = int(max_pixels or data_cfg.get("max_frame_pixels") or 768 * 28 * 28)
        self.weights = _per_head(weights if weights is not None else [1.0, 1.0, 1.0], "weights")
        self.mean = self.std = None
        if self.normalize:
            if mean is None and std is None and not published:
                raise ValueError("videoalign: normalize=True but the checkpoint has no inference_config; pass "
                                 "mean and std (per head) or normalize=False")
            published_mean = [published.get(f"{h.upper()}_mean") for h in HEADS]
            published_std = [published.get(f"{h.upper()}_std") for h in HEADS]
            self.mean = _per_head(mean if mean is not None else published_mean, "mean")
            self.std = _per_head(std if std is not None else published_std, "std")

    def frames(self, video: Tensor) -> Tensor:
        """(T, 3, H, W) in [0, 1] -> the frames the reward model sees (CPU, float in [0, 1])."""
        indices = sample_frame_indices(video.shape[0], self.source_fps, self.fps, self.num_frames)
        size = frame_size(video.shape[-2], video.shape[-1], self.min_pixels, self.max_pixels)
        return prepare_frames(video, indices, size).cpu()

    def raw_scores(self, videos: Tensor, prompts: list[str]) -> Tensor:
        """Unnormalised (B, 3) scores VQ, MQ, TA of videos already on ``self.device``."""
        questions = [DETAILED_SPECIAL_PROMPT.replace("{text_prompt}", prompt) for prompt in prompts]
        chats = [[{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
                 for question in questions]
        texts = self.processor.apply_chat_template(chats, tokenize=False, add_generation_prompt=True)
        batch = self.processor(text=texts, videos=[self.frames(video) for video in videos], padding=True,
                               return_tensors="pt", videos_kwargs={"do_rescale": False, "do_resize": False,
                                                                   "cap_pixels_per_frame": False})
        inputs = {key: batch[key].to(self.device) for key in
                  ("input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw", "mm_token_type_ids")
                  if key in batch}
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.dtype)
        return self.model(inputs).float().cpu()

    def combine(self, raw: Tensor) -> Tensor:
        """(B, 3) raw scores -> (B,) reward of the configured head (normalised per head first)."""
        scores = (raw - self.mean) / self.std if self.normalize else raw
        if self.head == "weighted":
            return scores @ self.weights
        return scores[:, HEADS.index(self.head)]

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        scores = self.combine(self.raw_scores(images, prompts))
        if not bool(torch.isfinite(scores).all()):
            raise FloatingPointError(f"videoalign produced non-finite scores: {scores.tolist()}")
        return scores
