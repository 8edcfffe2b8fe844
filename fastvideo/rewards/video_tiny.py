"""Tiny random VideoAlign checkpoints in the published layout (tests and CPU debug runs).

``write_tiny_videoalign(root)`` writes

    root/Qwen2-VL-tiny/                 a Qwen2-VL base directory (config, safetensors, processor,
                                        tokenizer, Qwen2-VL's chat template)
    root/videoalign_ckpt/model_config.json
    root/videoalign_ckpt/checkpoint-7/model.pth   the LoRA-wrapped reward model's full state dict in
                                        the key layout of KwaiVGI/VideoReward (``base_model.model.`` +
                                        pre-v5 transformers names, ``lora_A/B.default``, ``rm_head``)

and returns the ``videoalign`` reward kwargs that load them. The backbone stored in the checkpoint is
a different random draw than the base directory's, so a loader that ignored the checkpoint would
score differently. The tokenizer is a WordPiece vocabulary over the words of the reward prompt
(characters as fallback) with Qwen2-VL's special tokens; the reward tokens are appended by the
loader, as VideoAlign does.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.rewards.videoalign import DETAILED_SPECIAL_PROMPT, REWARD_TOKENS

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "[UNK]")
TINY_LORA_RANK, TINY_LORA_ALPHA = 4, 8.0
TINY_MAX_PIXELS = 56 * 56
VIDEO_EMBEDDING_GAIN = 100.0
LORA_INIT_SCALE = 0.1  # small factors: large ones make attention one-hot and hide the video from the heads
TINY_INFERENCE_CONFIG = {"VQ_mean": 0.5, "VQ_std": 2.0, "MQ_mean": -0.25, "MQ_std": 0.5,
                         "TA_mean": 1.0, "TA_std": 4.0}
# Qwen2-VL-Instruct's chat template (system prompt added when absent; video/image placeholders).
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_qwen2vl_tokenizer() -> Any:
    """``PreTrainedTokenizerFast``: Qwen2-VL special tokens, the reward prompt's words, characters as sub-words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    text = DETAILED_SPECIAL_PROMPT + " system You are a helpful assistant"
    words = sorted(set(re.findall(r"\w+|[^\w\s]+", text)))
    chars = string.ascii_letters + string.digits + string.punctuation
    tokens = list(QWEN_SPECIAL_TOKENS) + words + list(chars) + ["##" + c for c in chars]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(QWEN_SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="[UNK]", padding_side="right",
                                        model_max_length=32768)
    tokenizer.chat_template = QWEN2VL_CHAT_TEMPLATE
    return tokenizer


def tiny_qwen2vl_config(vocab_size: int) -> Any:
    """Qwen2-VL at toy size: 2 text layers of width 32 (M-RoPE), a 1-block vision tower of width 16."""
    from transformers import Qwen2VLConfig

    ids = {token: i for i, token in enumerate(QWEN_SPECIAL_TOKENS)}
    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32768,
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2)
    return Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                         video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                         vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)


def _tiny_model(vocab_size: int, seed: int) -> nn.Module:
    from transformers import Qwen2VLForConditionalGeneration

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(tiny_qwen2vl_config(vocab_size)).eval()
    with torch.no_grad():  # O(1) video embeddings: at the init scale (0.02) the ~750 prompt tokens drown them
        model.model.visual.merger.mlp[2].weight.mul_(VIDEO_EMBEDDING_GAIN)
    return model


def _legacy_key(key: str) -> str:
    """transformers-5 module name -> the pre-v5 name the published checkpoint uses."""
    for new, old in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if key.startswith(new):
            return old + key.removeprefix(new)
    return key


def reward_checkpoint_state(model: nn.Module, seed: int) -> dict[str, Tensor]:
    """The PEFT-wrapped reward model's state dict (random non-zero LoRA factors and reward head)."""
    generator = torch.Generator().manual_seed(seed)
    linear = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    targets = {name for name in linear if name.startswith("model.language_model.layers.")}
    state: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        name = "base_model.model." + _legacy_key(module)
        if module in targets:
            state[f"{name}.base_layer.{leaf}"] = value.clone()
            if leaf == "weight":
                lora_a = torch.randn(TINY_LORA_RANK, value.shape[1], generator=generator)
                lora_b = torch.randn(value.shape[0], TINY_LORA_RANK, generator=generator)
                state[f"{name}.lora_A.default.weight"] = lora_a * LORA_INIT_SCALE
                state[f"{name}.lora_B.default.weight"] = lora_b * LORA_INIT_SCALE
        else:
            state[f"{name}.{leaf}"] = value.clone()
    hidden = model.config.text_config.hidden_size
    state["base_model.model.rm_head.weight"] = torch.randn(1, hidden, generator=generator) / hidden**0.5
    return state


def write_tiny_videoalign(root: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write a tiny Qwen2-VL base and a VideoAlign checkpoint under ``root``; returns the reward kwargs."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    root = Path(root)
    base_dir, ckpt_dir = root / "Qwen2-VL-tiny", root / "videoalign_ckpt"
    tokenizer = tiny_qwen2vl_tokenizer()
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN2VL_CHAT_TEMPLATE)
    _tiny_model(len(tokenizer), seed + 1).save_pretrained(base_dir, safe_serialization=True)
    processor.save_pretrained(base_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": list(REWARD_TOKENS)})
    reward_backbone = _tiny_model(len(tokenizer), seed)
    folder = ckpt_dir / "checkpoint-7"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(reward_checkpoint_state(reward_backbone, seed + 2), folder / "model.pth")
    tokenizer.save_pretrained(folder / "tokenizer")
    config = {
        "data_config": {"meta_data": None, "data_dir": None, "eval_dim": ["VQ", "MQ", "TA"], "fps": 2.0,
                        "num_frames": None, "max_frame_pixels": TINY_MAX_PIXELS, "sample_type": "uniform",
                        "prompt_template_type": "detailed_special"},
        "model_config": {"model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct", "output_dim": 1,
                         "use_special_tokens": True, "reward_token": "special"},
        "peft_lora_config": {"lora_enable": True, "vision_lora": False, "lora_r": TINY_LORA_RANK,
                             "lora_alpha": TINY_LORA_ALPHA, "lora_dropout": 0.05, "use_rslora": False,
                             "lora_namespan_exclude": ["lm_head", "rm_head", "embed_tokens", "visual"]},
        "inference_config": dict(TINY_INFERENCE_CONFIG),
    }
    (ckpt_dir / "model_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return {"checkpoint_dir": str(ckpt_dir), "base_model_path": str(base_dir), "min_pixels": 28 * 28,
            "device": "cpu"}
