"""Score a model on a prompt file: n samples per prompt, batched, resumable, split over ranks.

Seeds: sample j of prompt i starts from the noise of
``sample_seed(seed, 0, i, j, PURPOSE_INIT_NOISE)`` (``fastvideo.grpo.rollout``): independent across
prompts and samples, identical for every model scored with the same ``seed`` (paired comparisons),
and independent of the batch size and the number of ranks.

Resumability: every prompt's record is appended to ``<out>/scores.rank<r>.jsonl`` as soon as its
batch is scored (one JSON line per prompt: index, prompt, seeds, rewards per sample, and a verifier
reward's prompt category / correctness); on restart, prompts already present in any ``scores*.jsonl`` are not sampled or scored
again. ``<out>/eval_config.json`` records what was scored; a restart with different settings is an
error (``overwrite=True`` starts afresh).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fastvideo.grpo.rollout import PURPOSE_INIT_NOISE, sample_seed
from fastvideo.inference.sampling import PromptEncodings, sample

logger = logging.getLogger("fastvideo")

SETTINGS_FILE = "eval_config.json"
SCORES_GLOB = "scores*.jsonl"


def prompt_seeds(seed: int, prompt_index: int, num_samples: int) -> list[int]:
    """The fixed noise seeds of a prompt's samples."""
    return [sample_seed(seed, 0, prompt_index, j, PURPOSE_INIT_NOISE) for j in range(num_samples)]


def read_records(out_dir: Path) -> dict[int, dict]:
    """Scored prompts by index, from every ``scores*.jsonl`` (a truncated last line is ignored)."""
    records: dict[int, dict] = {}
    for path in sorted(out_dir.glob(SCORES_GLOB)):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[int(record["index"])] = record
    return records


def settings_conflict(out_dir: Path, settings: dict) -> str | None:
    """Why ``out_dir`` cannot be resumed with ``settings`` (None when it can: same settings or none saved)."""
    path = out_dir / SETTINGS_FILE
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if saved == json.loads(json.dumps(settings)):
        return None
    changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    return (f"{out_dir} holds scores of different settings ({', '.join(changed)}): "
            "use another --output_dir or --overwrite")


def save_settings(out_dir: Path, settings: dict, overwrite: bool) -> None:
    """(Re)write eval_config.json; with ``overwrite`` first delete the earlier scores."""
    if overwrite:
        for old in out_dir.glob(SCORES_GLOB):
            old.unlink()
    (out_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _append(path: Path, records: list[dict]) -> None:
    """Append JSON lines, first closing a line a killed run may have left unterminated."""
    with path.open("a+") as f:
        f.seek(0, 2)
        if f.tell() > 0:
            f.seek(f.tell() - 1)
            if f.read(1) != "\n":
                f.write("\n")
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()


@dataclass
class ScoreJob:
    """What to score: prompts (file order), samples per prompt, seed, and the sampling kwargs."""

    prompts: list[str]
    samples_per_prompt: int
    seed: int
    sampling: dict
    judge: int | None = None
    """Index of the reward term whose verifier (``Reward.is_verifier``) records each sample's
    all-claims-correct flag and each prompt's category (per-category accuracy); None: no accuracy."""


def reward_labels(rewards) -> list[str]:
    """Report names of a RewardSet's terms: the reward name, ``name>threshold`` for binary ones (unique)."""
    from fastvideo.rewards.reward_set import unique_keys

    return unique_keys([term.reward.name for term in rewards.terms])


def score_chunk(adapter, rewards, job: ScoreJob, indices: Sequence[int]) -> list[dict]:
    """Sample and score the prompts ``indices`` (all their samples in one batched pass)."""
    n = job.samples_per_prompt
    texts = [job.prompts[i] for i in indices for _ in range(n)]
    seeds = [s for i in indices for s in prompt_seeds(job.seed, i, n)]
    images = sample(adapter, texts, seeds, encodings=PromptEncodings(adapter, texts), **job.sampling)
    _, breakdown = rewards(images, texts)
    breakdown = dict(zip(reward_labels(rewards), breakdown.values()))
    judge = rewards.terms[job.judge].reward if job.judge is not None else None
    correct = judge.correct_batch(images, texts) if judge is not None else None
    records = []
    for k, index in enumerate(indices):
        rows = slice(k * n, (k + 1) * n)
        record = {"index": index, "prompt": job.prompts[index], "seeds": seeds[rows],
                  "rewards": {key: values[rows].tolist() for key, values in breakdown.items()},
                  "skill": judge.prompt_category(job.prompts[index]) if judge is not None else None}
        if correct is not None:
            record["correct"] = correct[rows].tolist()
        records.append(record)
    return records


def pending_prompts(out_dir: str | Path, prompts: list[str], rank: int = 0, world_size: int = 1) -> list[int]:
    """This rank's prompts (index % world_size == rank) that have no record yet."""
    done = read_records(Path(out_dir))
    return [i for i in range(rank, len(prompts), world_size) if i not in done or done[i]["prompt"] != prompts[i]]


def score_prompts(adapter, rewards, job: ScoreJob, out_dir: str | Path, indices: Sequence[int], *,
                  rank: int = 0, prompts_per_batch: int = 1) -> None:
    """Score the prompts ``indices``, ``prompts_per_batch`` at a time, appending each batch's records."""
    path = Path(out_dir) / f"scores.rank{rank}.jsonl"
    step = max(1, prompts_per_batch)
    for start in range(0, len(indices), step):
        _append(path, score_chunk(adapter, rewards, job, list(indices[start:start + step])))


def collect_records(out_dir: str | Path, prompts: list[str]) -> list[dict]:
    """The records of ``prompts`` in file order (every prompt must have been scored)."""
    records = read_records(Path(out_dir))
    missing = [i for i, p in enumerate(prompts) if i not in records or records[i]["prompt"] != p]
    if missing:
        raise RuntimeError(f"{len(missing)} prompts have no score in {out_dir} (first: {missing[:5]})")
    return [records[i] for i in range(len(prompts))]


def build_rewards(terms, device: torch.device):
    """A RewardSet of reward terms (RewardTermConfig) on ``device``; scored term by term."""
    from fastvideo.config import RewardsConfig
    from fastvideo.rewards import RewardSet

    return RewardSet.from_config(RewardsConfig(terms=list(terms)), device=device)


class Evaluator:
    """Scores models on a job, loading the base adapter and the rewards once, only when needed."""

    def __init__(self, model_cfg, terms, env, dtype: str = "auto"):
        self.model_cfg, self.terms, self.env, self.dtype = model_cfg, list(terms), env, dtype
        self.adapter = None
        self.rewards = None

    def settings(self, entry, job: ScoreJob) -> dict:
        """What determines the scores (compared on resume); the batch size is not part of it."""
        m = self.model_cfg
        return {"model": {"name": m.name, "path": m.path, "tiny": m.tiny, "height": m.height, "width": m.width,
                          "num_frames": m.num_frames, "guidance_scale": m.guidance_scale},
                "checkpoint": None if entry.checkpoint is None else str(entry.checkpoint), "which": entry.which,
                "dtype": self.dtype, "seed": job.seed, "samples_per_prompt": job.samples_per_prompt,
                "sampling": {k: v for k, v in job.sampling.items() if k != "batch_size"},
                "rewards": [asdict(term) for term in self.terms]}

    def run(self, entry, job: ScoreJob, out_dir: str | Path, *, overwrite: bool = False) -> list[dict] | None:
        """Score ``entry`` (resuming), then return every prompt's record on rank 0 (None elsewhere)."""
        from fastvideo.distributed import barrier
        from fastvideo.inference.checkpoints import apply_checkpoint

        out_dir, env = Path(out_dir), self.env
        out_dir.mkdir(parents=True, exist_ok=True)
        settings = self.settings(entry, job)
        conflict = None if overwrite else settings_conflict(out_dir, settings)
        if conflict:
            raise ValueError(conflict)  # every rank read the same file: all of them stop
        barrier()
        if env.is_main:
            save_settings(out_dir, settings, overwrite)
        barrier()
        todo = pending_prompts(out_dir, job.prompts, env.rank, env.world_size)
        if todo:
            if self.adapter is None:
                from fastvideo.models import build_adapter

                self.adapter = build_adapter(self.model_cfg, env.device)
                self.rewards = build_rewards(self.terms, env.device)
            apply_checkpoint(self.adapter, entry.checkpoint, entry.which, dtype=self.dtype)
            per_batch = max(1, job.sampling.get("batch_size", 8) // job.samples_per_prompt)
            score_prompts(self.adapter, self.rewards, job, out_dir, todo, rank=env.rank, prompts_per_batch=per_batch)
        barrier()
        return collect_records(out_dir, job.prompts) if env.is_main else None

