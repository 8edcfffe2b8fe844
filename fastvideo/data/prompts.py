"""Prompt files: one prompt per line."""

from __future__ import annotations

import os
from pathlib import Path


def read_prompt_file(path: str | os.PathLike[str]) -> list[str]:
    """Prompts of a UTF-8 text file, one per line.

    Surrounding whitespace is stripped, blank lines are skipped and a repeated prompt is kept once
    (at its first position), so the order of first appearance is preserved. A missing file, or
    one with no prompt at all, is an error.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompt file not found: {file}")
    prompts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    unique = list(dict.fromkeys(p for p in prompts if p))
    if not unique:
        raise ValueError(f"prompt file {file} holds no prompts (it is empty or only blank lines)")
    return unique
