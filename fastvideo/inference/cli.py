"""Command-line pieces shared by ``visualize``, ``evaluate`` and ``best_of_n``.

The base model and the sampler come from an optional training config (``--config``, e.g. a run's
``config.yaml`` or ``configs/shapes/flux_grpo.yaml``) plus dotted overrides of its ``model.*``,
``sampler.*`` and ``rewards.*`` sections (``--model.name flux --model.path ./data/flux``,
``--model.tiny true``); the flags ``--num_steps --shift --height --width --num_frames --guidance_scale``
win over the config. Steps default to ``sampler.eval_num_steps`` (or ``sampler.num_steps``).

A checkpoint argument is anything ``fastvideo.inference.resolve_checkpoint`` accepts; append ``@ema``
to take its EMA weights (``outputs/run@ema``), ``@policy`` for the policy (the default).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from fastvideo.config import Config, ConfigError, load_config
from fastvideo.inference.checkpoints import WHICH
from fastvideo.inference.sampling import SAMPLERS
from fastvideo.models.base import DTYPES

PASSTHROUGH_SECTIONS = ("model.", "sampler.", "rewards.")


def base_parser(description: str) -> argparse.ArgumentParser:
    """Parser with the model, prompt, sampling and output flags every inference command takes."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                     epilog="Model and sampler: --config FILE and/or dotted overrides "
                                            "--model.name flux --model.path DIR (--model.tiny true) "
                                            "--sampler.shift 3.0 ... (see python -m fastvideo.train --help).")
    parser.add_argument("--config", default=None, help="training config whose model/sampler/rewards are the defaults")
    parser.add_argument("--prompt_file", required=True, help="one prompt per line")
    parser.add_argument("--max_prompts", type=int, default=0, help="use only the first N prompts (0 = all)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_steps", type=int, default=None, help="sampling steps (default: config's eval steps)")
    parser.add_argument("--shift", type=float, default=None, help="flow time shift (default: config's)")
    parser.add_argument("--height", type=int, default=None, help="pixels (default: config's model.height)")
    parser.add_argument("--width", type=int, default=None, help="pixels (default: config's model.width)")
    parser.add_argument("--num_frames", type=int, default=None,
                        help="frames per sample, 4k+1 for video models (default: config's model.num_frames)")
    parser.add_argument("--guidance_scale", type=float, default=None, help="default: config's model.guidance_scale")
    parser.add_argument("--sampler", choices=SAMPLERS, default="ode",
                        help="ode (Euler / DDIM eta=0), dpm2 (flow only) or sde (sampler.sde_type, --eta)")
    parser.add_argument("--eta", type=float, default=None, help="SDE noise level (sampler sde; default: config's)")
    parser.add_argument("--batch_size", type=int, default=8, help="samples per model call, per rank")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="denoiser weights (auto: bf16 on GPU, fp32 on CPU)")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    """Known flags into a namespace; ``--model.* / --sampler.* / --rewards.*`` into a validated Config."""
    args, rest = parser.parse_known_args(argv)
    unknown = [t for t in rest if t.startswith("-") and not t.lstrip("-").startswith(PASSTHROUGH_SECTIONS)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        cfg = load_config(args.config, rest)
    except (ConfigError, FileNotFoundError) as err:
        parser.error(str(err))
    if args.height is not None:
        cfg.model.height = args.height
    if args.width is not None:
        cfg.model.width = args.width
    if args.num_frames is not None:
        cfg.model.num_frames = args.num_frames
    return args, cfg


def sampling_kwargs(args: argparse.Namespace, cfg: Config) -> dict:
    """Keyword arguments of ``fastvideo.inference.sample`` from the flags and the config."""
    s = cfg.sampler
    return {
        "num_steps": args.num_steps or s.eval_num_steps or s.num_steps,
        "shift": args.shift if args.shift is not None else s.shift,
        "sampler": args.sampler,
        "sde_type": s.sde_type,
        "eta": args.eta if args.eta is not None else s.eta,
        "guidance_scale": args.guidance_scale,
        "batch_size": args.batch_size,
    }


def read_prompts(args: argparse.Namespace) -> list[str]:
    from fastvideo.data.prompts import read_prompt_file

    prompts = read_prompt_file(args.prompt_file)
    return prompts[: args.max_prompts] if args.max_prompts > 0 else prompts


@dataclass(frozen=True)
class ModelEntry:
    """One model to sample: a display label, a checkpoint (None = base) and which weights."""

    label: str
    checkpoint: str | None
    which: str = "policy"


def split_which(argument: str) -> tuple[str, str]:
    """``PATH@ema`` -> (PATH, 'ema'); ``PATH`` -> (PATH, 'policy')."""
    path, sep, which = argument.rpartition("@")
    if sep and which in WHICH:
        return path, which
    return argument, "policy"


def checkpoint_label(path: str, which: str) -> str:
    """A short name: the run directory's name (plus the export/checkpoint folder when given), @ema."""
    p = Path(path.rstrip("/"))
    parts = [p.name]
    while p.name in ("export", "ema", "transformer", "unet", "checkpoints") or p.name.startswith("iter-"):
        p = p.parent
        parts.insert(0, p.name)
    label = "/".join(part for part in parts if part and part != "ema")
    return f"{label}@ema" if which == "ema" or path.rstrip("/").endswith("/ema") else label


def model_entries(checkpoints: list[str], *, include_base: bool = True,
                  labels: list[str] | None = None) -> list[ModelEntry]:
    """Base (optionally) then one entry per checkpoint argument, with unique labels."""
    entries = [ModelEntry("base", None)] if include_base else []
    for argument in checkpoints:
        path, which = split_which(argument)
        entries.append(ModelEntry(checkpoint_label(path, which), path, which))
    if labels:
        if len(labels) != len(entries):
            raise ValueError(f"{len(labels)} labels for {len(entries)} models ({[e.label for e in entries]})")
        entries = [ModelEntry(label, e.checkpoint, e.which) for label, e in zip(labels, entries)]
    seen: dict[str, int] = {}
    unique = []
    for entry in entries:
        seen[entry.label] = seen.get(entry.label, 0) + 1
        label = entry.label if seen[entry.label] == 1 else f"{entry.label}_{seen[entry.label]}"
        unique.append(ModelEntry(label, entry.checkpoint, entry.which))
    return unique


def safe_name(label: str) -> str:
    """A label as one directory name."""
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in label)
