"""One full training iteration at real dimensions on fake tensors, with torch's memory trackers.

``dry_run(cfg)`` builds every component through the adapter's own ``from_config`` (from the model
directory's config files, or the shipped public configs of ``fastvideo.dryrun.real_configs``), prepares
the policy exactly as the trainer does (``fastvideo.training.policy.prepare_policy``: LoRA, copies,
activation checkpointing, FSDP2 per block over a fake ``world_size``-rank group), then runs, on rank 0 of
that group:

1. encode: the text encoders on the prompts of one rank (skipped with an embedding cache);
2. rollout: one denoising step of the rollout batch (``train.rollout_batch_size`` or all samples), no grad;
3. decode: the VAE on one rollout chunk;
4. reward: each reward model's forward on the decoded chunk (``fastvideo.dryrun.rewards``);
5. train: one micro-batch of ``train.train_batch_size`` items through the objective's real loss
   (the PPO-clipped SDE log-prob ratio, or the forward-process loss), backward, grad clipping, the
   optimizer step (and the EMA update).

Each phase runs under ``torch.distributed._tools`` trackers (``FSDPMemTracker`` for the FSDP2 train
step, ``MemTracker`` otherwise) with every resident module registered, so each phase's peak is the
per-GPU peak while it runs. Whatever fake tensors cannot measure is added by hand and labelled
(``Phase.by_hand``): the rollout's stored trajectory (latents of the trained steps, fp32).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastvideo.distributed import DistEnv
from fastvideo.dryrun.fake import build_component, fake_tensors, fake_world
from fastvideo.dryrun.real_configs import CHECKPOINTS, write_checkpoint_dir
from fastvideo.errors import UserError


class DryRunError(UserError, RuntimeError):
    """The configured run cannot be built or does not fit; the message says why and what would fit."""


@dataclass
class Component:
    name: str
    params: int
    trainable: int
    dtype: str
    bytes_per_gpu: int
    resident: bool
    """Held for the whole run (else only while its phase runs)."""


@dataclass
class Phase:
    name: str
    tracked_bytes: int
    """Peak the memory tracker measured while the phase ran: the trained model's parameters (and gradients,
    optimizer state when they exist in the phase) plus everything the phase allocated."""
    categories: dict[str, int]
    """The tracker's breakdown of ``tracked_bytes`` at its peak."""
    by_hand: dict[str, int] = field(default_factory=dict)
    """Resident bytes the tracker does not see (frozen models, copies, steady-state optimizer state) and
    estimates (the rollout trajectory), added to the peak."""
    seconds: float = 0.0
    sees_resident: bool = False
    """The tracker was given the frozen models and copies (``MemTracker``; ``FSDPMemTracker`` ignores them)."""

    @property
    def peak_bytes(self) -> int:
        """Per-GPU peak while this phase runs."""
        return self.tracked_bytes + sum(self.by_hand.values())


@dataclass
class DryRunReport:
    recipe: str
    world_size: int
    gpu_memory_bytes: int
    components: list[Component]
    state: dict[str, int]
    """Per-GPU training state: parameters, gradients, optimizer state, EMA / reference / old-policy copies."""
    phases: list[Phase]
    plan: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    settings: dict[str, Any]
    wall_seconds: float = 0.0

    @property
    def peak_bytes(self) -> int:
        return max(p.peak_bytes for p in self.phases)

    memory: bool = True
    """Memory was tracked (``dry_run.memory``)."""

    @property
    def fits(self) -> bool:
        return not self.memory or self.peak_bytes <= self.gpu_memory_bytes


def _model_dir(cfg: Any, workdir: Path) -> str:
    """The configured model directory if it holds config files, else the shipped public configs."""
    path = cfg.model.path
    if path and Path(path, "model_index.json").exists():
        return str(path)
    if cfg.model.name not in CHECKPOINTS:
        raise DryRunError(f"model.path {path!r} has no model_index.json and no real config of "
                          f"{cfg.model.name!r} is shipped (known: {', '.join(CHECKPOINTS)}); download the "
                          "config files (e.g. hf download REPO --include '*.json') and point model.path at them")
    return str(write_checkpoint_dir(cfg.model.name, workdir / cfg.model.name))


def target_config(cfg: Any, device_type: str) -> Any:
    """The config as it resolves on the planned device: bf16 frozen weights and autocast on a GPU."""
    cfg = copy.deepcopy(cfg)
    if device_type == "cuda":
        cfg.model.dtype = "bf16" if cfg.model.dtype == "auto" else cfg.model.dtype
        cfg.train.mixed_precision = "bf16" if cfg.train.mixed_precision == "auto" else cfg.train.mixed_precision
    else:
        cfg.model.dtype = "fp32" if cfg.model.dtype == "auto" else cfg.model.dtype
        cfg.train.mixed_precision = "fp32" if cfg.train.mixed_precision == "auto" else cfg.train.mixed_precision
    cfg.data.embeddings_dir = cfg.data.embeddings_dir or None
    return cfg


class _FrozenSafe:
    """Two adjustments of torch's trackers to what a training iteration does.

    MemTracker installs a gradient hook on every parameter of every module it sees run, which raises on
    frozen parameters (VAE, text encoders, LoRA's base weights); hooks go only to fully trainable modules
    (the gradients of the others are still counted, as allocations, when they are made). And it refuses a
    module called twice at the top level (see ``_pre_fw_hook``)."""

    def _pre_fw_hook(self, module, inputs):
        """A second top-level call of a module (CFG branches, chunked decoding) restarts that module's own
        statistics instead of raising; the global peak, which is all the dry run reads, is unaffected."""
        if module in self.memory_tracking and not self._mod_tracker.is_bw:
            parents = set(self._mod_tracker.parents) - {self._mod_tracker.get_known_fqn(module)}
            if parents == {"Global"}:
                del self.memory_tracking[module]
        return super()._pre_fw_hook(module, inputs)

    def _track_module_params_and_buffers(self, module, install_grad_hooks: bool = True):
        trainable = all(p.requires_grad for p in module.parameters())
        return super()._track_module_params_and_buffers(module, install_grad_hooks=install_grad_hooks and trainable)


@contextlib.contextmanager
def _untracked(model, optimizer=None, fsdp: bool = False, resident: tuple = ()):
    """``dry_run.memory false``: the phase runs (shapes, FSDP plan) without a tracker; nothing is measured."""
    result: dict[str, Any] = {"peak": 0, "categories": {}, "sees_resident": True}
    start = time.perf_counter()
    yield result
    result["seconds"] = time.perf_counter() - start


@contextlib.contextmanager
def _tracked(model, optimizer=None, fsdp: bool = False, resident: tuple = ()):
    """A memory tracker of ``model`` (and ``optimizer``; ``MemTracker`` also of the ``resident`` modules and
    tensors); yields a dict filled with the phase's peak."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed._tools.mem_tracker import MemTracker

    class Tracker(_FrozenSafe, MemTracker):
        pass

    class FSDPTracker(_FrozenSafe, FSDPMemTracker):
        pass

    if fsdp:
        tracker = FSDPTracker(model, optimizer)
    else:
        tracker = Tracker()
        tracker.track_external(model, *resident, *([optimizer] if optimizer is not None else []))
    result: dict[str, Any] = {"sees_resident": not fsdp}
    start = time.perf_counter()
    with tracker:
        yield result
    peak = next(iter(tracker.get_tracker_snapshot("peak").values()), {})
    result["peak"] = int(peak.get("Total", 0))
    result["categories"] = {str(k).split(".")[-1].lower(): int(v) for k, v in peak.items() if k != "Total" and v}
    result["seconds"] = time.perf_counter() - start


def dry_run(cfg: Any, world_size: int = 1, gpu_memory_gb: float = 80.0, device_type: str = "cuda",
            recipe: str = "", memory: bool = True) -> DryRunReport:
    """Build and run one iteration of ``cfg`` on fake tensors; see the module docstring. ``memory=False`` skips
    the trackers (about 3x faster): shapes, parameters, the FSDP plan and the launch plan only."""
    from fastvideo.models import build_adapter
    from fastvideo.models.sources import component_builder

    started = time.perf_counter()
    cfg = target_config(cfg, device_type)
    with tempfile.TemporaryDirectory() as tmp, fake_world(world_size) as mesh, component_builder(build_component):
        if not cfg.model.tiny:
            cfg.model.path = _model_dir(cfg, Path(tmp))
        try:
            adapter = build_adapter(cfg.model, "cpu")
            with fake_tensors():
                report = _iteration(cfg, adapter, world_size, mesh, device_type, _tracked if memory else _untracked)
        except DryRunError:
            raise
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise DryRunError(f"the dry run of {recipe or cfg.model.name} failed at real dimensions: "
                              f"{type(error).__name__}: {error}") from error
    report.recipe, report.gpu_memory_bytes = recipe or cfg.model.name, int(gpu_memory_gb * 2**30)
    report.memory = memory
    report.wall_seconds = time.perf_counter() - started
    return report


def _iteration(cfg: Any, adapter: Any, world_size: int, mesh: Any, device_type: str, tracked) -> DryRunReport:
    from fastvideo.dryrun.steps import IterationPieces

    pieces = IterationPieces(cfg, adapter, DistEnv(0, world_size, 0, torch.device(device_type)), mesh, tracked)
    phases = []
    for name in ("encode", "rollout", "decode", "reward", "train"):
        try:
            result = getattr(pieces, f"{name}_phase")()
        except DryRunError:
            raise
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
            raise DryRunError(f"the dry run of {cfg.model.name} failed in its {name} phase at real dimensions "
                              f"(shapes so far: {pieces.shapes}): {type(error).__name__}: {error}. A mismatch "
                              "between components usually means one config does not belong with the others "
                              f"(e.g. a text encoder's width vs the denoiser's), in {cfg.model.path}") from error
        phases += result if isinstance(result, list) else [result] if result is not None else []
    if tracked is _tracked:
        pieces.add_resident(phases)
    return DryRunReport(recipe="", world_size=world_size, gpu_memory_bytes=0, components=pieces.components(),
                        state=pieces.state_bytes(), phases=phases, plan=pieces.plan(), shapes=pieces.shapes,
                        settings=pieces.settings())


def gib(value: float) -> float:
    """Bytes -> GiB."""
    return value / 2**30
