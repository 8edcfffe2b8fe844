"""GRPO on the shapes world: held-out evaluation plumbing, artefacts of train_shapes, plots, prompt
files, configs and the verifier's speck pre-filter on noisy images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastvideo.shapes import policy_eval as shapes_eval
from fastvideo.shapes.figure import Layout, tile_scale
from fastvideo.shapes.grammar import SKILLS
from fastvideo.shapes.policy_eval import EvalSettings, eval_prompts, evaluate_policy, grid_indices, shard
from fastvideo.shapes.render import render_prompt

ROOT = Path(__file__).resolve().parents[1]
REAL_FLUX = ROOT / "assets/shapes/flux/model_index.json"


# ------------------------------------------------------------------------------------------ helpers


class RenderingStub:
    """A 'model' whose samples are ground-truth renders of the prompts it was last asked to encode."""

    name, paradigm = "stub", "flow"

    def __init__(self, size: int = 32):
        self.transformer = torch.nn.Linear(1, 1)
        self.size = size
        self.texts: list[str] = []

    def encode_prompts(self, texts):
        self.texts = list(texts)
        return {"row": torch.arange(len(texts), dtype=torch.float32)[:, None]}

    def latent_shape(self):
        return (4,)

    def predict(self, latents, timestep, cond):
        return torch.zeros_like(latents)

    def decode(self, latents):
        assert len(latents) == len(self.texts)
        images = [render_prompt(t, np.random.default_rng(i), size=self.size) for i, t in enumerate(self.texts)]
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def flow_sampler(steps: int = 3):
    from fastvideo.grpo.sampler import FlowSampler

    return FlowSampler.build(steps, 3.0, "ode", 0.0)


def write_metrics(path: Path, rewards: list[float], with_breakdown: bool = True) -> None:
    lines = []
    for i, r in enumerate(rewards):
        record = {"iteration": i, "reward_mean": r, "loss": 0.1 / (i + 1), "clipfrac": 0.01 * i,
                  "approx_kl": 1e-4 * (i + 1), "sec_per_iteration": 2.0}
        if with_breakdown:
            record.update({"reward/verifier_mean": r, "reward/verifier_std": 0.1, "reward/aux_mean": -r})
        lines.append(json.dumps(record))
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------ evaluation


def test_evaluator_scores_ground_truth_renders_as_fully_correct():
    from fastvideo.distributed import DistEnv

    settings = EvalSettings(num_prompts=40, batch_size=7, grid_per_skill=1)
    result = evaluate_policy(RenderingStub(), flow_sampler(), DistEnv(), settings, progress_bar=False)
    summary = result.summary
    assert [r["text"] for r in result.records] == [t for t, _ in eval_prompts(settings)]
    assert summary["overall"]["acc"] == 1.0 and summary["overall"]["n"] == 40
    assert summary["overall"]["mean_score"] == 1.0 and summary["overall"]["no_shape_frac"] == 0.0
    assert all(summary["per_skill"][s]["acc"] == 1.0 for s in SKILLS if summary["per_skill"][s]["n"])
    assert result.grid_images.shape == (len(grid_indices([s for _, s in eval_prompts(settings)], 1)), 3, 32, 32)


def test_evaluator_flags_wrong_images():
    """Renders of the *next* prompt are wrong for most prompts: the plumbing must not hide that."""
    from fastvideo.distributed import DistEnv

    class ShiftedStub(RenderingStub):
        def encode_prompts(self, texts):
            return super().encode_prompts(texts[1:] + texts[:1])

    result = evaluate_policy(ShiftedStub(), flow_sampler(), DistEnv(), EvalSettings(num_prompts=30, batch_size=30),
                             progress_bar=False)
    assert result.summary["overall"]["acc"] < 0.5


def test_evaluation_samples_with_the_trainers_evaluation_steps():
    """``sampler.eval_num_steps`` (rollouts with fewer steps than the evaluation) reaches the held-out evaluation."""
    from types import SimpleNamespace

    from fastvideo.distributed import DistEnv
    from fastvideo.shapes.train_shapes import evaluate

    class CountingStub(RenderingStub):
        calls = 0

        def predict(self, latents, timestep, cond):
            CountingStub.calls += 1
            return super().predict(latents, timestep, cond)

    trainer = SimpleNamespace(adapter=CountingStub(), sampler=flow_sampler(3), eval_sampler=flow_sampler(5),
                              env=DistEnv(), cfg=SimpleNamespace(train=SimpleNamespace(mixed_precision="fp32"),
                                                                 logging=SimpleNamespace(progress_bar=False)))
    result = evaluate(trainer, EvalSettings(num_prompts=8, batch_size=8), "base")
    assert CountingStub.calls == 5 and result.summary["overall"]["acc"] == 1.0


def test_evaluation_split_over_ranks_matches_one_rank(monkeypatch):
    """Two simulated ranks (their gathers replayed) give the records and grid of a single rank."""
    from fastvideo.distributed import DistEnv

    settings = EvalSettings(num_prompts=23, batch_size=4, grid_per_skill=2)
    single = evaluate_policy(RenderingStub(), flow_sampler(), DistEnv(), settings, progress_bar=False)
    sent: list[torch.Tensor] = []
    monkeypatch.setattr(shapes_eval, "all_gather_cat", lambda t: sent.append(t) or torch.cat([t, t]))
    other = evaluate_policy(RenderingStub(), flow_sampler(), DistEnv(rank=1, world_size=2), settings,
                            progress_bar=False)
    assert other.records == []
    from_rank1 = iter(list(sent))
    monkeypatch.setattr(shapes_eval, "all_gather_cat", lambda t: torch.cat([t, next(from_rank1)]))
    main = evaluate_policy(RenderingStub(), flow_sampler(), DistEnv(rank=0, world_size=2), settings,
                           progress_bar=False)
    assert main.records == single.records
    assert torch.equal(main.grid_images, single.grid_images)


def test_shard_covers_every_prompt_once_with_equal_lengths():
    for num, world in [(10, 3), (2, 4), (9, 1), (400, 8)]:
        shards = [shard(num, rank, world) for rank in range(world)]
        assert len({len(indices) for indices, _ in shards}) == 1
        real = [i for indices, count in shards for i in indices[:count]]
        assert real == list(range(num))


def test_grid_indices_take_the_first_prompts_of_each_skill():
    skills = ["position", "single", "position", "counting", "single", "single"]
    assert grid_indices(skills, 2) == [1, 4, 3, 0, 2]


def test_paired_gain_and_summary_keys():
    base = [{"text": f"p{i}", "skill": "single", "score": 0.5, "correct": 0.0, "num_detected": 1} for i in range(4)]
    final = [dict(r, correct=float(i < 2), score=1.0) for i, r in enumerate(base)]
    gain = shapes_eval.paired_gain(base, final)
    assert gain["overall"]["acc"] == pytest.approx(0.5)
    assert gain["overall"]["se"] == pytest.approx(np.std([1, 1, 0, 0], ddof=1) / 2)
    assert gain["per_skill"]["single"]["mean_score"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        shapes_eval.paired_gain(base, [dict(r, text="other") for r in final])
    # one sample per prompt: the prompt-clustered s.e. equals the per-sample one
    assert gain["overall"]["se_prompt"] == pytest.approx(gain["overall"]["se"])
    assert gain["overall"]["prompts"] == 4


def test_paired_gain_clusters_the_error_by_prompt():
    """Two prompts of two samples each, the gain made on one prompt: residuals sum to +1 and -1 per prompt,
    so se_prompt = sqrt(2 / 1 * (1 + 1)) / 4 = 0.5 against the per-sample std([1, 1, 0, 0]) / 2 = 0.289."""
    base = [{"text": f"p{i // 2}", "skill": "single", "score": 0.0, "correct": 0.0, "num_detected": 1}
            for i in range(4)]
    final = [dict(r, correct=float(i < 2)) for i, r in enumerate(base)]
    gain = shapes_eval.paired_gain(base, final)["overall"]
    assert (gain["acc"], gain["prompts"], gain["n"]) == (0.5, 2, 4)
    assert gain["se"] == pytest.approx(np.std([1, 1, 0, 0], ddof=1) / 2)
    assert gain["se_prompt"] == pytest.approx(0.5)
    one_prompt = [dict(r, text="p") for r in base]
    assert math.isnan(shapes_eval.paired_gain(one_prompt, [dict(r, text="p") for r in final])["overall"]["se_prompt"])
    summary = {"base": {"overall": {"acc": 0.0, "se": 0.0, "mean_score": 0.0, "no_shape_frac": 0.0},
                        "per_skill": {}},
               "gain": {"final": {"overall": gain, "per_skill": {}}}}
    text = shapes_eval.format_comparison(summary)
    assert "+0.500 ± 0.289; ± 0.500 over 2 prompts, 4 samples" in text


def test_split_eval_args_separates_evaluation_flags():
    from fastvideo.shapes.train_shapes import split_eval_args

    settings, rest = split_eval_args(["--config", "c.yaml", "--eval.num_prompts", "12", "--train.lr=1e-3",
                                      "--eval.seed=7"])
    assert (settings.num_prompts, settings.seed) == (12, 7)
    assert rest == ["--config", "c.yaml", "--train.lr=1e-3"]
    with pytest.raises(SystemExit):
        split_eval_args(["--eval.nope", "3"])


# ------------------------------------------------------------------------------------------ verifier


def test_verifier_prefilters_specks_of_a_noise_image(monkeypatch):
    """A uniform-noise image has ~1000 colour components; only plausible ones are measured one by one."""
    from fastvideo.shapes import verifier

    noise = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    ids, colors = verifier._components(verifier.classify_pixels(noise))
    measured = []
    original = verifier.shape_features
    monkeypatch.setattr(verifier, "shape_features", lambda *a: measured.append(1) or original(*a))
    verdict = verifier.verify(noise, "a red circle left of a blue square")
    assert not verdict.correct and verdict.score < 1
    assert len(colors) - 1 > 500 and len(measured) < 20


def test_vectorised_soft_areas_equal_the_per_component_areas():
    from scipy import ndimage

    from fastvideo.shapes import verifier

    rng = np.random.default_rng(3)
    render = render_prompt("two red circles", rng, size=64).astype(np.float32) / 255
    blurred = ndimage.gaussian_filter(render, (0.8, 0.8, 0)) + 0.2 * rng.standard_normal(render.shape)
    for image in (render, np.clip(blurred, 0, 1).astype(np.float32), rng.random((32, 32, 3)).astype(np.float32)):
        ids, colors = verifier._components(verifier.classify_pixels(image))
        areas = verifier._soft_areas(image, ids, verifier._ownership(ids), colors)
        for index, area, *_ in verifier._measure_components(image, ids, colors):
            assert areas[index] == pytest.approx(area, rel=1e-5)


# ------------------------------------------------------------------------------------------ plots


def test_plot_training_curves_expands_rewards_and_skips_missing_keys(tmp_path):
    from fastvideo.plots import expand_keys, moving_average, plot_training_curves, read_metrics

    write_metrics(tmp_path / "a", [0.1, 0.2, 0.4])
    write_metrics(tmp_path / "b", [0.3, 0.3], with_breakdown=False)
    runs = [read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")]
    assert expand_keys(runs, ["reward", "loss", "missing"]) == ["reward/aux_mean", "reward/verifier_mean", "loss"]
    assert expand_keys(runs[1:], ["reward"]) == ["reward_mean"]
    assert moving_average(np.array([1.0, 3.0, 5.0]), 2).tolist() == [1.0, 2.0, 4.0]
    out = plot_training_curves([tmp_path / "a", tmp_path / "b"], tmp_path / "curves.png", smooth=2)
    width, height = Image.open(out).size
    assert width > 600 and height > 300


def test_plots_command_line(tmp_path):
    from fastvideo.plots import main

    write_metrics(tmp_path / "run", [0.0, 1.0])
    main([str(tmp_path / "run"), "--out", str(tmp_path / "x.png"), "--keys", "reward", "sec_per_iteration"])
    assert Image.open(tmp_path / "x.png").size[0] > 0


# ------------------------------------------------------------------------------------------ files


def test_shipped_prompt_files_match_the_grammar_split(tmp_path):
    from fastvideo.data.prompts import read_prompt_file
    from fastvideo.shapes.prompt_files import split_texts, write_prompt_files

    texts = split_texts(0)
    assert read_prompt_file(ROOT / "assets/shapes/prompts/train.txt") == texts["train"]
    assert read_prompt_file(ROOT / "assets/shapes/prompts/heldout.txt") == texts["heldout"]
    written = write_prompt_files(tmp_path, seed=0)
    assert written["train"].read_text() == (ROOT / "assets/shapes/prompts/train.txt").read_text()
    assert written["train_balanced"].read_text() == (ROOT / "assets/shapes/prompts/train_balanced.txt").read_text()


def test_balanced_image_prompts_are_train_prompts_in_the_evaluations_skill_mix():
    from collections import Counter

    from fastvideo.shapes.grammar import prompt_splits
    from fastvideo.shapes.prompt_files import balanced_image_texts, split_texts

    texts, train = balanced_image_texts(0), split_texts(0)["train"]
    assert set(texts) <= set(train) and len(set(texts)) == len(texts)
    skill_of = {p.text: p.skill for p in prompt_splits(0)[0]}
    for skill in ("counting", "position"):  # each skill's prompts keep the split's order
        assert [t for t in texts if skill_of[t] == skill] == [t for t in train if t in texts and skill_of[t] == skill]
    assert Counter(skill_of[t] for t in texts) == {"single": 18, "counting": 64, "two_objects": 64,
                                                   "color_binding": 64, "position": 64}
    assert balanced_image_texts(1) != texts and len(balanced_image_texts(0, per_skill=10)) == 5 * 10
    from fastvideo.config import load_config
    from fastvideo.data.prompts import read_prompt_file

    front_door = load_config(ROOT / "configs/shapes/flux_nft.yaml")  # the launcher's default preset
    assert read_prompt_file(ROOT / front_door.data.prompt_file) == texts


SHAPES_PRESETS = [("flux_grpo", "flux"), ("sd_grpo", "sd"), ("flux_grpo_mixgrpo", "flux"),
                  ("flux_grpo_mixgrpo_flash", "flux"), ("flux_grpo_mixgrpo_flash_star", "flux"), ("flux_grpo_cps", "flux")]


@pytest.mark.parametrize("name, model", SHAPES_PRESETS)
def test_shapes_configs_load(name, model):
    from fastvideo.config import load_config

    cfg = load_config(ROOT / f"configs/shapes/{name}.yaml")
    assert cfg.model.name == model and cfg.model.path == f"assets/shapes/{model}"
    assert (cfg.model.height, cfg.model.width) == (64, 64)
    assert [t.name for t in cfg.rewards.terms] == ["shapes_verifier"]
    assert cfg.rewards.terms[0].kwargs == {"mode": "score"}
    assert (ROOT / cfg.data.prompt_file).is_file()


# ------------------------------------------------------------------------------------------ end to end


def run_train_shapes(tmp_path: Path, kind: str, size: int, iterations: int, extra: list[str] = ()) -> Path:
    from fastvideo.models.tiny import save_tiny_pipeline
    from fastvideo.shapes.train_shapes import main

    pipeline = save_tiny_pipeline(kind, tmp_path / f"tiny_{kind}")
    run_dir = tmp_path / "run"
    main(["--config", str(ROOT / f"configs/shapes/{kind}_grpo.yaml"), "--output_dir", str(run_dir),
          "--model.path", str(pipeline), "--model.height", str(size), "--model.width", str(size),
          "--data.prompt_file", str(ROOT / "assets/shapes/prompts/train.txt"),
          "--train.max_iterations", str(iterations), "--grpo.group_size", "4",
          "--train.prompts_per_iteration", "2", "--sampler.num_steps", "4", "--logging.progress_bar", "false",
          "--checkpoint.export_at_end", "false", "--eval.num_prompts", "12", "--eval.batch_size", "8",
          "--eval.grid_per_skill", "1", *extra])
    return run_dir


def check_artefacts(run_dir: Path, iterations: int, size: int, rows: int = 2) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(iterations))
    assert Image.open(run_dir / "reward_curve.png").size[0] > 0
    assert Image.open(run_dir / "training_curves.png").size[0] > 0
    prompts = eval_prompts(EvalSettings(num_prompts=12))
    columns = len(grid_indices([s for _, s in prompts], 1))
    tile = tile_scale(size) * size  # upscaled, labelled tiles (fastvideo.shapes.figure)
    assert Image.open(run_dir / "before_after.png").size == Layout(rows, columns, tile).size()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"base", "final", "gain", "eval", "grid_prompts", "seconds", "iterations"} <= set(summary)
    for policy in ("base", "final"):
        assert set(summary[policy]["per_skill"]) == set(SKILLS)
        assert {"acc", "se", "n", "mean_score", "no_shape_frac"} <= set(summary[policy]["overall"])
        assert summary[policy]["overall"]["n"] == 12
    assert summary["gain"]["final"]["overall"]["n"] == 12
    assert len((run_dir / "eval_final.jsonl").read_text().splitlines()) == 12
    return summary


@pytest.mark.slow
def test_train_shapes_tiny_flux_writes_all_artefacts(tmp_path):
    run_dir = run_train_shapes(tmp_path, "flux", 32, iterations=2)
    summary = check_artefacts(run_dir, iterations=2, size=32)
    assert summary["iterations"] == 2 and summary["grid_prompts"]


@pytest.mark.slow
def test_train_shapes_tiny_sd_one_iteration(tmp_path):
    run_dir = run_train_shapes(tmp_path, "sd", 32, iterations=1, extra=["--train.ema_decay", "0.9"])
    summary = check_artefacts(run_dir, iterations=1, size=32, rows=3)
    assert summary["final_ema"]["overall"]["n"] == 12


@pytest.mark.slow
@pytest.mark.skipif(not REAL_FLUX.exists(), reason="assets/shapes/flux not shipped yet")
def test_train_shapes_on_the_shipped_flux_pipeline(tmp_path):
    from fastvideo.shapes.train_shapes import main

    run_dir = tmp_path / "run"
    main(["--config", str(ROOT / "configs/shapes/flux_grpo.yaml"), "--output_dir", str(run_dir),
          "--model.path", str(REAL_FLUX.parent), "--data.prompt_file", str(ROOT / "assets/shapes/prompts/train.txt"),
          "--train.max_iterations", "2", "--grpo.group_size", "4", "--train.prompts_per_iteration", "2",
          "--logging.progress_bar", "false", "--checkpoint.export_at_end", "false",
          "--eval.num_prompts", "12", "--eval.grid_per_skill", "1"])
    check_artefacts(run_dir, iterations=2, size=64)


def test_resumed_run_reads_the_base_evaluation_back(tmp_path):
    """After a resume the weights are no longer the base model's: the saved base evaluation is used."""
    from types import SimpleNamespace

    from fastvideo.distributed import DistEnv
    from fastvideo.shapes.train_shapes import base_evaluation

    settings = EvalSettings(num_prompts=6, batch_size=6, grid_per_skill=1)
    cfg = SimpleNamespace(train=SimpleNamespace(mixed_precision="fp32"), logging=SimpleNamespace(progress_bar=False))
    trainer = SimpleNamespace(iteration=0, run_dir=tmp_path, env=DistEnv(), cfg=cfg, adapter=RenderingStub(),
                              eval_sampler=flow_sampler())
    fresh = base_evaluation(trainer, settings)
    trainer.iteration, trainer.adapter = 5, None  # a resumed trainer: the adapter must not be used
    again = base_evaluation(trainer, settings)
    assert again.records == fresh.records and torch.equal(again.grid_images, fresh.grid_images)
    assert base_evaluation(trainer, EvalSettings(num_prompts=7)) is None  # other settings: not reusable
