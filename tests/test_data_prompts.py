"""Prompt files: blank lines, duplicates, empty and missing files."""

from __future__ import annotations

import pytest

from fastvideo.data.prompts import read_prompt_file


def test_blank_lines_skipped_duplicates_kept_once_in_order(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a cat\n\n  a dog  \n\t\na cat\nthe sky\na dog\n", encoding="utf-8")
    assert read_prompt_file(path) == ["a cat", "a dog", "the sky"]


def test_unicode_and_no_trailing_newline(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("café au lait\r\nÜber den Wolken", encoding="utf-8")
    assert read_prompt_file(path) == ["café au lait", "Über den Wolken"]


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "prompts.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompt_file(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        read_prompt_file(tmp_path / "absent.txt")
