"""MixGRPO's Table 1 on our own test bed: reward per second of the algorithm options.

On the shipped FLUX-style shapes model (``configs/shapes/flux_grpo*.yaml``) with the verifier reward,
the same seeds and the same prompt sequence, each option trains for ``--budget_s`` seconds of
*training* wall-clock (evaluations are not counted) and is evaluated on the held-out prompts every
``--eval_every_s`` seconds, always with the same 12-step ODE sampler, so accuracies are comparable:

- ``dance``: DanceGRPO defaults (every step SDE, a random 60% of the steps trained);
- ``mixgrpo``: window of 4 SDE steps, progressive; ``flash``: + DPM-Solver++ on 40% of the tail;
- ``flash_star``: window frozen at 0, tail compressed to 20%; ``cps``: the coefficient-preserving SDE.

    python benchmarks/bench_mixgrpo.py [--options dance mixgrpo ...] [--budget_s 240] [--eval_every_s 60]
        [--eval_prompts 200] [--threads 1] [--out outputs/bench_mixgrpo]
    python benchmarks/bench_mixgrpo.py --timing_rounds 8     # fair s/iter ratios only (interleaved)

Writes ``results.json``, ``table.md`` (model calls per sample in the rollout -- every sample goes
through one batched call per step --, trained steps per sample, training micro-batch calls, seconds
per iteration, held-out accuracy at the budget, seconds to reach the ``dance`` option's final
accuracy) and ``accuracy_vs_seconds.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from fastvideo.config import load_config  # noqa: E402
from fastvideo.distributed import DistEnv  # noqa: E402
from fastvideo.shapes.policy_eval import EvalSettings, evaluate_policy  # noqa: E402
from fastvideo.training.trainer import GRPOTrainer, build_sampler  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    "dance": "flux_grpo.yaml",
    "mixgrpo": "flux_grpo_mixgrpo.yaml",
    "flash": "flux_grpo_mixgrpo_flash.yaml",
    "flash_star": "flux_grpo_mixgrpo_flash_star.yaml",
    "cps": "flux_grpo_cps.yaml",
}


def held_out(trainer: GRPOTrainer, sampler, num_prompts: int) -> dict:
    """Binary accuracy and mean score on ``num_prompts`` held-out prompts (fixed prompts and noise)."""
    result = evaluate_policy(trainer.adapter, sampler, trainer.env, EvalSettings(num_prompts=num_prompts),
                             progress_bar=False)
    overall = result.summary["overall"]
    return {"acc": overall["acc"], "se": overall["se"], "score": overall["mean_score"]}


def run_option(name: str, args, out: Path) -> dict:
    """Train one option for the budget; evaluate at 0 and every ``eval_every_s`` training seconds."""
    cfg = load_config(REPO / "configs/shapes" / PRESETS[name],
                      ["--train.max_iterations", "100000", "--logging.progress_bar", "false",
                       "--checkpoint.export_at_end", "false", *args.override])
    cfg.output_dir = str(out / name)
    trainer = GRPOTrainer(cfg, DistEnv())
    eval_sampler = build_sampler(load_config(REPO / "configs/shapes/flux_grpo.yaml"), trainer.adapter)
    curve = [{"seconds": 0.0, "iteration": 0, **held_out(trainer, eval_sampler, args.eval_prompts)}]
    print(f"[{name}] base {curve[0]}", flush=True)
    history, trained = [], 0.0
    while trained < args.budget_s:
        start = time.perf_counter()
        metrics = trainer.train_iteration()
        trained += time.perf_counter() - start
        trainer.iteration += 1
        history.append({**metrics, "trained_steps": trainer.last_train_steps.shape[1]})
        if trained >= len(curve) * args.eval_every_s or trained >= args.budget_s:
            curve.append({"seconds": trained, "iteration": trainer.iteration,
                          **held_out(trainer, eval_sampler, args.eval_prompts)})
            print(f"[{name}] {curve[-1]}", flush=True)
    mean = lambda key: sum(m[key] for m in history) / len(history)  # noqa: E731
    return {"option": name, "iterations": trainer.iteration, "sec_per_iteration": trained / len(history),
            "calls_rollout": mean("calls/rollout"), "calls_train": mean("calls/train"),
            "trained_steps": mean("trained_steps"),
            "train_reward_first10": sum(m["reward_mean"] for m in history[:10]) / min(10, len(history)),
            "train_reward_last10": sum(m["reward_mean"] for m in history[-10:]) / min(10, len(history)),
            "curve": curve}


def interleaved_timing(names: list[str], rounds: int, out: Path) -> dict[str, float]:
    """Median seconds per iteration of each option, iterations interleaved round-robin so that
    machine load affects every option alike (the accuracy runs above run one option after another)."""
    import statistics

    trainers = {}
    for name in names:
        cfg = load_config(REPO / "configs/shapes" / PRESETS[name],
                          ["--train.max_iterations", "100000", "--logging.progress_bar", "false"])
        cfg.output_dir = str(out / f"timing_{name}")
        trainers[name] = GRPOTrainer(cfg, DistEnv())
    times = {name: [] for name in names}
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train_iteration()
            times[name].append(time.perf_counter() - start)
            trainer.iteration += 1
    return {name: statistics.median(values[1:]) for name, values in times.items()}


def seconds_to_reach(curve: list[dict], target: float) -> float | None:
    """First evaluated training time with accuracy >= target (None if never)."""
    return next((p["seconds"] for p in curve[1:] if p["acc"] >= target), None)


def write_table(results: list[dict], out: Path) -> str:
    dance = next((r for r in results if r["option"] == "dance"), results[0])
    target = dance["curve"][-1]["acc"]
    lines = [f"| option | rollout NFE/sample | trained steps/sample | train calls/iter | s/iter | speed-up | held-out acc, base → at budget "
             f"| s to reach {target:.3f} |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        reach = seconds_to_reach(r["curve"], target)
        base, final = r["curve"][0], r["curve"][-1]
        lines.append(f"| {r['option']} | {r['calls_rollout']:.0f} | {r['trained_steps']:.0f} | {r['calls_train']:.1f} | {r['sec_per_iteration']:.2f} "
                     f"| {dance['sec_per_iteration'] / r['sec_per_iteration']:.2f}× | {base['acc']:.3f} → "
                     f"{final['acc']:.3f} ± {final['se']:.3f} | {'—' if reach is None else f'{reach:.0f}'} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    return table


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot([p["seconds"] for p in r["curve"]], [p["acc"] for p in r["curve"]], marker="o", label=r["option"])
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel("held-out binary accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_seconds.png", dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--options", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--budget_s", type=float, default=240.0)
    parser.add_argument("--eval_every_s", type=float, default=60.0)
    parser.add_argument("--eval_prompts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="outputs/bench_mixgrpo")
    parser.add_argument("--override", nargs="*", default=[], help="extra config overrides for every option")
    parser.add_argument("--timing_rounds", type=int, default=0,
                        help="only measure seconds per iteration, options interleaved, this many rounds")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.timing_rounds:
        timing = interleaved_timing(args.options, args.timing_rounds, out)
        base = timing.get("dance", next(iter(timing.values())))
        lines = ["| option | s/iter (median, interleaved) | speed-up vs dance |", "|---|---|---|"]
        lines += [f"| {n} | {t:.2f} | {base / t:.2f}× |" for n, t in timing.items()]
        (out / "timing.md").write_text("\n".join(lines) + "\n")
        (out / "timing.json").write_text(json.dumps(timing, indent=1))
        print("\n".join(lines))
        return
    results = []
    for name in args.options:
        results.append(run_option(name, args, out))
        (out / "results.json").write_text(json.dumps(results, indent=1))
    print(write_table(results, out))
    plot(results, out)


if __name__ == "__main__":
    main()
