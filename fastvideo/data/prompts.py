"""Prompt files: one prompt per line."""

from __future__ import annotations

import os
from pathlib import Path

from fastvideo.errors import UserError

_FIX = "point data.prompt_file (or --prompt_file) at a UTF-8 text file with one prompt per line"


class PromptFileNotFoundError(FileNotFoundError, UserError):
    """The prompt file does not exist."""


class EmptyPromptFileError(ValueError, UserError):
    """The prompt file holds no prompt (empty or blank lines only)."""


def _where(file: Path) -> str:
    return str(file) if file.is_absolute() else f"{file} (= {file.absolute()})"


def read_prompt_file(path: str | os.PathLike[str]) -> list[str]:
    """Prompts of a UTF-8 text file, one per line.

    Surrounding whitespace is stripped, blank lines are skipped and a repeated prompt is kept once
    (at its first position), so the order of first appearance is preserved. A missing file, or
    one with no prompt at all, is an error.
    """
    file = Path(path)
    if not file.is_file():
        raise PromptFileNotFoundError(f"prompt file not found: {_where(file)}; {_FIX}")
    prompts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    unique = list(dict.fromkeys(p for p in prompts if p))
    if not unique:
        raise EmptyPromptFileError(f"prompt file {_where(file)} holds no prompts (it is empty or only blank "
                                   f"lines); add one prompt per line, or {_FIX}")
    return unique
