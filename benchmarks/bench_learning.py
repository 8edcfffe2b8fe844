"""Learning benchmark: held-out accuracy of the shapes FLUX base after a fixed wall-clock budget of
training, for every objective / sampler option and for a pretraining-only control, on several seeds.

    python benchmarks/bench_learning.py [--options dance nft ...] [--seeds 0 1 2] [--minutes 10]
        [--eval_prompts 400] [--out outputs/bench_learning] [--plot assets/readme/bench_learning.png]
        [--section.field value ...]   (config overrides for every run, e.g. the reward)

Every run starts from the shipped ``assets/shapes/flux`` with ``configs/shapes/flux_grpo.yaml`` plus the
option's overrides and ``train.seed = seed`` (for a seed, every option sees the same prompt stream),
trains until ``train.max_minutes`` (the trainer stops after the first iteration past it) and is
evaluated on the same held-out prompts and noise as the base (``fastvideo.shapes.policy_eval``, ODE,
the config's 12 steps). ``clean_renders`` is the control: the same minutes spent on the pretraining
loss on fresh clean renders of train prompts alone (``fastvideo.shapes.clean_renders``), no reward.

Reported per run (``<out>/results.jsonl``, one line each; a rerun skips the runs already there):
accuracy, the paired gain over the base with its standard error std(c_run - c_base) / sqrt(n), mean
verifier score, no-shape fraction, iterations and training seconds. ``--plot`` draws accuracy against
training seconds (mean over seeds, error bar = s.e. over seeds) with the base as a line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/shapes/flux_grpo.yaml"
CONTROL = "clean_renders"
FORWARD_ROLLOUT = ["--sampler.sde_type", "ode", "--sampler.init_same_noise", "false"]

OPTIONS: dict[str, list[str]] = {
    "dance": [],
    "flow_grpo": ["--sampler.sde_type", "flow_grpo", "--sampler.eta", "0.7"],
    "mixgrpo": ["--sampler.window_size", "4", "--sampler.window_shift_every", "10"],
    "flash_star": ["--sampler.window_size", "4", "--sampler.window_strategy", "frozen",
                   "--sampler.ode_solver", "dpm2", "--sampler.flash_ratio", "0.2"],
    "nft": ["--grpo.objective", "nft", *FORWARD_ROLLOUT],
    "awm": ["--grpo.objective", "awm", *FORWARD_ROLLOUT],
    # AWM on DanceGRPO's own SDE rollouts (shared initial noise): the same samples and advantages as "dance",
    # only the likelihood whose gradient the advantage weights differs (docs/shapes_learning_log.md rows 72-76)
    "awm_sde": ["--grpo.objective", "awm"],
    "rft": ["--grpo.objective", "rft", *FORWARD_ROLLOUT],
    CONTROL: [],
}
"""Overrides of ``configs/shapes/flux_grpo.yaml`` per option (the control's are unused)."""

logger = logging.getLogger("bench_learning")


def eval_settings(num_prompts: int):
    from fastvideo.shapes.policy_eval import EvalSettings

    return EvalSettings(num_prompts=num_prompts, world="image")


def run_config(option: str, seed: int, minutes: float, run_dir: Path, extra: list[str]):
    from fastvideo.config import load_config

    overrides = [*OPTIONS[option], *extra, "--train.seed", str(seed), "--train.max_minutes", str(minutes),
                 "--train.max_iterations", "100000", "--checkpoint.export_at_end", "false",
                 "--checkpoint.every", "0", "--logging.progress_bar", "false"]
    cfg = load_config(CONFIG, overrides)
    cfg.output_dir = str(run_dir)
    return cfg


def evaluate(adapter, sampler, settings) -> list[dict]:
    from fastvideo.distributed import DistEnv
    from fastvideo.shapes.policy_eval import evaluate_policy

    return evaluate_policy(adapter, sampler, DistEnv(), settings, progress_bar=False).records


def base_records(out: Path, settings, extra: list[str]) -> list[dict]:
    """The base policy's held-out records (computed once per output directory and evaluation size, then
    read back): the model of the config with the run's overrides (e.g. another ``--model.path``)."""
    from fastvideo.models import build_adapter
    from fastvideo.training.trainer import build_sampler

    path = out / f"base_{settings.num_prompts}.json"
    if path.exists():
        return json.loads(path.read_text())
    cfg = run_config("dance", 0, 0, out / "base", extra)
    adapter = build_adapter(cfg.model, "cpu")
    records = evaluate(adapter, build_sampler(cfg, adapter), settings)
    path.write_text(json.dumps(records))
    return records


def train_one(option: str, seed: int, minutes: float, out: Path, settings, extra: list[str]) -> tuple[list, dict]:
    """Train one (option, seed) for ``minutes`` and evaluate it: (records, facts)."""
    from fastvideo.distributed import DistEnv
    from fastvideo.models import build_adapter
    from fastvideo.training.trainer import GRPOTrainer, build_sampler

    cfg = run_config(option, seed, minutes, out / f"{option}-s{seed}-{minutes:g}min", extra)
    started = time.perf_counter()
    if option == CONTROL:
        from fastvideo.shapes.clean_renders import train_on_clean_renders

        torch.manual_seed(seed)
        adapter = build_adapter(cfg.model, "cpu")
        facts = train_on_clean_renders(adapter, minutes=minutes, seed=1000 + seed)
        facts["iterations"] = facts.pop("steps")
        sampler = build_sampler(cfg, adapter)
    else:
        trainer = GRPOTrainer(cfg, DistEnv())
        history = trainer.train()
        adapter, sampler = trainer.adapter, trainer.sampler
        facts = {"iterations": len(history), "reward_first": history[0]["reward_mean"] if history else None,
                 "reward_last3": float(np.mean([m["reward_mean"] for m in history[-3:]])) if history else None}
    facts["train_seconds"] = time.perf_counter() - started
    return evaluate(adapter, sampler, settings), facts


def paired(base: list[dict], run: list[dict]) -> dict:
    correct = np.array([r["correct"] for r in run])
    diff = correct - np.array([b["correct"] for b in base])
    n = len(diff)
    return {"acc": float(correct.mean()), "acc_se": float(correct.std(ddof=1) / np.sqrt(n)),
            "gain": float(diff.mean()), "gain_se": float(diff.std(ddof=1) / np.sqrt(n)),
            "score": float(np.mean([r["score"] for r in run])),
            "no_shape_frac": float(np.mean([r["num_detected"] == 0 for r in run])), "n": n}


def read_results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def plot(results: list[dict], base_acc: float, path: Path) -> None:
    """Accuracy against training seconds per option (mean over seeds; error bar: s.e. over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.axhline(base_acc, color="grey", linestyle="--", label=f"shipped base ({base_acc:.3f})")
    for option in dict.fromkeys(r["option"] for r in results):
        rows = [r for r in results if r["option"] == option]
        for minutes in sorted({r["minutes"] for r in rows}):
            cell = [r for r in rows if r["minutes"] == minutes]
            acc = np.array([r["acc"] for r in cell])
            secs = np.mean([r["train_seconds"] for r in cell])
            err = acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else cell[0]["acc_se"]
            ax.errorbar(secs, acc.mean(), yerr=err, fmt="o", capsize=3, label=f"{option} ({len(acc)} seeds)")
    ax.set_xlabel("training wall-clock seconds (2 CPU cores)")
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per run")
    parser.add_argument("--eval_prompts", type=int, default=400)
    parser.add_argument("--out", default="outputs/bench_learning")
    parser.add_argument("--plot", default=None, help="write the accuracy-vs-seconds figure here")
    parser.add_argument("--threads", type=int, default=2)
    args, overrides = parser.parse_known_args(argv)  # anything else: config overrides for every run
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = eval_settings(args.eval_prompts)
    base = base_records(out, settings, overrides)
    results_path = out / "results.jsonl"
    done = {(r["option"], r["seed"], r["minutes"], r["n"]) for r in read_results(results_path)}
    for seed in args.seeds:
        for option in args.options:
            if (option, seed, args.minutes, len(base)) in done:
                continue
            records, facts = train_one(option, seed, args.minutes, out, settings, overrides)
            row = {"option": option, "seed": seed, "minutes": args.minutes, **paired(base, records), **facts}
            with results_path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            logger.info("%s seed %d: acc %.3f (gain %+.3f ± %.3f), %d iterations", option, seed, row["acc"],
                        row["gain"], row["gain_se"], row["iterations"])
    results = [r for r in read_results(results_path) if r["n"] == len(base)]
    base_acc = float(np.mean([b["correct"] for b in base]))
    print(f"base: acc {base_acc:.3f} on {len(base)} held-out prompts")
    for r in results:
        print(f"{r['option']:<14} seed {r['seed']} {r['minutes']:g} min: acc {r['acc']:.3f} gain {r['gain']:+.3f} "
              f"± {r['gain_se']:.3f}  iterations {r['iterations']}  no-shape {r['no_shape_frac']:.3f}")
    if args.plot:
        plot(results, base_acc, Path(args.plot))
    return results


if __name__ == "__main__":
    main()
