"""Best-of-N inference scaling: the expected best-of-N reward for N = 1, 2, 4, ..., N_max.

    torchrun --nproc_per_node=N -m fastvideo.inference.best_of_n --config configs/shapes/flux_grpo.yaml \
        --checkpoints outputs/shapes_flux_grpo --prompt_file assets/shapes/prompts/heldout.txt \
        --n_max 16 --reward shapes_verifier --output_dir outputs/best_of_n

N_max samples per prompt are generated once per model with fixed seeds (the same noise for every
model: ``fastvideo.inference.scoring.prompt_seeds``) and scored with one reward; best-of-N for every
N is computed from them. Default estimator ``unbiased``: the expected maximum over all N-subsets of
the N_max samples (``fastvideo.inference.stats.expected_best_of_n``), exact and lowest-variance;
``--estimator first`` takes the maximum of the first N samples. Both give the plain mean reward at
N = 1 and a curve non-decreasing in N. Models: the base (unless ``--no_base``) and each checkpoint.

Outputs: ``<out>/<model>/scores.rank*.jsonl`` (resumable, as ``evaluate``), ``best_of_n.json``,
``best_of_n.md`` (mean ± s.e.m. over prompts per N and model) and ``best_of_n.png``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from fastvideo.distributed import destroy_distributed, init_distributed
from fastvideo.inference.cli import (
    base_parser,
    model_entries,
    parse,
    read_prompts,
    safe_name,
    sampling_kwargs,
)
from fastvideo.inference.evaluate import load_reward_kwargs, reward_terms
from fastvideo.inference.scoring import Evaluator, ScoreJob
from fastvideo.inference.stats import ESTIMATORS, best_of_n_curve, fmt, n_values

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
logger = logging.getLogger("fastvideo")


def curves_markdown(table: dict) -> str:
    """Rows N, one column per model: mean ± s.e.m. of the expected best-of-N reward."""
    labels = list(table["models"])
    lines = [f"# Best-of-N: {table['reward']} ({table['estimator']} estimator, {table['n_prompts']} prompts)", "",
             "| N | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for row, n in enumerate(table["ns"]):
        cells = [table["models"][label]["curve"][row] for label in labels]
        lines.append(f"| {n} | " + " | ".join(f"{fmt(c['mean'])} ± {fmt(c['sem'])}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(table: dict, path: Path) -> Path:
    """Expected best-of-N reward against N (log2 axis), one line and 95% CI band per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 4))
    for label, model in table["models"].items():
        ns = [c["n"] for c in model["curve"]]
        means = [c["mean"] for c in model["curve"]]
        axis.plot(ns, means, marker="o", label=label)
        low, high = [c["ci95"][0] for c in model["curve"]], [c["ci95"][1] for c in model["curve"]]
        axis.fill_between(ns, low, high, alpha=0.2)
    axis.set_xscale("log", base=2)
    axis.set_xticks(table["ns"], [str(n) for n in table["ns"]])
    axis.set_xlabel("N (samples per prompt, best kept)")
    axis.set_ylabel(f"expected best-of-N {table['reward']}")
    axis.grid(alpha=0.3)
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_table(curves: dict, entries, reward_key: str, estimator: str, ns: list[int], n_prompts: int) -> dict:
    models = {e.label: {"checkpoint": e.checkpoint, "which": e.which, "curve": curves[e.label]} for e in entries}
    return {"reward": reward_key, "estimator": estimator, "ns": ns, "n_prompts": n_prompts, "models": models}


def main(argv: list[str] | None = None) -> dict | None:
    parser = base_parser("Expected best-of-N reward of the base model and trained checkpoints.")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="run/export/DCP dirs; PATH@ema for EMA")
    parser.add_argument("--labels", nargs="*", default=None, help="model names (base first unless --no_base)")
    parser.add_argument("--no_base", action="store_true", help="do not include the base model")
    parser.add_argument("--n_max", type=int, default=16, help="samples per prompt")
    parser.add_argument("--reward", default=None, help="NAME or NAME>THRESHOLD (default: the config's first)")
    parser.add_argument("--reward_kwargs", default=None, help='JSON {"NAME": {...}} or a JSON/YAML file')
    parser.add_argument("--estimator", choices=ESTIMATORS, default="unbiased")
    parser.add_argument("--seed", type=int, default=0, help="seed of every sample's initial noise")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier scores in --output_dir")
    args, cfg = parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    terms = reward_terms([args.reward] if args.reward else None, load_reward_kwargs(args.reward_kwargs),
                         cfg.rewards.terms[:1])
    env = init_distributed()
    entries = model_entries(args.checkpoints, include_base=not args.no_base, labels=args.labels)
    if not entries:
        parser.error("nothing to evaluate: give --checkpoints or drop --no_base")
    prompts, ns, out_dir = read_prompts(args), n_values(args.n_max), Path(args.output_dir)
    job = ScoreJob(prompts, args.n_max, args.seed, sampling_kwargs(args, cfg))
    evaluator = Evaluator(cfg.model, terms, env, args.dtype)
    term = terms[0]
    curves, reward_key = {}, term.name if term.threshold is None else f"{term.name}>{term.threshold:g}"
    for entry in entries:
        records = evaluator.run(entry, job, out_dir / safe_name(entry.label), overwrite=args.overwrite)
        if env.is_main:
            per_prompt = [next(iter(r["rewards"].values())) for r in records]
            curves[entry.label] = best_of_n_curve(per_prompt, ns, args.estimator)
    table = None
    if env.is_main:
        table = build_table(curves, entries, reward_key, args.estimator, ns, len(prompts))
        (out_dir / "best_of_n.json").write_text(json.dumps(table, indent=2) + "\n")
        (out_dir / "best_of_n.md").write_text(curves_markdown(table))
        plot_curves(table, out_dir / "best_of_n.png")
        logger.info("wrote %s", out_dir / "best_of_n.md")
    destroy_distributed()
    return table


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)
