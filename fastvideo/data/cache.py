"""The prompt-embedding cache written by ``fastvideo.data.preprocess`` and read by training.

Layout of one cache (``<output_dir>/<cache_key>/``)::

    shard-<rank>.safetensors  the embeddings of the prompts rank <rank> encoded (batch-first rows),
                              plus their global prompt positions under ``__prompt_index__``
    extras.safetensors        prompt-independent tensors of the adapter (SD: the empty-prompt
                              embedding ``negative_prompt_embeds`` used for CFG)
    index.json                written last, by rank 0: prompts in order, shard file and row of each
                              prompt, model name/path, embedding keys/shapes/dtypes, creation info

The cache key is the model name plus a short hash of its path (``flux-1a2b3c4d``; tiny models:
``flux-tiny``), so caches of different models never overwrite each other under one output dir.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastvideo.errors import UserError

INDEX_FILE = "index.json"
EXTRAS_FILE = "extras.safetensors"
PROMPT_INDEX_KEY = "__prompt_index__"
"""Reserved shard key: the global prompt position of each row."""
FORMAT_VERSION = 1
DEFAULT_ROOT = "./data/rl_embeddings"


class EmbeddingCacheNotFoundError(FileNotFoundError, UserError):
    """No complete cache for this model: the message names the preprocessing command."""


class EmbeddingCacheMismatchError(ValueError, UserError):
    """The cache found was written for another model: the message names the preprocessing command."""


def shard_name(rank: int) -> str:
    return f"shard-{rank}.safetensors"


def cache_key(model_cfg: Any) -> str:
    """Per-model directory name: ``<name>-tiny`` or ``<name>-<8 hex of sha256(normalised path)>``."""
    if model_cfg.tiny:
        return f"{model_cfg.name}-tiny"
    digest = hashlib.sha256(os.path.normpath(str(model_cfg.path)).encode()).hexdigest()[:8]
    return f"{model_cfg.name}-{digest}"


def cache_dir(root: str | os.PathLike[str], model_cfg: Any) -> Path:
    """Directory of ``model_cfg``'s cache under ``root``."""
    return Path(root) / cache_key(model_cfg)


def preprocess_command(model_cfg: Any, output_dir: str | os.PathLike[str] | None = None,
                       prompt_file: str | os.PathLike[str] | None = None) -> str:
    """The command that writes the cache ``EmbeddingCache`` looks for."""
    model = "--model.tiny true" if model_cfg.tiny else f"--model.path {model_cfg.path}"
    return (f"torchrun --nproc_per_node=<num_gpus> -m fastvideo.data.preprocess --model.name {model_cfg.name} "
            f"{model} --prompt_file {prompt_file or '<prompts.txt>'} --output_dir {output_dir or DEFAULT_ROOT}")


def find_cache_dir(dir_or_root: str | os.PathLike[str], model_cfg: Any,
                   prompt_file: str | os.PathLike[str] | None = None) -> Path:
    """``dir_or_root`` itself if it holds an index, else ``dir_or_root/<cache_key>``; error if neither."""
    given = Path(dir_or_root)
    if (given / INDEX_FILE).is_file():
        return given
    candidate = cache_dir(given, model_cfg)
    if (candidate / INDEX_FILE).is_file():
        return candidate
    raise EmbeddingCacheNotFoundError(
        f"no prompt-embedding cache for model '{model_cfg.name}' at {candidate} (no {INDEX_FILE}; an "
        f"interrupted run leaves none). Write it with:\n  {preprocess_command(model_cfg, given, prompt_file)}")


class EmbeddingCache:
    """All prompt embeddings of one cache, batch-first, looked up by prompt position.

    ``in_memory=True`` (default) loads every shard into RAM once; ``False`` keeps the shards
    memory-mapped and reads only the requested rows (large FLUX caches: 4 MiB per prompt in bf16).
    """

    def __init__(self, dir_or_root: str | os.PathLike[str], model_cfg: Any,
                 prompt_file: str | os.PathLike[str] | None = None, in_memory: bool = True):
        self.directory = find_cache_dir(dir_or_root, model_cfg, prompt_file)
        self._rebuild = preprocess_command(model_cfg, dir_or_root, prompt_file)
        self.index: dict[str, Any] = json.loads((self.directory / INDEX_FILE).read_text(encoding="utf-8"))
        cached_name = self.index["model"]["name"]
        if cached_name != model_cfg.name:
            raise EmbeddingCacheMismatchError(
                f"cache {self.directory} holds '{cached_name}' embeddings, not '{model_cfg.name}'; point "
                f"data.embeddings_dir at the '{model_cfg.name}' cache or write one with:\n  {self._rebuild}")
        self.prompts: list[str] = list(self.index["prompts"])
        self.keys: tuple[str, ...] = tuple(self.index["embeddings"])
        self._shards: list[str] = sorted({entry["shard"] for entry in self.index["entries"]})
        shard_ids = {name: i for i, name in enumerate(self._shards)}
        self._location = torch.tensor([[shard_ids[e["shard"]], e["row"]] for e in self.index["entries"]],
                                      dtype=torch.long).reshape(-1, 2)
        self.extras: dict[str, Tensor] = self._load_extras()
        self._tensors = self._load_all() if in_memory else None
        self._handles = None if in_memory else [self._open(name) for name in self._shards]

    def _open(self, name: str) -> Any:
        from safetensors import safe_open

        path = self.directory / name
        if not path.is_file():
            raise EmbeddingCacheNotFoundError(f"cache {self.directory} is incomplete: {name} is missing. "
                                              f"Write it again with:\n  {self._rebuild}")
        return safe_open(str(path), framework="pt")

    def _load_extras(self) -> dict[str, Tensor]:
        if not self.index.get("extras"):
            return {}
        handle = self._open(EXTRAS_FILE)
        return {key: handle.get_tensor(key) for key in handle.keys()}

    def _load_all(self) -> dict[str, Tensor]:
        """Every key as one tensor whose row i is prompt i."""
        out: dict[str, Tensor] = {}
        for key in self.keys:
            parts = [self._open(name).get_tensor(key) for name in self._shards]
            offsets = torch.tensor([0] + [len(p) for p in parts[:-1]]).cumsum(0)
            out[key] = torch.cat(parts)[offsets[self._location[:, 0]] + self._location[:, 1]]
        return out

    def __len__(self) -> int:
        return len(self.prompts)

    def get(self, indices: Tensor | list[int] | int) -> dict[str, Tensor]:
        """Embeddings of prompts ``indices`` (positions in ``prompts``), batch-first."""
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(f"prompt index out of range 0..{len(self) - 1}: {index.tolist()}")
        if self._tensors is not None:
            return {key: value[index] for key, value in self._tensors.items()}
        rows = [self._location[i].tolist() for i in index]
        return {key: torch.cat([self._handles[s].get_slice(key)[r: r + 1] for s, r in rows])
                for key in self.keys}

    def indices_of(self, prompts: list[str]) -> list[int]:
        """Positions of ``prompts`` in the cache (error naming the first prompt it lacks)."""
        position = {prompt: i for i, prompt in enumerate(self.prompts)}
        missing = [p for p in prompts if p not in position]
        if missing:
            raise KeyError(f"prompt not in the embedding cache {self.directory}: {missing[0]!r}")
        return [position[p] for p in prompts]
