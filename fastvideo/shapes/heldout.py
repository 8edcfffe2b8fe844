"""The held-out evaluation protocol of the shapes world, shared by every evaluation of it: the fixed
seed, the skill-balanced held-out draws and the per-skill summary (pure: no model code).

Accuracy is binary (all claims of a prompt satisfied) with its binomial standard error
sqrt(p (1 - p) / n); ``summarize`` adds the mean verifier score and the no-shape fraction.
"""

from __future__ import annotations

import math

import numpy as np

from fastvideo.shapes.grammar import SKILLS, sample_prompts

EVAL_SEED = 1234


def heldout_prompts(num: int, seed: int = EVAL_SEED) -> list[tuple[str, str]]:
    """``num`` skill-balanced (text, skill) draws from the held-out split."""
    rng = np.random.default_rng(seed)
    return [(p.text, p.skill) for p in sample_prompts(num, rng, split="heldout")]


def proportion(values: list[float]) -> dict[str, float]:
    """Mean and binomial standard error of 0/1 values."""
    n = len(values)
    p = float(np.mean(values)) if n else float("nan")
    return {"acc": p, "se": math.sqrt(p * (1 - p) / n) if n else float("nan"), "n": n}


def summarize(records: list[dict], skills: tuple[str, ...] = SKILLS) -> dict:
    """Per-skill (``skills``: the image grammar's by default) and overall accuracy (± s.e.), mean score
    and no-shape fraction."""
    def block(rows: list[dict]) -> dict:
        stats = proportion([r["correct"] for r in rows])
        stats["mean_score"] = float(np.mean([r["score"] for r in rows])) if rows else float("nan")
        stats["no_shape_frac"] = float(np.mean([r["num_detected"] == 0 for r in rows])) if rows else float("nan")
        return stats

    per_skill = {skill: block([r for r in records if r["skill"] == skill]) for skill in skills}
    return {"overall": block(records), "per_skill": per_skill}
