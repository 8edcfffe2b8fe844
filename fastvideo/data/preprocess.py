"""Encode a prompt file once into a prompt-embedding cache, on as many ranks as ``torchrun`` starts.

    torchrun --nproc_per_node=8 -m fastvideo.data.preprocess --model.name flux --model.path ./data/flux \\
        --prompt_file prompts.txt --output_dir ./data/rl_embeddings

Rank r encodes prompts r, r + W, r + 2W, ... (W ranks) in batches and writes
``<output_dir>/<cache_key>/shard-<r>.safetensors``; after a barrier rank 0 writes ``index.json``
(see ``fastvideo.data.cache``). Only the text encoders and tokenizers are loaded, never the
denoiser or the VAE. A run without torchrun is rank 0 of 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastvideo.config import ModelConfig
from fastvideo.data.cache import (
    EXTRAS_FILE,
    FORMAT_VERSION,
    INDEX_FILE,
    PROMPT_INDEX_KEY,
    cache_dir,
    shard_name,
)
from fastvideo.data.prompts import read_prompt_file
from fastvideo.distributed import DistEnv, barrier, destroy_distributed, init_distributed
from fastvideo.models import ModelAdapter, build_adapter


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fastvideo.data.preprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model.name", dest="model_name", default="flux",
                        help="adapter: flux | sd | sd3 | qwen_image | hunyuan | wan | skyreels_i2v (model.name)")
    parser.add_argument("--model.path", dest="model_path", default=None, help="local diffusers directory")
    parser.add_argument("--model.tiny", dest="model_tiny", type=_bool, default=False,
                        help="use the tiny random model (tests)")
    parser.add_argument("--model.dtype", dest="model_dtype", default="auto",
                        help="text-encoder dtype: auto | fp32 | bf16 | fp16 (auto = bf16 on GPU)")
    parser.add_argument("--prompt_file", required=True, help="one prompt per line")
    parser.add_argument("--output_dir", default="./data/rl_embeddings", help="root of the caches")
    parser.add_argument("--batch_size", type=int, default=8, help="prompts per text-encoder call")
    return parser.parse_args(argv)


def encode_prompts(adapter: ModelAdapter, prompts: list[str], batch_size: int,
                   show_progress: bool) -> dict[str, Tensor]:
    """Encode ``prompts`` in batches; CPU tensors, batch-first (empty dict when no prompts)."""
    from tqdm import tqdm

    batches: list[dict[str, Tensor]] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="encoding prompts", disable=not show_progress):
        encoded = adapter.encode_prompts(prompts[start: start + batch_size])
        batches.append({key: value.detach().cpu().contiguous() for key, value in encoded.items()})
    if not batches:
        return {}
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _clear_previous(directory: Path) -> None:
    """Remove an earlier cache in ``directory`` (its index first, so it never looks complete)."""
    for path in [directory / INDEX_FILE, directory / EXTRAS_FILE, *directory.glob("shard-*.safetensors")]:
        path.unlink(missing_ok=True)


def _shard_summary(directory: Path, world_size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(entries by global prompt position, {key: shape/dtype per prompt}) read back from the shards."""
    from safetensors import safe_open

    located: dict[int, dict[str, Any]] = {}
    embeddings: dict[str, Any] = {}
    for rank in range(world_size):
        with safe_open(str(directory / shard_name(rank)), framework="pt") as handle:
            for row, position in enumerate(handle.get_tensor(PROMPT_INDEX_KEY).tolist()):
                located[position] = {"shard": shard_name(rank), "row": row}
            for key in handle.keys():
                if key != PROMPT_INDEX_KEY:
                    tensor_slice = handle.get_slice(key)
                    embeddings[key] = {"shape": list(tensor_slice.get_shape()[1:]),
                                       "dtype": _dtype_name(tensor_slice[0:0].dtype)}
    return [located[i] for i in sorted(located)], embeddings


def write_index(directory: Path, prompts: list[str], model_cfg: ModelConfig, world_size: int,
                extras: dict[str, Tensor], prompt_file: str) -> Path:
    """Rank 0, after all shards are written: the index that makes the cache complete."""
    entries, embeddings = _shard_summary(directory, world_size)
    if len(entries) != len(prompts):
        raise RuntimeError(f"shards in {directory} hold {len(entries)} prompts, expected {len(prompts)}")
    index = {
        "format_version": FORMAT_VERSION,
        "cache_key": directory.name,
        "model": {"name": model_cfg.name, "path": model_cfg.path, "tiny": model_cfg.tiny},
        "num_prompts": len(prompts),
        "prompts": prompts,
        "entries": entries,
        "embeddings": embeddings,
        "extras": {key: {"shape": list(value.shape), "dtype": _dtype_name(value.dtype)} for key, value in extras.items()},
        "created": {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "prompt_file": os.path.abspath(prompt_file), "world_size": world_size,
            "host": platform.node(), "torch": torch.__version__,
        },
    }
    temporary = directory / (INDEX_FILE + ".tmp")
    temporary.write_text(json.dumps(index, indent=1), encoding="utf-8")
    os.replace(temporary, directory / INDEX_FILE)
    return directory / INDEX_FILE


def preprocess(model_cfg: ModelConfig, prompt_file: str, output_dir: str, batch_size: int,
               env: DistEnv) -> tuple[Path, set[str]]:
    """Encode this rank's slice of the prompts; rank 0 finishes with the index.

    Returns the cache directory and the names of the model components this rank loaded.
    """
    from safetensors.torch import save_file

    prompts = read_prompt_file(prompt_file)
    directory = cache_dir(output_dir, model_cfg)
    if env.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        _clear_previous(directory)
    barrier()
    adapter = build_adapter(model_cfg, env.device)
    adapter.load_text_encoders()
    positions = list(range(env.rank, len(prompts), env.world_size))
    encoded = encode_prompts(adapter, [prompts[i] for i in positions], batch_size, env.is_main)
    encoded[PROMPT_INDEX_KEY] = torch.tensor(positions, dtype=torch.long)
    save_file(encoded, str(directory / shard_name(env.rank)), metadata={"format_version": str(FORMAT_VERSION)})
    extras = {key: value.detach().cpu().contiguous() for key, value in adapter.cache_extras().items()}
    if env.is_main and extras:
        save_file(extras, str(directory / EXTRAS_FILE))
    loaded = adapter.loaded_components()
    barrier()
    if env.is_main:
        write_index(directory, prompts, model_cfg, env.world_size, extras, prompt_file)
    barrier()
    return directory, loaded


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model_cfg = ModelConfig(name=args.model_name, path=args.model_path, tiny=args.model_tiny,
                            dtype=args.model_dtype)
    env = init_distributed()
    try:
        directory, _ = preprocess(model_cfg, args.prompt_file, args.output_dir, args.batch_size, env)
        if env.is_main:
            print(f"wrote prompt-embedding cache {directory}")
    finally:
        destroy_distributed()


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)
