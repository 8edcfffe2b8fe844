"""Gradient coherence: is the GRPO gradient signal or noise at a given batch size?

Runs K independent iterations (different prompts, noises and seeds) of the same trainer from the
same weights without stepping, records each iteration's gradient (after clipping; the direction is
what Adam's update follows), and reports the mean pairwise cosine between them. Independent noisy
estimates g_k = g + n_k of one true gradient g have

    E[cos(g_j, g_k)] ~= |g|^2 / (|g|^2 + E|n|^2)

so a mean cosine near 0 means each step moves in a random direction (docs/shapes_grpo_findings.md).
``--reference_weights`` (a ``diffusion_pytorch_model.safetensors`` of a fine-tuned run of the same model) also
reports each variant's mean cos(-g_k, theta_ref - theta_0): whether its descent directions point at a weight
change known to raise held-out accuracy (e.g. the front door's ``<run>/export/transformer``).
Compare variants in one run, e.g. i.i.d. vs block (low-frequency) exploration noise:

    python benchmarks/bench_gradient_coherence.py --config configs/shapes/flux_grpo.yaml --iterations 6 \
        --variant "iid:" --variant "block4:--sampler.noise_block 4 --sampler.eta 0.15"
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import statistics

import torch

from fastvideo.config import load_config
from fastvideo.distributed import DistEnv


def recorded_gradients(config: str, overrides: list[str], iterations: int, first_iteration: int,
                       fixed_prompts: bool = False, reference: str | None = None) -> tuple[list, torch.Tensor | None]:
    """Gradients of ``iterations`` iterations from the initial weights (the optimizer never steps).

    ``fixed_prompts``: every iteration uses the first iteration's prompts (only the noises differ), so
    the cosine measures the estimator's noise for one objective, not also how prompt sets differ.
    ``reference``: also return theta_ref - theta_0 over the same parameters (names as in the model).
    """
    import fastvideo.training.trainer
    from fastvideo.training.trainer import GRPOTrainer

    if fixed_prompts:
        draw = fastvideo.training.trainer.iteration_prompts
        fastvideo.training.trainer.iteration_prompts = lambda n, _it, k, seed: draw(n, first_iteration, k, seed)

    cfg = load_config(config, [*overrides, "--logging.progress_bar", "false", "--checkpoint.export_at_end", "false"])
    cfg.output_dir = "outputs/bench_gradient_coherence"
    trainer = GRPOTrainer(cfg, DistEnv())
    named = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    grads: list[torch.Tensor] = []
    delta = None
    if reference:
        from safetensors.torch import load_file

        ref = load_file(reference)
        missing = [n for n, _ in named if n not in ref]
        if missing:
            raise SystemExit(f"{reference} lacks {len(missing)} trained parameters, e.g. {missing[0]}")
        delta = torch.cat([(ref[n].float() - p.detach().float()).flatten() for n, p in named])

    def record(*_args, **_kwargs):
        grads.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]))

    trainer.optimizer.step = record
    try:
        for index in range(iterations):
            trainer.iteration = first_iteration + index
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.train_iteration()
    finally:
        if fixed_prompts:
            fastvideo.training.trainer.iteration_prompts = draw
    return grads, delta


def pairwise_cosines(grads: list[torch.Tensor]) -> list[float]:
    return [torch.nn.functional.cosine_similarity(a, b, dim=0).item() for a, b in itertools.combinations(grads, 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shapes/flux_grpo.yaml")
    parser.add_argument("--iterations", type=int, default=6, help="independent iterations per variant")
    parser.add_argument("--first_iteration", type=int, default=1000, help="iteration index of the first draw")
    parser.add_argument("--fixed_prompts", action="store_true",
                        help="same prompts every iteration (only the noises differ)")
    parser.add_argument("--reference_weights", default=None,
                        help="safetensors of a fine-tuned run: also report cos(-gradient, its weight change)")
    parser.add_argument("--variant", action="append", default=None,
                        help="'name:--section.field value ...' (repeatable); default: the config as is")
    args = parser.parse_args()
    results = {}
    for spec in args.variant or ["config:"]:
        name, _, overrides = spec.partition(":")
        grads, delta = recorded_gradients(args.config, shlex.split(overrides), args.iterations, args.first_iteration,
                                          args.fixed_prompts, args.reference_weights)
        if len(grads) < 2:
            raise SystemExit(f"{name}: fewer than 2 updates recorded (skipped iterations?)")
        cosines = pairwise_cosines(grads)
        mean = statistics.fmean(cosines)
        sem = statistics.stdev(cosines) / len(cosines) ** 0.5 if len(cosines) > 1 else float("nan")
        results[name] = {"mean_cosine": mean, "sem": sem, "pairs": len(cosines), "updates": len(grads)}
        print(f"{name:>12}: mean pairwise gradient cosine {mean:+.4f} +- {sem:.4f} over {len(cosines)} pairs")
        if delta is not None:
            along = [torch.nn.functional.cosine_similarity(-g, delta, dim=0).item() for g in grads]
            results[name].update(reference_cosine=statistics.fmean(along),
                                 reference_sem=statistics.stdev(along) / len(along) ** 0.5)
            print(f"{name:>12}: mean cos(-gradient, reference change) {results[name]['reference_cosine']:+.4f} "
                  f"+- {results[name]['reference_sem']:.4f} over {len(along)} iterations")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
