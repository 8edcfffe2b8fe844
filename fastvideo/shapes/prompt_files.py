"""Prompt files of the shapes world, written from the grammar's train / held-out split.

    python -m fastvideo.shapes.prompt_files [--out_dir assets/shapes/prompts] [--seed 0]

writes ``train.txt`` (the GRPO training prompts, ``data.prompt_file`` of configs/shapes/*.yaml) and
``heldout.txt`` (every held-out prompt, for reference; the evaluation draws skill-balanced prompts
from the same split in code, see ``fastvideo.shapes.evaluate``). One prompt per line, in the
grammar's order. The shipped files are checked against the grammar by the tests.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastvideo.shapes.grammar import prompt_splits

DEFAULT_PROMPT_DIR = Path("assets/shapes/prompts")
TRAIN_FILE = "train.txt"
HELDOUT_FILE = "heldout.txt"


def split_texts(seed: int = 0) -> dict[str, list[str]]:
    """{"train": [...], "heldout": [...]} prompt texts of ``prompt_splits(seed)``."""
    train, heldout = prompt_splits(seed)
    return {"train": [p.text for p in train], "heldout": [p.text for p in heldout]}


def write_prompt_files(out_dir: str | Path = DEFAULT_PROMPT_DIR, seed: int = 0) -> dict[str, Path]:
    """Write ``train.txt`` and ``heldout.txt`` into ``out_dir``; return their paths by split."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, name in (("train", TRAIN_FILE), ("heldout", HELDOUT_FILE)):
        paths[split] = out / name
        paths[split].write_text("\n".join(split_texts(seed)[split]) + "\n", encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default=str(DEFAULT_PROMPT_DIR))
    parser.add_argument("--seed", type=int, default=0, help="split seed (prompt_splits)")
    args = parser.parse_args(argv)
    for split, path in write_prompt_files(args.out_dir, args.seed).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
