"""Prompt-embedding preprocessing and the embedding cache, on the tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fastvideo.models.tiny as tiny
from fastvideo.config import ModelConfig
from fastvideo.data.cache import EmbeddingCache, EmbeddingCacheNotFoundError, cache_key
from fastvideo.data.preprocess import preprocess
from fastvideo.distributed import DistEnv
from fastvideo.models import build_adapter
from tests.torchrun import torchrun

PROMPT_LINES = "a photo of a cat\n\na red car\n  a dog on the street \na photo of a cat\nthe moon\nblue sky\n"
PROMPTS = ["a photo of a cat", "a red car", "a dog on the street", "the moon", "blue sky"]


def tiny_cfg(name: str) -> ModelConfig:
    return ModelConfig(name=name, tiny=True, height=32, width=32, dtype="fp32")


@pytest.fixture
def prompt_file(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text(PROMPT_LINES, encoding="utf-8")
    return path


@pytest.fixture
def no_denoiser_or_vae(monkeypatch):
    """Building the denoiser or the VAE fails: preprocessing must never need them."""

    def refuse(*args, **kwargs):
        raise AssertionError("preprocessing loaded a denoiser or VAE")

    for builder in ("tiny_flux_transformer", "tiny_unet", "tiny_vae"):
        monkeypatch.setattr(tiny, builder, refuse)


def run_preprocess(name: str, prompt_file: Path, root: Path) -> tuple[Path, set[str]]:
    return preprocess(tiny_cfg(name), str(prompt_file), str(root), batch_size=2, env=DistEnv())


def test_flux_cache_round_trip(prompt_file, tmp_path, no_denoiser_or_vae):
    directory, loaded = run_preprocess("flux", prompt_file, tmp_path / "emb")
    assert loaded == {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"}
    assert directory == tmp_path / "emb" / "flux-tiny"
    assert sorted(p.name for p in directory.iterdir()) == ["index.json", "shard-0.safetensors"]
    index = json.loads((directory / "index.json").read_text())
    assert index["prompts"] == PROMPTS
    assert index["entries"] == [{"shard": "shard-0.safetensors", "row": i} for i in range(5)]
    assert index["model"] == {"name": "flux", "path": None, "tiny": True}
    assert index["embeddings"]["pooled_prompt_embeds"] == {"shape": [32], "dtype": "float32"}

    expected = build_adapter(tiny_cfg("flux"), "cpu").encode_prompts(PROMPTS)
    for in_memory in (True, False):
        cache = EmbeddingCache(tmp_path / "emb", tiny_cfg("flux"), in_memory=in_memory)
        assert cache.prompts == PROMPTS and len(cache) == 5
        rows = cache.get([4, 0, 2])
        assert set(rows) == {"prompt_embeds", "pooled_prompt_embeds"}
        for key, value in rows.items():
            torch.testing.assert_close(value, expected[key][[4, 0, 2]])
    assert cache.indices_of(["the moon", "a red car"]) == [3, 1]
    with pytest.raises(IndexError):
        cache.get([5])


def test_sd_cache_stores_the_negative_embedding(prompt_file, tmp_path, no_denoiser_or_vae):
    root = tmp_path / "emb"
    run_preprocess("sd", prompt_file, root)
    run_preprocess("flux", prompt_file, root)  # a second model under the same root does not collide
    assert sorted(p.name for p in root.iterdir()) == ["flux-tiny", "sd-tiny"]
    cache = EmbeddingCache(root / "sd-tiny", tiny_cfg("sd"))  # the cache dir itself also works
    reference = build_adapter(tiny_cfg("sd"), "cpu")
    torch.testing.assert_close(cache.get([1])["prompt_embeds"], reference.encode_prompts(["a red car"])["prompt_embeds"])
    torch.testing.assert_close(cache.extras["negative_prompt_embeds"], reference.negative_prompt_embeds)
    with pytest.raises(ValueError, match="holds 'sd' embeddings"):
        EmbeddingCache(root / "sd-tiny", tiny_cfg("flux"))


def test_rerun_replaces_the_previous_cache(prompt_file, tmp_path):
    root = tmp_path / "emb"
    run_preprocess("flux", prompt_file, root)
    (root / "flux-tiny" / "shard-1.safetensors").write_bytes(b"stale shard of an earlier 2-rank run")
    prompt_file.write_text("the moon\n", encoding="utf-8")
    run_preprocess("flux", prompt_file, root)
    assert not (root / "flux-tiny" / "shard-1.safetensors").exists()
    assert EmbeddingCache(root, tiny_cfg("flux")).prompts == ["the moon"]


def test_cache_key_depends_on_model_and_path():
    flux_a = ModelConfig(name="flux", path="./data/flux")
    assert cache_key(flux_a) == cache_key(ModelConfig(name="flux", path="data/flux"))
    assert cache_key(flux_a) != cache_key(ModelConfig(name="flux", path="./data/flux-schnell"))
    assert cache_key(flux_a).startswith("flux-")
    assert cache_key(ModelConfig(name="sd", path="./data/flux")).startswith("sd-")


def test_missing_cache_names_the_preprocessing_command(tmp_path):
    cfg = ModelConfig(name="flux", path="./data/flux")
    with pytest.raises(EmbeddingCacheNotFoundError) as info:
        EmbeddingCache(tmp_path / "emb", cfg, prompt_file="prompts.txt")
    message = str(info.value)
    assert cache_key(cfg) in message
    assert ("-m fastvideo.data.preprocess --model.name flux --model.path ./data/flux "
            f"--prompt_file prompts.txt --output_dir {tmp_path / 'emb'}") in message
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.slow
def test_two_rank_torchrun_equals_one_rank(prompt_file, tmp_path):
    one_rank_root, two_rank_root = tmp_path / "one", tmp_path / "two"
    run_preprocess("flux", prompt_file, one_rank_root)
    torchrun(2, ["-m", "fastvideo.data.preprocess", "--model.name", "flux", "--model.tiny", "true",
                 "--prompt_file", str(prompt_file), "--output_dir", str(two_rank_root), "--batch_size", "2"],
             outputs=(two_rank_root,), env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    directory = two_rank_root / "flux-tiny"
    assert sorted(p.name for p in directory.glob("shard-*")) == ["shard-0.safetensors", "shard-1.safetensors"]
    index = json.loads((directory / "index.json").read_text())
    one_index = json.loads((one_rank_root / "flux-tiny" / "index.json").read_text())
    assert index["prompts"] == one_index["prompts"] == PROMPTS
    assert index["embeddings"] == one_index["embeddings"]
    # prompt i lives on rank i % 2 at row i // 2
    assert index["entries"] == [{"shard": f"shard-{i % 2}.safetensors", "row": i // 2} for i in range(5)]
    one, two = EmbeddingCache(one_rank_root, tiny_cfg("flux")), EmbeddingCache(two_rank_root, tiny_cfg("flux"))
    everything = list(range(len(PROMPTS)))
    for key, value in one.get(everything).items():
        torch.testing.assert_close(two.get(everything)[key], value)
