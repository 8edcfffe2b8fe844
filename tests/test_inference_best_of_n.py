"""Best-of-N inference scaling: the estimator against brute force, and the command line on tiny FLUX and on
the shipped shapes model with the shapes verifier (N = 1 equals plain sampling's mean reward, the curve
never decreases, one curve per model)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from fastvideo.config import ModelConfig


@pytest.mark.parametrize("estimator", ["unbiased", "first"])
def test_expected_best_of_n_matches_enumeration_and_is_monotone(estimator):
    from fastvideo.inference.stats import expected_best_of_n

    values = np.random.default_rng(0).normal(size=7).round(2)
    values[3] = values[5]  # ties
    curve = [expected_best_of_n(values, n, estimator) for n in range(1, 8)]
    if estimator == "unbiased":
        brute = [np.mean([max(s) for s in itertools.combinations(values, n)]) for n in range(1, 8)]
        np.testing.assert_allclose(curve, brute, rtol=1e-12)
        assert curve[0] == pytest.approx(values.mean())
    else:
        assert curve == [values[:n].max() for n in range(1, 8)]
    assert all(b >= a for a, b in zip(curve, curve[1:])) and curve[-1] == values.max()


def test_n_values_and_summary_interval():
    from fastvideo.inference.stats import n_values, summarize

    assert n_values(16) == [1, 2, 4, 8, 16] and n_values(12) == [1, 2, 4, 8, 12] and n_values(1) == [1]
    stats = summarize([[1.0, 3.0], [2.0, 2.0], [6.0, 4.0]])  # prompt means 2, 2, 5
    assert stats["mean"] == pytest.approx(3.0) and stats["n_prompts"] == 3 and stats["n_samples"] == 6
    half = 4.302652729911275 * np.std([2, 2, 5], ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    assert stats["ci95"] == pytest.approx([3.0 - half, 3.0 + half])


def test_best_of_n_cli_curves_start_at_the_plain_mean_and_never_decrease(tmp_path: Path):
    import torch

    from fastvideo.inference import load_policy, sample
    from fastvideo.inference.best_of_n import main
    from fastvideo.inference.scoring import prompt_seeds
    from fastvideo.models import build_adapter

    model_cfg = ModelConfig(name="flux", tiny=True, height=32, width=32)
    adapter = build_adapter(model_cfg, "cpu")
    with torch.no_grad():
        adapter.transformer.proj_out.weight.mul_(3.0)
    adapter.save_transformer(adapter.transformer, tmp_path / "ckpt" / "transformer")
    prompts = ["a red fox", "a blue lake"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    table = main(["--model.name", "flux", "--model.tiny", "true", "--height", "32", "--width", "32",
                  "--num_steps", "3", "--prompt_file", str(tmp_path / "p.txt"), "--n_max", "4",
                  "--reward", "brightness", "--checkpoints", str(tmp_path / "ckpt"), "--labels", "base", "tuned",
                  "--seed", "11", "--output_dir", str(tmp_path / "bon")])
    assert table["ns"] == [1, 2, 4] and list(table["models"]) == ["base", "tuned"]
    base = load_policy(model_cfg, None, "cpu")
    texts = [p for p in prompts for _ in range(4)]
    seeds = [s for i in range(2) for s in prompt_seeds(11, i, 4)]
    plain_mean = float(sample(base, texts, seeds, num_steps=3).flatten(1).mean(1).mean())
    assert table["models"]["base"]["curve"][0]["mean"] == pytest.approx(plain_mean, abs=1e-5)
    for model in table["models"].values():
        means = [point["mean"] for point in model["curve"]]
        assert all(b >= a for a, b in zip(means, means[1:]))
    scores = {label: (tmp_path / "bon" / label / "scores.rank0.jsonl").read_text() for label in ("base", "tuned")}
    assert scores["base"] != scores["tuned"]  # the checkpoint was sampled, with the same seeds
    assert json.loads((tmp_path / "bon" / "best_of_n.json").read_text()) == json.loads(json.dumps(table))
    assert (tmp_path / "bon" / "best_of_n.png").stat().st_size > 0
    assert "| 4 |" in (tmp_path / "bon" / "best_of_n.md").read_text()


SHAPES_FLUX = Path(__file__).resolve().parents[1] / "assets" / "shapes" / "flux"
SHAPES_PROMPTS = ["three blue circles", "a red circle and a black triangle", "a red circle left of a blue circle",
                  "two green triangles"]


@pytest.mark.slow  # ~3 s of sampling, ~11 s alone with the first diffusers/transformers import (1 thread)
def test_best_of_n_on_the_shipped_shapes_model(tmp_path: Path):
    """The shipped FLUX shapes pipeline (64x64, T5 length 16, guidance 3.5), 8 Euler steps, shapes verifier:
    N = 1 is plain sampling's mean score, every N matches brute force over the same samples, and the curve
    never decreases (and does rise: these prompts' 4 samples do not all score the same)."""
    from fastvideo.inference import load_policy, sample
    from fastvideo.inference.best_of_n import main
    from fastvideo.inference.scoring import prompt_seeds
    from fastvideo.rewards import build_reward

    (tmp_path / "p.txt").write_text("\n".join(SHAPES_PROMPTS) + "\n")
    table = main(["--model.name", "flux", "--model.path", str(SHAPES_FLUX), "--height", "64", "--width", "64",
                  "--guidance_scale", "3.5", "--num_steps", "8", "--shift", "3.0", "--prompt_file",
                  str(tmp_path / "p.txt"), "--n_max", "4", "--reward", "shapes_verifier", "--seed", "0",
                  "--output_dir", str(tmp_path / "bon")])
    curve = table["models"]["base"]["curve"]
    assert table["ns"] == [1, 2, 4] and [point["n"] for point in curve] == [1, 2, 4]

    model_cfg = ModelConfig(name="flux", path=str(SHAPES_FLUX), height=64, width=64, guidance_scale=3.5)
    adapter = load_policy(model_cfg, None, "cpu")
    assert adapter.max_sequence_length == 16  # the shipped T5 tokenizer's length (MODEL_CARD.md)
    texts = [p for p in SHAPES_PROMPTS for _ in range(4)]
    seeds = [s for i in range(len(SHAPES_PROMPTS)) for s in prompt_seeds(0, i, 4)]
    images = sample(adapter, texts, seeds, num_steps=8, shift=3.0, batch_size=16)
    scores = build_reward("shapes_verifier")(images, texts).reshape(len(SHAPES_PROMPTS), 4).numpy()
    assert curve[0]["mean"] == pytest.approx(scores.mean(), abs=1e-6)  # N = 1: plain sampling
    for point in curve:
        brute = [np.mean([max(s) for s in itertools.combinations(row, point["n"])]) for row in scores]
        assert point["mean"] == pytest.approx(np.mean(brute), abs=1e-6)
    means = [point["mean"] for point in curve]
    assert all(b >= a for a, b in zip(means, means[1:])) and means[-1] > means[0]
    assert means[-1] == pytest.approx(scores.max(axis=1).mean(), abs=1e-6)
