"""Does a shapes FLUX model read the relation of a position prompt? A probe through the stock pipeline.

    python benchmarks/bench_relation_probe.py [--base assets/shapes/flux] [--runs RUN ...] [--num 400]
        [--seed 20261201] [--steps 16] [--threads 2] [--out outputs/relation_probe.jsonl]

For every held-out position prompt "A rel B" among ``--num`` skill-balanced draws (``--seed``, not the
training evaluation's), four prompts are sampled with the same noise (generator seed ``seed + i``):

- ``original``  "A rel B"
- ``converse``  "B rel' A" (rel' the opposite relation): the same scene in other words
- ``swapped``   "B rel A": the objects' places exchanged
- ``flipped``   "A rel' B": the relation word exchanged

and every image is verified against the *original* prompt (``verifier.verify``). A model that reads the
relation passes ``original`` and ``converse`` and fails ``swapped`` and ``flipped`` (each then puts A on
the wrong side); a model blind to it passes all four alike, at the rate its layout prior happens to
satisfy the relation. Printed per model: accuracy per variant, the paired differences
original − flipped and converse − swapped (the relation-reading margins, with s.e.
std(diff) / sqrt(n)) and the mean absolute pixel difference of each variant's image from the original's,
then the loss gap (``loss_gap``): the flow-matching loss on clean renders of the original prompts with the
swapped / flipped prompt minus that with the original, at t = 0.95 and 0.8 (x 1e3, paired s.e.); it
turns positive before the sampled accuracies separate.
``--runs``: front-door output directories, probed with ``<run>/export/transformer`` in the base pipeline.
``--teach_minutes M`` adds a supervised question: the base's transformer fine-tuned for M minutes on clean
renders of *position* train prompts alone (``clean_renders.train_on_clean_renders``, frozen text encoders,
``--teach_lr``), then probed: can the transformer learn to read relations from the frozen encoders at all?
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fastvideo.shapes.grammar import RELATIONS  # noqa: E402
from fastvideo.shapes.heldout import EVAL_SEED, heldout_prompts  # noqa: E402
from fastvideo.shapes.policy_eval import append_records  # noqa: E402
from fastvideo.shapes.pretrain.base_eval import sample_images, sampling_kwargs  # noqa: E402
from fastvideo.shapes.verifier import verify  # noqa: E402

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
VARIANTS = ("original", "converse", "swapped", "flipped")


def split_position(text: str) -> tuple[str, str, str]:
    """"A rel B" -> (A, rel, B) for a position prompt of the grammar."""
    for relation in RELATIONS:
        first, sep, second = text.partition(f" {relation} ")
        if sep:
            return first, relation, second
    raise ValueError(f"not a position prompt: {text!r}")


def variants(text: str) -> dict[str, str]:
    """The four prompts of ``VARIANTS`` for one position prompt."""
    first, relation, second = split_position(text)
    return {"original": text, "converse": f"{second} {OPPOSITE[relation]} {first}",
            "swapped": f"{second} {relation} {first}", "flipped": f"{first} {OPPOSITE[relation]} {second}"}


def _paired(a: np.ndarray, b: np.ndarray) -> dict:
    diff = a - b
    return {"diff": float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0}


def probe(pipe, texts: list[str], steps: int, kwargs: dict, seed: int, batch_size: int = 50) -> dict:
    """Accuracy per variant under the original prompts, the two margins and the pixel differences."""
    rewritten = [variants(text) for text in texts]
    prompts = {name: [v[name] for v in rewritten] for name in VARIANTS}
    images = {name: sample_images(pipe, batch, steps, kwargs, seed, batch_size) for name, batch in prompts.items()}
    correct = {name: np.array([float(verify(image, text).correct) for image, text in zip(images[name], texts)])
               for name in VARIANTS}
    return {"n": len(texts), "acc": {name: float(c.mean()) for name, c in correct.items()},
            "original_minus_flipped": _paired(correct["original"], correct["flipped"]),
            "converse_minus_swapped": _paired(correct["converse"], correct["swapped"]),
            "pixel_diff": {name: float((images[name] - images["original"]).abs().mean()) for name in VARIANTS[1:]}}


@torch.no_grad()
def loss_gap(pipe, texts: list[str], kwargs: dict, seed: int, reps: int = 4, times: tuple = (0.95, 0.8)) -> dict:
    """Flow-matching loss with the swapped / flipped prompt minus that with the original, paired.

    ``reps`` clean renders of each original prompt (``render_prompt``), noised to x_t = (1 - t) x0 + t eps at
    each of ``times`` with the same eps for every variant; loss = mean (v(x_t, t, prompt) - (eps - x0))^2 per
    sample. A model blind to relations has gaps of 0 (within s.e.); one that places objects by the
    relation has positive gaps, largest at high noise where the layout is decided. Cheap (no sampling)
    and sensitive: it moves before the probe's sampled accuracies do (docs/shapes_learning_log.md row 101)."""
    from diffusers import FluxPipeline

    from fastvideo.shapes.pretrain.data import images_to_tensor
    from fastvideo.shapes.pretrain.train_flux import flux_latents
    from fastvideo.shapes.render import render_prompt

    rng, generator = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    originals = texts * reps
    images = images_to_tensor([render_prompt(text, rng, size=kwargs.get("height", 64)) for text in originals])
    x0 = flux_latents(pipe.vae, images, generator)
    batch, channels, height, width = x0.shape
    noise = torch.randn(x0.shape, generator=generator)
    img_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, x0.device, x0.dtype)
    target = FluxPipeline._pack_latents(noise - x0, batch, channels, height, width)
    rewritten = [variants(text) for text in texts] * reps  # each prompt rewritten once
    conditions = {name: pipe.encode_prompt([v[name] for v in rewritten], prompt_2=None,
                                           max_sequence_length=kwargs.get("max_sequence_length", 512))
                  for name in ("original", "swapped", "flipped")}
    guidance = torch.full((batch,), kwargs.get("guidance_scale", 3.5)) if pipe.transformer.config.guidance_embeds \
        else None
    gaps = {}
    for t in times:
        xt = FluxPipeline._pack_latents((1 - t) * x0 + t * noise, batch, channels, height, width)
        losses = {}
        for name, (embeds, pooled, text_ids) in conditions.items():
            prediction = pipe.transformer(hidden_states=xt, timestep=torch.full((batch,), t), guidance=guidance,
                                          pooled_projections=pooled, encoder_hidden_states=embeds, txt_ids=text_ids,
                                          img_ids=img_ids, return_dict=False)[0]
            losses[name] = (prediction - target).square().mean(dim=(1, 2)).numpy()
        gaps[str(t)] = {name: _paired(losses[name], losses["original"]) for name in ("swapped", "flipped")}
    return gaps


def taught(pipe, base_dir: Path, minutes: float, lr: float, seed: int) -> tuple:
    """``pipe`` with the base transformer fine-tuned on clean position renders, and the training facts."""
    from fastvideo.config import ModelConfig
    from fastvideo.models import build_adapter
    from fastvideo.shapes.clean_renders import train_on_clean_renders

    adapter = build_adapter(ModelConfig(name="flux", path=str(base_dir), height=64, width=64), "cpu")
    facts = train_on_clean_renders(adapter, minutes=minutes, lr=lr, seed=seed, skill="position")
    pipe.transformer = adapter.transformer.eval().requires_grad_(False)
    return pipe, facts


def run_probe(base_dir: Path, runs: list[Path], num: int, seed: int, steps: int, teach_minutes: float = 0.0,
              teach_lr: float = 1e-4) -> list[dict]:
    from diffusers import FluxPipeline

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when imported by a test
    from bench_independent_check import load_finetuned

    if seed == EVAL_SEED:
        raise ValueError(f"--seed {seed} is the training evaluation's seed: the probe needs other draws")
    texts = [text for text, skill in heldout_prompts(num, seed) if skill == "position"]
    pipe = FluxPipeline.from_pretrained(base_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    kwargs = sampling_kwargs(base_dir, pipe)
    rows = [{"model": str(base_dir), "seed": seed, "steps": steps, **probe(pipe, texts, steps, kwargs, seed),
             "loss_gap": loss_gap(pipe, texts, kwargs, seed)}]
    for run_dir in runs:
        tuned = load_finetuned(pipe, run_dir)
        rows.append({"model": str(run_dir), "seed": seed, "steps": steps, **probe(tuned, texts, steps, kwargs, seed),
                     "loss_gap": loss_gap(tuned, texts, kwargs, seed)})
    if teach_minutes > 0:
        tuned, facts = taught(pipe, base_dir, teach_minutes, teach_lr, seed)
        rows.append({"model": f"{base_dir} + {teach_minutes:g} min of position renders", "seed": seed,
                     "steps": steps, "teach": {"lr": teach_lr, **facts}, **probe(tuned, texts, steps, kwargs, seed),
                     "loss_gap": loss_gap(tuned, texts, kwargs, seed)})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'model':36s} {'n':>4s} " + " ".join(f"{v:>9s}" for v in VARIANTS)
             + f" {'orig-flip':>14s} {'conv-swap':>14s}  pixel diff (conv/swap/flip)"]
    for row in rows:
        margins = [row[key] for key in ("original_minus_flipped", "converse_minus_swapped")]
        lines.append(f"{row['model'][-36:]:36s} {row['n']:4d} " + " ".join(f"{row['acc'][v]:9.3f}" for v in VARIANTS)
                     + "".join(f" {100 * m['diff']:+7.1f} ± {100 * m['se']:4.1f}" for m in margins)
                     + "  " + " / ".join(f"{row['pixel_diff'][v]:.4f}" for v in VARIANTS[1:]))
        if "loss_gap" in row:
            lines.append("    loss gap x 1e3 (swapped / flipped - original): " + "; ".join(
                f"t={t} " + " / ".join(f"{1e3 * g[name]['diff']:+.2f} ± {1e3 * g[name]['se']:.2f}"
                                       for name in ("swapped", "flipped"))
                for t, g in row["loss_gap"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("assets/shapes/flux"))
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="front-door output directories")
    parser.add_argument("--num", type=int, default=400, help="skill-balanced held-out draws (~1/5 are position)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--steps", type=int, default=16, help="the model card's stock-pipeline steps")
    parser.add_argument("--teach_minutes", type=float, default=0.0,
                        help="also probe the base after this many minutes on clean position renders")
    parser.add_argument("--teach_lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/relation_probe.jsonl"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run_probe(args.base, args.runs, args.num, args.seed, args.steps, args.teach_minutes, args.teach_lr)
    print(format_rows(rows))
    append_records(rows, args.out)
    return rows


if __name__ == "__main__":
    main()
