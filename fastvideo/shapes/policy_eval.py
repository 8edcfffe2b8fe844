"""Held-out evaluation of a GRPO policy in a shapes world, before/after figure and run summary.

The policy is sampled exactly as in a rollout but with deterministic (ODE / DDIM eta=0) steps: the
adapter's ``predict`` driven by the trainer's sampler (same number of steps and shift), with the
initial noise of prompt ``i`` drawn from ``sample_seed(eval_seed, 0, i, 0, init)``, so the base and the
fine-tuned model see the same prompts *and* the same noise, whatever the batch size or the number
of ranks. The prompts, the verifier and the before/after figure come from the *world*
(``fastvideo.shapes.worlds``): ``image`` (default): ``num_prompts`` skill-balanced draws from the
grammar's held-out split with the same seed as ``fastvideo.shapes.pretrain.base_eval`` (the model card's
evaluation), verified by ``fastvideo.shapes.verifier.verify``; ``motion`` (video adapters): the
held-out motion prompts of ``fastvideo.shapes.pretrain.video.evaluate_video``, verified by
``fastvideo.shapes.motion_verifier.verify_video``.

Ranks: every rank samples and verifies a contiguous shard of the prompts (padded so that all ranks
run the same number of forward passes, which FSDP needs), then scores and images are gathered;
only rank 0 summarises and writes files.

Reported per skill of the world and overall (``fastvideo.shapes.pretrain.base_eval.summarize``): binary
accuracy ``acc`` with its binomial standard error ``se``, the mean verifier score and ``no_shape_frac``
(samples in which the verifier detects no shape at all, in any frame). Gains come with the standard
error of the *paired* difference (same prompts and noise): std(correct_final - correct_base) / sqrt(n),
and the same clustered by prompt (``paired_gain``): the honest error where few prompts carry many samples.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fastvideo.distributed import DistEnv, all_gather_cat
from fastvideo.grpo.rollout import initial_noise, make_sample_ids
from fastvideo.inference.sampling import eval_mode
from fastvideo.inference.sampling import generate as sample_latents
from fastvideo.shapes.grammar import SKILLS
from fastvideo.shapes.heldout import EVAL_SEED, summarize
from fastvideo.shapes.worlds import AUTO, IMAGE_WORLD, ImageWorld, get_world


@dataclass
class EvalSettings:
    """What the held-out evaluation samples (identical for the base and the fine-tuned model)."""

    num_prompts: int = 0
    """Skill-balanced draws from the held-out split (with replacement within a skill); 0 = the world's
    default (image 400, motion 200: the pretraining evaluations' draws)."""
    seed: int = EVAL_SEED
    """Seed of the prompt draws and of every image's initial noise."""
    batch_size: int = 100
    """Images per forward pass (per rank)."""
    grid_per_skill: int = 0
    """Columns of the before/after figure per skill: the first prompts of each skill; 0 = the world's
    default (image 2, motion 4)."""
    world: str = AUTO
    """image | motion | auto (motion for a video adapter, i.e. model.num_frames > 1)."""

    def resolved(self, world: ImageWorld) -> EvalSettings:
        """A copy with the world's name and its defaults in place of the 0 / auto fields."""
        return replace(self, world=world.name, num_prompts=self.num_prompts or world.default_num_prompts,
                       grid_per_skill=self.grid_per_skill or world.default_grid_per_skill)


@dataclass
class EvalResult:
    """One evaluated policy: per-image records (rank 0: all of them) and the grid's images."""

    records: list[dict]
    grid_images: torch.Tensor
    """(K, 3, H, W) in [0, 1] (videos: (K, T, 3, H, W)), the samples of ``grid_indices`` in that order."""
    skills: tuple[str, ...] = SKILLS
    """The world's skills (keys of the summary's ``per_skill``)."""

    @property
    def summary(self) -> dict:
        return summarize(self.records, self.skills)


def world_of(settings: EvalSettings, adapter=None) -> ImageWorld:
    """The settings' world (``auto``: decided by the adapter; without one: image)."""
    return get_world(settings.world, adapter)


def eval_prompts(settings: EvalSettings, world: ImageWorld | None = None) -> list[tuple[str, str]]:
    """The (text, skill) prompts of the evaluation, in order."""
    world = world or world_of(settings)
    return world.prompts(settings.num_prompts or world.default_num_prompts, settings.seed)


def grid_indices(skills: list[str], per_skill: int, order: tuple[str, ...] = SKILLS) -> list[int]:
    """Positions of the first ``per_skill`` prompts of each skill (in ``order``)."""
    chosen = []
    for skill in order:
        chosen += [i for i, s in enumerate(skills) if s == skill][:per_skill]
    return chosen


def shard(num: int, rank: int, world_size: int) -> tuple[list[int], int]:
    """Rank's contiguous slice of ``range(num)``, padded by repeating its last index to the common length
    ceil(num / world_size); returns (indices, number of real ones)."""
    size = math.ceil(num / world_size)
    real = list(range(rank * size, min((rank + 1) * size, num)))
    filler = real[-1:] if real else [num - 1]
    return real + filler * (size - len(real)), len(real)


@torch.no_grad()
def generate(adapter, sampler, texts: list[str], indices: list[int], *, seed: int, batch_size: int,
             device: torch.device, mixed_precision: str = "auto", progress: tqdm | None = None,
             first_frames=None) -> torch.Tensor:
    """Deterministic samples (N, 3, H, W) (videos: (N, T, 3, H, W)) in [0, 1] of ``texts``; sample i's
    noise depends on ``indices[i]``. ``first_frames(texts, indices)``, if given, is an image-to-video
    adapter's first frames for each batch (its own frame source is restored afterwards)."""
    chunks, previous = [], getattr(adapter, "first_frame_source", None)
    try:
        for start in range(0, len(texts), batch_size):
            batch_texts, batch_indices = texts[start:start + batch_size], indices[start:start + batch_size]
            if first_frames is not None:
                frames = first_frames(batch_texts, batch_indices)
                adapter.set_first_frame_source(lambda prompts, frames=frames: frames)
            cond = {k: v.to(device) for k, v in adapter.encode_prompts(batch_texts).items()}
            ids = make_sample_ids(batch_indices, 1)
            init = initial_noise(adapter.latent_shape(), ids, seed=seed, iteration=0, same_in_group=True,
                                 device=device)
            chunks.append(sample_latents(adapter, cond, init, sampler, ids=ids, seed=seed,
                                         mixed_precision=mixed_precision))
            if progress is not None:
                progress.update(len(batch_texts))
    finally:
        if first_frames is not None:
            adapter.set_first_frame_source(previous)
    return torch.cat(chunks)


def verify_images(images: torch.Tensor, texts: list[str], world: ImageWorld = IMAGE_WORLD) -> torch.Tensor:
    """(N, 3) float tensor of (score, correct, number of detections) per image (or video)."""
    rows = []
    for image, text in zip(images, texts):
        score, correct, detected = world.verify(image, text)
        rows.append([score, float(correct), float(detected)])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 3)


def evaluate_policy(adapter, sampler, env: DistEnv, settings: EvalSettings, *, mixed_precision: str = "auto",
                    desc: str = "eval", progress_bar: bool = True,
                    world: ImageWorld | None = None) -> EvalResult:
    """Sample and verify the held-out prompts on all ranks; rank 0 gets every record (others: []).

    ``world`` defaults to the settings' (``auto``: chosen from the adapter)."""
    world = world or world_of(settings, adapter)
    settings = settings.resolved(world)
    prompts = eval_prompts(settings, world)
    mine, real = shard(len(prompts), env.rank, env.world_size)
    texts = [prompts[i][0] for i in mine]
    bar = tqdm(total=len(mine), desc=desc, unit=world.unit, dynamic_ncols=True,
               disable=not (env.is_main and progress_bar))
    with eval_mode(adapter.transformer):
        images = generate(adapter, sampler, texts, mine, seed=settings.seed, batch_size=settings.batch_size,
                          device=env.device, mixed_precision=mixed_precision, progress=bar,
                          first_frames=world.first_frames(adapter, settings.seed))
    bar.set_postfix(verifying=len(texts))
    local = verify_images(images[:real], texts[:real], world)
    bar.close()
    padded = torch.cat([local, torch.full((len(mine) - real, 3), float("nan"))])
    pixels = (images * 255).round().to(torch.uint8)
    all_rows = all_gather_cat(padded.to(env.device)).cpu()
    all_pixels = all_gather_cat(pixels.to(env.device)).cpu()
    order = [i for r in range(env.world_size) for i in shard(len(prompts), r, env.world_size)[0]]
    real_rows = ~torch.isnan(all_rows[:, 0])
    by_index = {order[j]: j for j in range(len(order)) if real_rows[j]}
    grid = grid_indices([skill for _, skill in prompts], settings.grid_per_skill, world.skills)
    grid_images = all_pixels[[by_index[i] for i in grid]].float() / 255.0
    if not env.is_main:
        return EvalResult([], grid_images, world.skills)
    records = [_record(prompts[i], all_rows[by_index[i]]) for i in range(len(prompts))]
    return EvalResult(records, grid_images, world.skills)


def _record(prompt: tuple[str, str], row: torch.Tensor) -> dict:
    return {"text": prompt[0], "skill": prompt[1], "score": float(row[0]), "correct": float(row[1]),
            "num_detected": int(row[2])}


# --------------------------------------------------------------------------------------------- outputs


def paired_gain(base: list[dict], final: list[dict], skills: tuple[str, ...] = SKILLS) -> dict:
    """Accuracy and score gains (final - base) overall and per skill, with paired standard errors.

    ``se`` treats every evaluation sample as independent: std(d) / sqrt(n) over the per-sample
    differences d_i = correct_final - correct_base. ``se_prompt`` clusters the samples by prompt text
    (the cluster-robust standard error of a mean): with G prompts, S_g = sum over prompt g of (d_i - mean d),
    se_prompt = sqrt(G / (G - 1) * sum_g S_g^2) / n. When a few prompts carry many samples (the motion
    world's held-out split had 6 single-object prompts until 2026-12-07, 18 since), a gain made on one prompt shows as
    se_prompt >> se; with one sample per prompt the two are equal. ``prompts`` is G.
    """
    def block(pairs: list[tuple[dict, dict]]) -> dict:
        if not pairs:
            return {"acc": float("nan"), "se": float("nan"), "se_prompt": float("nan"),
                    "mean_score": float("nan"), "n": 0, "prompts": 0}
        diff = np.array([f["correct"] - b["correct"] for b, f in pairs])
        score = np.array([f["score"] - b["score"] for b, f in pairs])
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
        se_prompt, prompts = prompt_clustered_se(diff, [b["text"] for b, _ in pairs])
        return {"acc": float(diff.mean()), "se": se, "se_prompt": se_prompt, "mean_score": float(score.mean()),
                "n": len(diff), "prompts": prompts}

    pairs = list(zip(base, final))
    if any(b["text"] != f["text"] for b, f in pairs):
        raise ValueError("base and final evaluations used different prompts")
    return {"overall": block(pairs),
            "per_skill": {skill: block([p for p in pairs if p[0]["skill"] == skill]) for skill in skills}}


def prompt_clustered_se(values: np.ndarray, prompts: list[str]) -> tuple[float, int]:
    """(cluster-robust standard error of ``values.mean()`` with the samples clustered by prompt, number of
    prompts): sqrt(G / (G - 1) * sum_g (sum_{i in g} (v_i - mean v))^2) / n; NaN with fewer than 2 prompts."""
    residual = values - values.mean()
    sums: dict[str, float] = {}
    for text, r in zip(prompts, residual):
        sums[text] = sums.get(text, 0.0) + float(r)
    num = len(sums)
    if num < 2:
        return float("nan"), num
    total = float(np.sum(np.square(list(sums.values()))))
    return math.sqrt(num / (num - 1) * total) / len(values), num


def build_summary(results: dict[str, EvalResult | None], settings: EvalSettings, extra: dict,
                  world: ImageWorld = IMAGE_WORLD) -> dict:
    """summary.json content: one summary per evaluated policy ('base', 'final', 'final_ema') and gains."""
    summary: dict = {name: (r.summary if r is not None else None) for name, r in results.items()}
    base = results.get("base")
    summary["gain"] = {}
    for name in ("final", "final_ema"):
        if base is not None and results.get(name) is not None:
            summary["gain"][name] = paired_gain(base.records, results[name].records, world.skills)
    summary["eval"] = {**asdict(settings.resolved(world)), "split": "heldout",
                       "sampling": "deterministic (ODE / DDIM eta=0)", **world.eval_info}
    summary.update(extra)
    return summary


def write_records(records: list[dict], path: Path) -> None:
    """Per-image records as JSON lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def append_records(records: list[dict], path: Path) -> None:
    """Append records to ``path`` as JSON lines (created with its folder if missing): a benchmark's results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)


def save_before_after(results: dict[str, EvalResult | None], prompts: list[str], path: Path,
                      world: ImageWorld = IMAGE_WORLD, indices: list[int] | None = None) -> Path:
    """Grid PNG (the motion world: a strip of frames, and ``<path>.gif``): one row per evaluated policy
    (base, final[, final_ema]), one column per prompt; the row and column legend goes to ``<path>.txt``.

    ``indices``: the evaluation positions of the columns (``grid_indices``); with them each tile's
    verdict (``records[i]["correct"]``) and skill are shown (image world: frame green / red, prompt
    above, policy and its held-out accuracy at the left) and listed in the legend."""
    from fastvideo.shapes.figure import FigureLabels

    rows = [(name, r) for name, r in results.items() if r is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    known = indices is not None and all(len(r.records) > max(indices, default=-1) for _, r in rows)
    verdicts = [[float(r.records[i]["correct"]) for i in indices] if known else None for _, r in rows]
    notes = [f"held-out acc {100 * r.summary['overall']['acc']:.1f}% (n={len(r.records)})" if r.records else ""
             for _, r in rows]
    skills = [rows[0][1].records[i]["skill"] for i in indices] if known and rows else []
    labels = FigureLabels(columns=list(prompts), rows=[name for name, _ in rows], verdicts=verdicts,
                          notes=notes, skills=skills)
    world.save_figure([r.grid_images for _, r in rows], path, labels)
    legend = ["rows: " + ", ".join(name for name, _ in rows), "columns:"]
    for i, text in enumerate(prompts):
        marks = "" if not known else "  [" + ", ".join(
            f"{name} {'correct' if v[i] >= 0.5 else 'wrong'}" for (name, _), v in zip(rows, verdicts)) + "]"
        legend.append(f"  {i}: {text}{marks}")
    path.with_suffix(".txt").write_text("\n".join(legend + world.legend()) + "\n")
    return path


def format_comparison(summary: dict) -> str:
    """Text table: accuracy ± s.e., mean score and no-shape fraction per skill for each policy, then the paired
    gains of the fine-tuned policies (``summary["gain"]``) with both standard errors."""
    names = [n for n in ("base", "final", "final_ema") if summary.get(n)]
    header = f"{'skill':<14}" + "".join(f" {n + ' acc':>18} {'score':>6} {'none':>5}" for n in names)
    lines = [header]
    skills = list(summary[names[0]]["per_skill"]) if names else []
    for skill in [*skills, "overall"]:
        line = f"{skill:<14}"
        for name in names:
            stats = summary[name]["overall"] if skill == "overall" else summary[name]["per_skill"][skill]
            line += (f" {_number(stats['acc'], '10.3f')} ± {_number(stats['se'], '.3f')}"
                     f" {_number(stats['mean_score'], '6.3f')} {_number(stats['no_shape_frac'], '5.2f')}")
        lines.append(line)
    for name in ("final", "final_ema"):
        gain = summary.get("gain", {}).get(name)
        if gain:
            lines.append(f"paired gain of {name} over base (± per-sample s.e.; ± s.e. clustered by prompt):")
            for skill, stats in [*gain["per_skill"].items(), ("overall", gain["overall"])]:
                lines.append(f"  {skill:<12} {_number(stats['acc'], '+.3f')} ± {_number(stats['se'], '.3f')}"
                             f"; ± {_number(stats.get('se_prompt', float('nan')), '.3f')}"
                             f" over {stats.get('prompts', 0)} prompts, {stats['n']} samples")
    return "\n".join(lines)


def _number(value: float | None, spec: str) -> str:
    """Formatted number, or 'n/a' padded to the same width for a missing (None / NaN) value."""
    if value is None or not math.isfinite(value):
        return "n/a".rjust(int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0))
    return format(value, spec)
