"""Prompt files, prompt-embedding preprocessing (``python -m fastvideo.data.preprocess``) and the cache."""

from fastvideo.data.cache import EmbeddingCache, EmbeddingCacheNotFoundError, cache_dir, cache_key
from fastvideo.data.prompts import read_prompt_file

__all__ = ["EmbeddingCache", "EmbeddingCacheNotFoundError", "cache_dir", "cache_key", "read_prompt_file"]
