"""Score a model (base or a trained checkpoint) on a prompt file with one or more rewards.

    torchrun --nproc_per_node=N -m fastvideo.inference.evaluate --config configs/shapes/flux_grpo.yaml \
        --checkpoint outputs/shapes_flux_grpo --prompt_file assets/shapes/prompts/heldout.txt \
        --rewards shapes_verifier hps --reward_kwargs '{"hps": {"device": "cuda"}}' \
        --samples_per_prompt 4 --output_dir outputs/eval_shapes

Rewards: ``--rewards NAME ...`` (``NAME>THRESHOLD`` makes one binary, e.g. ``hps>0.28``) with
constructor arguments from ``--reward_kwargs``: a JSON object ``{"NAME": {kwarg: value}}``, or the
path of a JSON/YAML file holding that object. Without ``--rewards`` the config's ``rewards.terms``
(name, threshold, kwargs) are used. Each reward is reported on its own (weights are ignored).

Outputs in ``--output_dir``: ``scores.rank<r>.jsonl`` (per-prompt records, appended as prompts are
done: an interrupted evaluation resumes where it stopped, see ``fastvideo.inference.scoring``),
``eval_config.json``, ``results.json`` and ``results.md``: per reward mean ± std and a 95% confidence
interval over prompts (``fastvideo.inference.stats``); with a verifier reward whose categories
cover every prompt (``shapes_verifier`` on shapes-grammar prompts), the accuracy (all claims satisfied)
overall and per category.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from fastvideo.config import RewardTermConfig
from fastvideo.distributed import destroy_distributed, init_distributed
from fastvideo.inference.cli import (
    base_parser,
    model_entries,
    parse,
    read_prompts,
    sampling_kwargs,
    split_which,
)
from fastvideo.inference.scoring import Evaluator, ScoreJob
from fastvideo.inference.stats import fmt, summarize

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
logger = logging.getLogger("fastvideo")


def load_reward_kwargs(value: str | None) -> dict[str, dict]:
    """``{"name": {...}}`` from a JSON string or a JSON/YAML file."""
    if not value:
        return {}
    path = Path(value)
    if path.suffix in (".json", ".yaml", ".yml") and path.is_file():
        import yaml

        data = yaml.safe_load(path.read_text())
    else:
        data = json.loads(value)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"--reward_kwargs must map reward names to keyword dicts, got {data!r}")
    return data


def reward_terms(names: list[str] | None, kwargs: dict[str, dict], config_terms) -> list[RewardTermConfig]:
    """Reward terms from ``NAME[>THRESHOLD]`` names (or the config's terms) and per-name kwargs."""
    if not names:
        return [RewardTermConfig(t.name, 1.0, t.threshold, {**t.kwargs, **kwargs.get(t.name, {})})
                for t in config_terms]
    terms = []
    for spec in names:
        name, sep, threshold = spec.partition(">")
        terms.append(RewardTermConfig(name, 1.0, float(threshold) if sep else None, dict(kwargs.get(name, {}))))
    unused = set(kwargs) - {t.name for t in terms}
    if unused:
        raise ValueError(f"--reward_kwargs names rewards that are not scored: {sorted(unused)}")
    return terms


def accuracy_judge(terms: list[RewardTermConfig], prompts: list[str]) -> int | None:
    """The first term whose reward is a verifier that puts every prompt in a category (e.g.
    ``shapes_verifier`` on shapes-grammar prompts): its correctness is reported as the accuracy."""
    from fastvideo.rewards import reward_class

    for k, term in enumerate(terms):
        cls = reward_class(term.name)
        if cls.is_verifier and term.threshold is None and all(cls.prompt_category(p) for p in prompts):
            return k
    return None


def per_skill(records: list[dict], reward_keys: list[str]) -> dict:
    """Per shapes skill: prompts, accuracy (when verified) and mean of each reward."""
    skills = sorted({r["skill"] for r in records if r.get("skill")})
    table = {}
    for skill in skills:
        chosen = [r for r in records if r.get("skill") == skill]
        entry = {"n_prompts": len(chosen), "rewards": {k: summarize([r["rewards"][k] for r in chosen])["mean"]
                                                       for k in reward_keys}}
        if all("correct" in r for r in chosen):
            entry["accuracy"] = summarize([r["correct"] for r in chosen])
        table[skill] = entry
    return table


def summarize_records(records: list[dict]) -> dict:
    """results.json content (without the settings): per reward, overall accuracy, per skill."""
    keys = list(records[0]["rewards"]) if records else []
    result: dict = {"rewards": {k: summarize([r["rewards"][k] for r in records]) for k in keys}}
    if records and all("correct" in r for r in records):
        result["accuracy"] = summarize([r["correct"] for r in records])
    if records and all(r.get("skill") for r in records):
        result["per_skill"] = per_skill(records, keys)
    return result


def results_markdown(title: str, result: dict) -> str:
    """results.md: reward table, then the accuracy per shapes skill when present."""
    lines = [f"# {title}", "", "| reward | mean | std | 95% CI | samples | prompts |", "|---|---|---|---|---|---|"]
    rows = dict(result["rewards"])
    if "accuracy" in result:
        rows["accuracy (shapes, all claims)"] = result["accuracy"]
    for key, s in rows.items():
        lines.append(f"| {key} | {fmt(s['mean'])} | {fmt(s['std'])} | [{fmt(s['ci95'][0])}, {fmt(s['ci95'][1])}] "
                     f"| {s['n_samples']} | {s['n_prompts']} |")
    if "per_skill" in result:
        keys = list(result["rewards"])
        lines += ["", "## Per skill", "", "| skill | prompts | accuracy | 95% CI | " + " | ".join(keys) + " |",
                  "|---" * (4 + len(keys)) + "|"]
        for skill, entry in result["per_skill"].items():
            acc = entry.get("accuracy", {"mean": None, "ci95": [None, None]})
            lines.append(f"| {skill} | {entry['n_prompts']} | {fmt(acc['mean'])} | [{fmt(acc['ci95'][0])}, "
                         f"{fmt(acc['ci95'][1])}] | " + " | ".join(fmt(entry["rewards"][k]) for k in keys) + " |")
    lines += ["", "CI: Student t over per-prompt means (fastvideo.inference.stats)."]
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, title: str, settings: dict, records: list[dict]) -> dict:
    result = {"settings": settings, **summarize_records(records)}
    (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "results.md").write_text(results_markdown(title, result))
    return result


def main(argv: list[str] | None = None) -> dict | None:
    parser = base_parser("Score a model on a prompt file with one or more rewards (resumable).")
    parser.add_argument("--checkpoint", default=None, help="run/export/DCP dir (default: the base model); PATH@ema")
    parser.add_argument("--which", choices=("policy", "ema"), default=None, help="policy or EMA weights")
    parser.add_argument("--rewards", nargs="*", default=None, help="NAME or NAME>THRESHOLD (default: config's)")
    parser.add_argument("--reward_kwargs", default=None, help='JSON {"NAME": {...}} or a JSON/YAML file')
    parser.add_argument("--samples_per_prompt", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of every sample's initial noise")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier scores in --output_dir")
    args, cfg = parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    terms = reward_terms(args.rewards, load_reward_kwargs(args.reward_kwargs), cfg.rewards.terms)
    env = init_distributed()
    checkpoint = args.checkpoint
    if checkpoint and args.which:
        checkpoint = f"{split_which(checkpoint)[0]}@{args.which}"
    entry = model_entries([checkpoint] if checkpoint else [], include_base=not checkpoint)[0]
    prompts = read_prompts(args)
    job = ScoreJob(prompts, args.samples_per_prompt, args.seed, sampling_kwargs(args, cfg),
                   judge=accuracy_judge(terms, prompts))
    evaluator = Evaluator(cfg.model, terms, env, args.dtype)
    out_dir = Path(args.output_dir)
    records = evaluator.run(entry, job, out_dir, overwrite=args.overwrite)
    result = None
    if env.is_main:
        result = write_results(out_dir, f"Evaluation of {entry.label}", evaluator.settings(entry, job), records)
        logger.info("wrote %s", out_dir / "results.md")
    destroy_distributed()
    return result


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)
