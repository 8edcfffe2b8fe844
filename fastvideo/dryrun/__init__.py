"""``--dry_run``: one training iteration of a real recipe at real dimensions on a CPU, with a per-GPU memory plan.

    python -m fastvideo.train --config configs/flux_grpo.yaml --dry_run --dry_run.world_size 16
    bash scripts/finetune/finetune_flux_grpo.sh --dry_run --dry_run.world_size 16

Every component is built from the public checkpoint's config (``real_configs``; or from ``model.path`` when
it holds the config files) on fake tensors (``fake``), the policy is prepared and FSDP2-sharded as the
trainer does over a fake ``world_size``-rank process group, and one iteration runs (``run``, ``steps``):
encode, one rollout step, decode, reward, one training micro-batch and the optimizer step, each under
``torch.distributed._tools``' memory trackers. ``report`` prints parameters per component, the per-GPU
training state, each phase's peak, the launch plan, and fails with the settings that would fit when the
peak exceeds ``dry_run.gpu_memory_gb``. Nothing is allocated: a 12B FLUX dry run takes about a minute
and a few hundred MB of RAM.
"""

from __future__ import annotations

from typing import Any

from fastvideo.dryrun.run import DryRunError, DryRunReport, dry_run


def planned_gpu_memory_gb(requested: float) -> float:
    """``dry_run.gpu_memory_gb``, or the visible GPU's memory, or 80 (an 80 GB H100/A100) without one."""
    import torch

    if requested > 0:
        return float(requested)
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    return 80.0


def main_dry_run(cfg: Any, recipe: str = "") -> DryRunReport:
    """Run the dry run of ``cfg`` (its ``dry_run`` section), print the report; raise if it does not fit."""
    from fastvideo.dryrun.report import check_fits, format_report

    d = cfg.dry_run
    report = dry_run(cfg, world_size=max(1, d.world_size), gpu_memory_gb=planned_gpu_memory_gb(d.gpu_memory_gb),
                     device_type=d.device, recipe=recipe, memory=d.memory)
    print(format_report(report), flush=True)
    check_fits(report, cfg)
    return report


__all__ = ["DryRunError", "DryRunReport", "dry_run", "main_dry_run", "planned_gpu_memory_gb"]
