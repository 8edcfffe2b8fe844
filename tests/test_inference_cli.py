"""The inference command lines on tiny FLUX: the visualisation grid's size and layout, and an evaluation
that resumes after an interruption without sampling or scoring a prompt twice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastvideo.config import ModelConfig

PROMPTS = ["a red fox", "a blue lake", "a green hill"]
MODEL_FLAGS = ["--model.name", "flux", "--model.tiny", "true", "--height", "32", "--width", "32",
               "--num_steps", "3"]


@pytest.fixture(scope="module")
def perturbed_export(tmp_path_factory) -> Path:
    """A 'trained' checkpoint: the tiny FLUX transformer with perturbed weights, exported like a run."""
    from fastvideo.models import build_adapter

    root = tmp_path_factory.mktemp("ckpt")
    adapter = build_adapter(ModelConfig(name="flux", tiny=True, height=32, width=32), "cpu")
    module = adapter.transformer
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    adapter.save_transformer(module, root / "run" / "export" / "transformer")
    return root / "run" / "export"


@pytest.fixture()
def prompt_file(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def test_visualize_grid_rows_are_prompt_seed_pairs_and_columns_models(tmp_path, prompt_file, perturbed_export):
    from fastvideo.inference import load_policy, sample
    from fastvideo.inference.visualize import main

    out = tmp_path / "vis"
    main([*MODEL_FLAGS, "--prompt_file", str(prompt_file), "--max_prompts", "2", "--seeds", "0", "5",
          "--checkpoints", str(perturbed_export), "--output_dir", str(out), "--batch_size", "3"])
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == (2 * 2 * 32, 2 * 32, 3)  # rows: 2 prompts x 2 seeds; columns: base, checkpoint
    layout = json.loads((out / "grid.json").read_text())
    assert [(r["prompt"], r["seed"]) for r in layout["rows"]] == [(PROMPTS[0], 0), (PROMPTS[0], 5),
                                                                  (PROMPTS[1], 0), (PROMPTS[1], 5)]
    assert [c["label"] for c in layout["columns"]] == ["base", "run/export"]
    for row, (index, seed) in enumerate([(0, 0), (0, 5), (1, 0), (1, 5)]):
        for column, folder in enumerate(["base", "run_export"]):
            cell = grid[row * 32:(row + 1) * 32, column * 32:(column + 1) * 32]
            assert np.array_equal(cell, np.asarray(Image.open(out / folder / f"p{index:04d}_s{seed}.png")))
    base = load_policy(ModelConfig(name="flux", tiny=True, height=32, width=32), None, "cpu")
    expected = sample(base, [PROMPTS[1]], [5], num_steps=3)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(grid[96:128, :32].astype(float) - expected).max() <= 1.0
    assert np.abs(grid[:, :32].astype(float) - grid[:, 32:].astype(float)).mean() > 1.0  # checkpoint differs


class _Interrupt(RuntimeError):
    pass


def _count_predict_calls(monkeypatch) -> dict:
    from fastvideo.models.flux import FluxAdapter

    counter = {"calls": 0}
    original = FluxAdapter.predict

    def counting(self, *args, **kwargs):
        counter["calls"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FluxAdapter, "predict", counting)
    return counter


def test_evaluate_resumes_without_resampling_or_rescoring(tmp_path, prompt_file, monkeypatch):
    import fastvideo.inference.scoring as scoring
    from fastvideo.inference.evaluate import main

    counter = _count_predict_calls(monkeypatch)
    argv = [*MODEL_FLAGS, "--prompt_file", str(prompt_file), "--rewards", "brightness", "brightness>0.5",
            "--samples_per_prompt", "2", "--batch_size", "2", "--output_dir", str(tmp_path / "eval")]
    original, chunks = scoring.score_chunk, []

    def interrupted(adapter, rewards, job, indices):
        chunks.append(list(indices))
        if len(chunks) == 2:
            raise _Interrupt("killed")
        return original(adapter, rewards, job, indices)

    monkeypatch.setattr(scoring, "score_chunk", interrupted)
    with pytest.raises(_Interrupt):
        main(argv)
    assert chunks == [[0], [1]] and counter["calls"] == 3  # prompt 0: one batch of its 2 samples, 3 steps
    monkeypatch.setattr(scoring, "score_chunk", original)
    counter["calls"] = 0
    resumed = main(argv)
    assert counter["calls"] == 2 * 3  # only prompts 1 and 2, one batch each
    counter["calls"] = 0
    again = main(argv)
    assert counter["calls"] == 0 and again["rewards"] == resumed["rewards"]
    fresh = main([*argv[:-1], str(tmp_path / "fresh")])
    assert fresh["rewards"] == resumed["rewards"]
    stats = resumed["rewards"]["brightness"]
    assert stats["n_samples"] == 6 and stats["n_prompts"] == 3 and stats["ci95"][0] < stats["mean"] < stats["ci95"][1]
    assert set(resumed["rewards"]) == {"brightness", "brightness>0.5"}
    records = [json.loads(line) for line in (tmp_path / "eval" / "scores.rank0.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert all(v in (0.0, 1.0) for r in records for v in r["rewards"]["brightness>0.5"])  # brightness>0.5
    assert "| brightness |" in (tmp_path / "eval" / "results.md").read_text()
    with pytest.raises(ValueError, match="different settings"):
        main([*argv, "--seed", "3"])


def test_evaluate_reports_shapes_accuracy_per_skill(tmp_path):
    from fastvideo.inference.evaluate import main

    prompts = tmp_path / "shapes.txt"
    prompts.write_text("a red circle\ntwo blue squares\na red circle and a blue square\n")
    result = main([*MODEL_FLAGS, "--prompt_file", str(prompts), "--rewards", "shapes_verifier",
                   "--reward_kwargs", '{"shapes_verifier": {"mode": "binary"}}', "--output_dir", str(tmp_path / "o")])
    assert set(result["per_skill"]) == {"single", "counting", "color_binding"}
    assert result["accuracy"]["mean"] == result["rewards"]["shapes_verifier"]["mean"]  # binary mode = accuracy
    assert all(entry["n_prompts"] == 1 and "accuracy" in entry for entry in result["per_skill"].values())
    assert "## Per skill" in (tmp_path / "o" / "results.md").read_text()
