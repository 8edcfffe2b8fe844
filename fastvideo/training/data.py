"""Prompts and their conditioning for the trainer: from the embedding cache or encoded online."""

from __future__ import annotations

import torch

from fastvideo.config import Config
from fastvideo.errors import UserError


class ValidationPromptsError(UserError, KeyError):
    """data.validation_prompts names prompts the embedding cache does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PromptSource:
    """The prompt list and ``conditioning(indices) -> dict`` (batch-first tensors on ``device``).

    With ``data.embeddings_dir`` the embeddings come from the cache written by
    ``fastvideo.data.preprocess`` (text encoders are never loaded); otherwise prompts are read from
    ``data.prompt_file`` and encoded by the adapter's text encoders on the fly.
    """

    def __init__(self, cfg: Config, adapter, device: torch.device):
        self.adapter = adapter
        self.device = device
        if cfg.data.embeddings_dir:
            from fastvideo.data.cache import EmbeddingCache

            self.cache = EmbeddingCache(cfg.data.embeddings_dir, cfg.model, cfg.data.prompt_file)
            self.prompts = list(self.cache.prompts)
            if hasattr(adapter, "load_cache_extras"):
                adapter.load_cache_extras(self.cache.extras)  # e.g. SD's empty-prompt embedding for CFG
        else:
            from fastvideo.data.prompts import read_prompt_file

            self.cache = None
            self.prompts = read_prompt_file(cfg.data.prompt_file)
            adapter.load_text_encoders()

    def __len__(self) -> int:
        return len(self.prompts)

    def conditioning(self, indices: list[int]) -> dict[str, torch.Tensor]:
        if self.cache is not None:
            cond = self.cache.get(indices)
        else:
            with torch.no_grad():
                cond = self.adapter.encode_prompts([self.prompts[i] for i in indices])
        return {k: v.to(self.device) for k, v in cond.items()}

    def conditioning_for_texts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Conditioning of arbitrary prompts (validation): looked up in the cache or encoded."""
        if self.cache is None:
            return self.conditioning_online(texts)
        lookup = {p: i for i, p in enumerate(self.prompts)}
        missing = [t for t in texts if t not in lookup]
        if missing:
            raise ValidationPromptsError(f"validation prompts not in the embedding cache: {missing[:3]} — add them to the "
                           "prompt file before preprocessing, or leave data.validation_prompts empty")
        return self.conditioning([lookup[t] for t in texts])

    def conditioning_online(self, texts: list[str]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            cond = self.adapter.encode_prompts(texts)
        return {k: v.to(self.device) for k, v in cond.items()}


def iteration_prompts(num_prompts: int, iteration: int, global_batch: int, seed: int) -> list[int]:
    """Dataset indices of the ``global_batch`` prompts of ``iteration`` (identical on every rank).

    Prompts are visited epoch by epoch in a seeded random order: position q of the stream is
    prompt perm_e[q mod N] with e = q div N and perm_e = randperm(N, seed + e).
    """
    out = []
    for q in range(iteration * global_batch, (iteration + 1) * global_batch):
        epoch, offset = divmod(q, num_prompts)
        perm = torch.randperm(num_prompts, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(perm[offset]))
    return out
