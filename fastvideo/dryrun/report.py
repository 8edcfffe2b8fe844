"""The dry run's printed report, the fit check, and the settings that would fit.

``suggestions`` estimates each lever from the measured breakdown (they are not re-measured; the printed
numbers say "est."): more GPUs divide the sharded training state (parameters, gradients, optimizer state,
copies) and leave activations and frozen models as they are; the embedding cache removes the text
encoders; LoRA removes the full gradients, optimizer state and copies (adapter weights are negligible at
the ranks used); gradient checkpointing and a smaller micro-batch scale the train phase's activations
(checkpointing: to about 1 / number of blocks, a floor of the block inputs); a smaller rollout batch
scales the rollout, decoding and reward activations.
"""

from __future__ import annotations

from typing import Any

from fastvideo.dryrun.run import DryRunError, DryRunReport, Phase, gib

SHARDED_STATE = ("parameters (fp32 master)", "optimizer state (AdamW)")
TRAIN_ACTIVATIONS = ("act", "temp")


def _g(value: float) -> str:
    return f"{gib(value):8.2f}"


def format_report(report: DryRunReport) -> str:
    """The dry run as text: components, per-GPU state, phases, launch plan and the verdict."""
    lines = [f"Dry run of {report.recipe}: one iteration at real dimensions on fake tensors, "
             f"{report.world_size} GPU(s) of {gib(report.gpu_memory_bytes):.0f} GiB ({report.wall_seconds:.0f} s)",
             "settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items()), "",
             f"{'component':44s} {'params':>14s} {'trainable':>14s} {'dtype':>9s} {'GiB/GPU':>8s}"]
    for c in report.components:
        lines.append(f"{c.name:44s} {c.params:>14,d} {c.trainable:>14,d} {c.dtype:>9s} {_g(c.bytes_per_gpu)}")
    lines += ["", "training state per GPU (GiB):"]
    lines += [f"  {name:42s} {_g(value)}" for name, value in report.state.items()]
    if not report.memory:
        lines += ["", "phases ran without memory trackers (dry_run.memory false): " +
                  ", ".join(f"{p.name} {p.seconds:.1f} s" for p in report.phases)]
    lines += ["", f"{'phase (per GPU, GiB)':30s} {'peak':>8s}  measured by torch's tracker | added"] if report.memory else []
    for phase in report.phases if report.memory else []:
        measured = ", ".join(f"{k} {gib(v):.2f}" for k, v in phase.categories.items())
        added = ", ".join(f"{k} {gib(v):.2f}" for k, v in phase.by_hand.items() if v)
        lines.append(f"{phase.name:30s} {_g(phase.peak_bytes)}  {measured} | {added}")
    lines += ["", "launch plan per iteration: " + ", ".join(f"{k} {v}" for k, v in report.plan.items()),
              "shapes: " + ", ".join(f"{k} {tuple(v)}" for k, v in report.shapes.items()), ""]
    if not report.memory:
        return "\n".join(lines + ["memory not tracked: no verdict"])
    peak = max(report.phases, key=lambda p: p.peak_bytes)
    verdict = "fits" if report.fits else "DOES NOT FIT"
    lines.append(f"peak {gib(peak.peak_bytes):.2f} GiB per GPU in '{peak.name}' of {gib(report.gpu_memory_bytes):.0f} "
                 f"GiB: {verdict}")
    return "\n".join(lines)


def _phase_peak(phase: Phase, state: dict[str, int], *, world: float = 1.0, drop_text: int = 0,
                lora: bool = False, act_scale: float = 1.0, rollout_scale: float = 1.0) -> float:
    """Estimated peak of ``phase`` after a lever (see the module docstring)."""
    peak = float(phase.peak_bytes) - drop_text
    sharded = sum(state.get(k, 0) for k in SHARDED_STATE) + phase.by_hand.get("EMA / reference / old-policy copies", 0)
    grads = state.get("gradients (fp32)", 0) if phase.name.startswith("train") else 0
    peak -= (sharded + grads) * (1.0 - world)
    if lora:
        peak -= grads + state.get("optimizer state (AdamW)", 0) + phase.by_hand.get(
            "EMA / reference / old-policy copies", 0)
    if phase.name.startswith("train: forward"):
        peak -= sum(phase.categories.get(k, 0) for k in TRAIN_ACTIVATIONS) * (1.0 - act_scale)
    if phase.name in ("rollout", "decode", "reward"):
        peak -= sum(phase.categories.get(k, 0) for k in TRAIN_ACTIVATIONS) * (1.0 - rollout_scale)
    return peak


def suggestions(report: DryRunReport, cfg: Any) -> list[tuple[str, float]]:
    """(override, estimated peak bytes) for each single lever, smallest peak first."""
    state, s = report.state, report.settings
    text = sum(c.bytes_per_gpu for c in report.components if "text_encoder" in c.name and c.resident)

    def peak(**lever) -> float:
        return max(_phase_peak(p, state, **lever) for p in report.phases)

    options = []
    for world in (2, 4, 8, 16, 32, 64):
        if world > report.world_size:
            options.append((f"--dry_run.world_size {world} (more GPUs)", peak(world=report.world_size / world)))
    if text and not s.get("embedding cache"):
        options.append(("--data.embeddings_dir DIR (precomputed prompt embeddings: no text encoders)",
                        peak(drop_text=text)))
    if not s.get("lora_rank"):
        options.append(("--model.lora_rank 64", peak(lora=True)))
    if not s.get("gradient_checkpointing"):
        blocks = max(1, int(report.plan.get("transformer blocks", 1)))
        options.append(("--model.gradient_checkpointing true", peak(act_scale=1.0 / blocks)))
    if s.get("rollout_batch_size", 1) > 1:
        options.append(("--train.rollout_batch_size 1 (rollout and decoding one sample at a time)",
                        peak(rollout_scale=1.0 / s["rollout_batch_size"])))
    if s.get("train_batch_size", 1) > 1:
        options.append(("--train.train_batch_size 1", peak(act_scale=1.0 / s["train_batch_size"])))
    return sorted(options, key=lambda item: item[1])


def check_fits(report: DryRunReport, cfg: Any) -> None:
    """Raise ``DryRunError`` naming the settings that would fit when the peak exceeds the GPU's memory."""
    if report.fits:
        return
    peak = max(report.phases, key=lambda p: p.peak_bytes)
    limit = report.gpu_memory_bytes
    lines = [f"{report.recipe} needs {gib(peak.peak_bytes):.1f} GiB per GPU (in '{peak.name}') but a GPU has "
             f"{gib(limit):.0f} GiB, on {report.world_size} GPU(s). Estimated peaks of single changes:"]
    for override, estimate in suggestions(report, cfg):
        mark = "fits" if estimate <= limit else "not enough alone"
        lines.append(f"  {override}: est. {gib(estimate):.1f} GiB ({mark})")
    lines.append("Combine them, or lower model.height/width (and num_frames).")
    raise DryRunError("\n".join(lines))
