"""Tiny random reward checkpoints in the published file layouts (for tests, benchmarks, debug runs).

Each ``write_tiny_*`` builds the real model class at a tiny size with a fixed seed, writes its
weights and configs the way the published release lays them out, and returns the kwargs that make
the production loader of that reward read them (``build_reward(name, **kwargs)``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch

TINY_OPEN_CLIP_NAME = "tiny-hps-test"
TINY_OPEN_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_IMAGE_SIZE = 32
TINY_WORDS = (
    "a",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "triangle",
    "cat",
    "dog",
    "photo",
    "of",
    "on",
    "the",
)


def _seeded(seed: int):
    """Context manager: fork the global RNG and seed it (model init uses the global generator)."""
    context = torch.random.fork_rng(devices=[])
    context.__enter__()
    torch.manual_seed(seed)
    return context


def register_tiny_open_clip_config(directory: str | Path) -> str:
    """Register ``TINY_OPEN_CLIP_CONFIG`` with open_clip (``add_model_config``); returns its name."""
    import open_clip

    config_path = Path(directory) / f"{TINY_OPEN_CLIP_NAME}.json"
    config_path.write_text(json.dumps(TINY_OPEN_CLIP_CONFIG))
    open_clip.add_model_config(config_path)
    return TINY_OPEN_CLIP_NAME


def write_tiny_hps(directory: str | Path, seed: int = 0) -> dict[str, Any]:
    """A tiny open_clip CLIP saved as ``HPS_v2.1_compressed.pt`` = {"state_dict": ...}."""
    import open_clip

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_name = register_tiny_open_clip_config(directory)
    rng = _seeded(seed)
    try:
        model = open_clip.create_model(model_name, pretrained=None)  # random weights on purpose
    finally:
        rng.__exit__(None, None, None)
    checkpoint = directory / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    return {"checkpoint": str(checkpoint), "model_name": model_name, "device": "cpu"}


def open_clip_bpe_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's BPE vocabulary and merges rebuilt from the file open_clip ships (works offline).

    Same construction as open_clip's SimpleTokenizer, with the start/end tokens named the way
    transformers' CLIPTokenizer names them.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [token + "</w>" for token in tokens]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, [tuple(merge.split()) for merge in merges]


def write_tiny_clip(directory: str | Path, seed: int = 0) -> dict[str, Any]:
    """A tiny transformers CLIPModel (``model/``) and a CLIP processor (``processor/``) with the real
    CLIP BPE tokenizer, both saved with ``save_pretrained`` (PickScore / CLIP score layouts)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    directory = Path(directory)
    model_dir, processor_dir = directory / "model", directory / "processor"
    vocab, merges = open_clip_bpe_vocabulary()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer.save_pretrained(processor_dir)
    CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    ).save_pretrained(processor_dir)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "eos_token_id": vocab["<|endoftext|>"],
            "bos_token_id": vocab["<|startoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    rng = _seeded(seed)
    try:
        CLIPModel(config).save_pretrained(model_dir)
    finally:
        rng.__exit__(None, None, None)
    return {"model_dir": str(model_dir), "processor_dir": str(processor_dir), "device": "cpu"}


def write_tiny_bert_vocab(directory: str | Path) -> Path:
    """A bert-style ``vocab.txt`` (specials, words, letters and ## letters) in ``directory``."""
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)]
    tokens = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *TINY_WORDS,
        *letters,
        *[f"##{c}" for c in letters],
    ]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = list(dict.fromkeys(tokens))
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": 512})
    )
    return directory


def write_tiny_image_reward(directory: str | Path, seed: int = 0) -> dict[str, Any]:
    """A tiny ImageReward in the published layout: ``ImageReward.pt`` (blip.visual_encoder.*,
    blip.text_encoder.*, blip.vision_proj/text_proj, mlp.layers.*), ``med_config.json`` and a
    bert-style tokenizer directory."""
    from fastvideo.rewards.image_reward import ImageRewardModel, ours_to_published

    directory = Path(directory)
    tokenizer_dir = write_tiny_bert_vocab(directory / "bert")
    num_tokens = len((tokenizer_dir / "vocab.txt").read_text().split())
    med = {
        "architectures": ["BertModel"],
        "hidden_act": "gelu",
        "hidden_size": 32,
        "intermediate_size": 64,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 64,
        "model_type": "bert",
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "pad_token_id": 0,
        "vocab_size": num_tokens + 2,
        "encoder_width": 32,
        "add_cross_attention": True,
        "initializer_range": 0.2,
    }
    # larger-than-default init so that random tiny weights give clearly image- and text-dependent scores
    vision = {
        "width": 32,
        "layers": 2,
        "heads": 2,
        "patch_size": 8,
        "image_size": TINY_IMAGE_SIZE,
        "initializer_range": 0.2,
    }
    rng = _seeded(seed)
    try:
        model = ImageRewardModel(med, vision)
    finally:
        rng.__exit__(None, None, None)
    published = {ours_to_published(key): value for key, value in model.state_dict().items()}
    published["blip.text_encoder.embeddings.position_ids"] = torch.arange(med["max_position_embeddings"])[
        None
    ]
    for name, width in (("vision_proj", vision["width"]), ("text_proj", med["hidden_size"])):
        published[f"blip.{name}.weight"] = torch.zeros(16, width)
        published[f"blip.{name}.bias"] = torch.zeros(16)
    torch.save(published, directory / "ImageReward.pt")
    (directory / "med_config.json").write_text(json.dumps(med, indent=2))
    return {
        "checkpoint": str(directory / "ImageReward.pt"),
        "med_config": str(directory / "med_config.json"),
        "tokenizer_dir": str(tokenizer_dir),
        "vision_heads": 2,
        "device": "cpu",
    }
