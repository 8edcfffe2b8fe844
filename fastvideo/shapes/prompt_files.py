"""Prompt files of the shapes worlds, written from the grammars' train / held-out splits.

    python -m fastvideo.shapes.prompt_files [--world image|motion] [--out_dir DIR] [--seed 0]

writes ``train.txt`` (the GRPO training prompts, ``data.prompt_file`` of configs/shapes/*.yaml) and
``heldout.txt`` (every held-out prompt, for reference; the evaluation draws skill-balanced prompts from
the same split in code, see ``fastvideo.shapes.policy_eval``) and ``train_balanced.txt``, the training prompts
in the evaluation's skill mix. Motion (``data.prompt_file`` of configs/shapes_video/*.yaml): the train split is
98.4% two-object prompts (4410 of 4482) while the evaluation is half single-object, so the file holds every
single-object train prompt and as many two-object ones, drawn with the seed (``balanced_train_texts``); the
motion world also gets ``train_single.txt``, its single-object train prompts (the T2V preset's). Image
(``balanced_image_texts``): up to 64 train prompts of each skill, where ``train.txt`` is 75% position prompts. One prompt per line, in the grammar's order. Default directories:
assets/shapes/prompts (image grammar, ``grammar.prompt_splits``) and assets/shapes_video/prompts
(motion grammar, ``motion.motion_prompt_splits``). The shipped files are checked by the tests.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fastvideo.shapes.grammar import SKILLS, prompt_splits
from fastvideo.shapes.motion import motion_prompt_splits, motion_skill_of

DEFAULT_PROMPT_DIR = Path("assets/shapes/prompts")
MOTION_PROMPT_DIR = Path("assets/shapes_video/prompts")
DEFAULT_DIRS = {"image": DEFAULT_PROMPT_DIR, "motion": MOTION_PROMPT_DIR}
TRAIN_FILE = "train.txt"
HELDOUT_FILE = "heldout.txt"
BALANCED_FILE = "train_balanced.txt"
SINGLE_FILE = "train_single.txt"


def split_texts(seed: int = 0, world: str = "image") -> dict[str, list[str]]:
    """{"train": [...], "heldout": [...]} prompt texts of ``prompt_splits(seed)`` (``world="motion"``:
    of ``motion_prompt_splits(seed)``)."""
    if world not in DEFAULT_DIRS:
        raise ValueError(f"unknown world {world!r}; expected one of {list(DEFAULT_DIRS)}")
    train, heldout = (prompt_splits if world == "image" else motion_prompt_splits)(seed)
    return {"train": [p.text for p in train], "heldout": [p.text for p in heldout]}


def balanced_train_texts(seed: int = 0) -> list[str]:
    """Every single-object motion train prompt, then as many two-object ones drawn without replacement by
    ``default_rng(seed)`` (in the split's order): the skill mix of the evaluation (half single-object)."""
    singles = single_train_texts(seed)
    pairs = [text for text in split_texts(seed, "motion")["train"] if motion_skill_of(text) == "two_objects"]
    chosen = np.sort(np.random.default_rng(seed).choice(len(pairs), size=len(singles), replace=False))
    return singles + [pairs[i] for i in chosen]


def single_train_texts(seed: int = 0) -> list[str]:
    """Every single-object motion train prompt (72 for seed 0), in the split's order: the T2V preset's training
    prompts. The T2V base draws two-object clips right ~0% of the time, so their groups carry no signal (log
    rows 129-130: +8.5 / +8.5 on two seeds, against +6.5 / +4.5 for the EMA on ``train_balanced.txt``)."""
    return [text for text in split_texts(seed, "motion")["train"] if motion_skill_of(text) == "single"]


IMAGE_PROMPTS_PER_SKILL = 64
"""Train prompts per skill in the image world's ``train_balanced.txt``: the smallest multi-object skill of the
train split (counting, 64); single has 18, position 912."""


def balanced_image_texts(seed: int = 0, per_skill: int = IMAGE_PROMPTS_PER_SKILL) -> list[str]:
    """Up to ``per_skill`` image train prompts of every skill (``grammar.SKILLS`` order), each skill's drawn without
    replacement by one ``default_rng(seed)`` and kept in the split's order: the evaluation's skill mix, where
    ``train.txt`` is 75% position prompts (912 of 1222) and 11% colour binding (log row 128)."""
    train, _ = prompt_splits(seed)
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for skill in SKILLS:
        texts = [p.text for p in train if p.skill == skill]
        chosen = np.sort(rng.choice(len(texts), size=min(len(texts), per_skill), replace=False))
        out += [texts[i] for i in chosen]
    return out


def write_prompt_files(out_dir: str | Path | None = None, seed: int = 0,
                       world: str = "image") -> dict[str, Path]:
    """Write the world's prompt files (module docstring) into ``out_dir`` (default: the world's); return
    {"train", "heldout", "train_balanced"[, "train_single"]: path}."""
    out = Path(out_dir) if out_dir is not None else DEFAULT_DIRS[world]
    out.mkdir(parents=True, exist_ok=True)
    texts = split_texts(seed, world)
    files = {"train": (TRAIN_FILE, texts["train"]), "heldout": (HELDOUT_FILE, texts["heldout"])}
    if world == "motion":
        files["train_balanced"] = (BALANCED_FILE, balanced_train_texts(seed))
        files["train_single"] = (SINGLE_FILE, single_train_texts(seed))
    else:
        files["train_balanced"] = (BALANCED_FILE, balanced_image_texts(seed))
    paths = {}
    for key, (name, lines) in files.items():
        paths[key] = out / name
        paths[key].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(DEFAULT_DIRS), default="image")
    parser.add_argument("--out_dir", default=None,
                        help="default: assets/shapes/prompts (image) or assets/shapes_video/prompts (motion)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (prompt_splits / motion_prompt_splits)")
    args = parser.parse_args(argv)
    for split, path in write_prompt_files(args.out_dir, args.seed, args.world).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)
