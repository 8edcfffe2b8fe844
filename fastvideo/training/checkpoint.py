"""Checkpoints of the full training state with torch.distributed.checkpoint (DCP), torchtitan's way.

The trainer hands ``Checkpointer.save`` / ``load`` one dict of ``Stateful`` objects (``state_dict()`` and
``load_state_dict()``, see ``torch.distributed.checkpoint.stateful``). DCP calls ``state_dict()`` on each
and writes them all into one checkpoint; on load it reads the checkpoint into the structure ``state_dict()``
returns now and hands the result to ``load_state_dict()``, which copies it into place. The trainer's keys
(``GRPOTrainer._checkpoint_states``):

- ``model``, ``optim``: the trainable weights (LoRA: only the adapters) and the AdamW state
  (``ModelState``, ``OptimizerState``); FSDP2-sharded states stay sharded, every rank writes its part;
- ``ema``: the EMA weights (``fastvideo.training.optim.EMA``), when ``train.ema_decay`` > 0;
- ``lr_scheduler``: the LR schedule;
- ``window``: the MixGRPO sliding window's settings, when ``sampler.window_size`` > 0 (the window is a
  function of the iteration; a checkpoint made with other settings is refused, see ``SlidingWindow``);
- ``tracker``: the per-prompt reward buffers, when ``grpo.per_prompt_stat_tracking`` (a ``BlobState``);
- ``old_policy``: DiffusionNFT's old policy (``fastvideo.training.optim.SoftCopy``: its averaged weights and
  step count), when ``grpo.objective`` is nft;
- ``counters``: the iteration (``Counters``);
- ``rng/rank<r>``: each rank's torch / CUDA / python / numpy RNG states (``RNGState`` in a ``BlobState``).
  A rank that finds no key of its own (resumed at a larger world size) keeps its fresh RNG, with a warning.

Non-tensor values are stored by DCP as pickled bytes and read back with ``torch.load(weights_only=True)``
(``_WeightsOnlyLoadPlanner``): states hold only tensors and plain python values (numbers, strings,
lists, tuples, dicts, None). States whose keys depend on the data (the tracker's prompts) or on the
machine (CUDA RNG states) travel as one ``torch.save`` blob, since DCP can only fill keys that the
current ``state_dict()`` already has.

Layout of ``<run>/checkpoints/iter-000010/``: DCP's ``.metadata`` and ``__<rank>_0.distcp`` files, and
``COMPLETE``, written last. A checkpoint is written into ``iter-XXXXXX.tmp`` and renamed only when
complete, so a process killed mid-write leaves the previous checkpoint as the latest loadable one; the
last ``checkpoint.keep_last`` complete checkpoints are kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import shutil
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

from fastvideo.distributed import DistEnv, barrier

logger = logging.getLogger("fastvideo")
_SAVE_OPTIONS = StateDictOptions(ignore_frozen_params=True)
_LOAD_OPTIONS = StateDictOptions(ignore_frozen_params=True, strict=False)


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:06d}"


def rng_key(rank: int) -> str:
    """The checkpoint key of one rank's RNG states."""
    return f"rng/rank{rank}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("iter-")
            and not p.name.endswith(".tmp") and (p / "COMPLETE").exists()]
    return sorted(done, key=lambda p: p.name)


def saved_keys(path: str | Path) -> set[str]:
    """The top-level keys of the states in a DCP checkpoint (from its metadata)."""
    metadata = dcp.FileSystemReader(str(path)).read_metadata()
    return {fqn.split(".", 1)[0] for fqn in metadata.state_dict_metadata}


# ----------------------------------------------------------------------------- Stateful pieces
class ModelState(Stateful):
    """The trainable weights of ``model`` (frozen ones, e.g. the base of a LoRA run, are not saved).

    ``get_model_state_dict`` / ``set_model_state_dict``: plain and FSDP2-sharded modules alike."""

    def __init__(self, model: nn.Module):
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return get_model_state_dict(self.model, options=_SAVE_OPTIONS)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_model_state_dict(self.model, state_dict, options=_LOAD_OPTIONS)


class OptimizerState(Stateful):
    """The optimizer state of ``model``'s trainable weights, keyed by parameter name (not position).

    Kept apart from ``ModelState`` (as torchtitan does) so the weights stay under ``model.<name>``,
    where ``fastvideo.inference.checkpoints`` reads them."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict[str, Any]:
        return get_optimizer_state_dict(self.model, self.optimizer, options=_SAVE_OPTIONS)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_optimizer_state_dict(self.model, self.optimizer, state_dict, options=_LOAD_OPTIONS)


class Counters(Stateful):
    """Integer counters of the training loop (``iteration``): ``Counters(iteration=3)["iteration"]``."""

    def __init__(self, **values: int):
        self.values = {name: int(value) for name, value in values.items()}

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def state_dict(self) -> dict[str, int]:
        return dict(self.values)

    def load_state_dict(self, state_dict: Mapping[str, int]) -> None:
        self.values = {name: int(state_dict[name]) for name in self.values}


class RNGState(Stateful):
    """This process's torch, CUDA (when available), python and numpy RNG states (plain values)."""

    def state_dict(self) -> dict[str, Any]:
        name, keys, *rest = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": (name, torch.from_numpy(keys.astype(np.int64)), *rest)}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        random.setstate(state_dict["python"])
        name, keys, *rest = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class BlobState(Stateful):
    """Any ``Stateful`` whose state is plain values, stored as one ``torch.save`` blob ``{"blob": bytes}``.

    For states whose keys are not known before loading (the tracker's prompts, a machine's CUDA RNG
    states): DCP fills only the keys the current ``state_dict()`` has. The blob is read back with
    ``weights_only=True``."""

    def __init__(self, inner: Stateful):
        self.inner = inner

    def state_dict(self) -> dict[str, bytes]:
        buffer = io.BytesIO()
        torch.save(self.inner.state_dict(), buffer)
        return {"blob": buffer.getvalue()}

    def load_state_dict(self, state_dict: Mapping[str, bytes]) -> None:
        self.inner.load_state_dict(torch.load(io.BytesIO(state_dict["blob"]), weights_only=True))


class _WeightsOnlyLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner, except that non-tensor values are unpickled with ``weights_only=True``
    (DCP's own planner uses ``weights_only=False``): a checkpoint can hold data, never code."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        obj = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


# ----------------------------------------------------------------------------- the checkpointer
class Checkpointer:
    """Save / find / load full training states (a dict of ``Stateful``); keeps the last ``keep_last``."""

    def __init__(self, root: str | Path, env: DistEnv, keep_last: int = 3):
        self.root = Path(root)
        self.env = env
        self.keep_last = keep_last

    def save(self, iteration: int, states: Mapping[str, Stateful]) -> Path:
        """Write ``states`` (the same keys on every rank, except per-rank ones such as ``rng/rank<r>``)
        as checkpoint ``iter-<iteration>`` and prune old ones; returns its path."""
        final = self.root / checkpoint_name(iteration)
        tmp = final.with_name(final.name + ".tmp")
        if self.env.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        with self._single_process_quiet():
            dcp.save(dict(states), checkpoint_id=str(tmp), no_dist=not self.env.distributed)
        barrier()
        if self.env.is_main:
            (tmp / "COMPLETE").write_text(f"{iteration}\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            self._prune()
        barrier()
        return final

    def _prune(self) -> None:
        for old in list_checkpoints(self.root)[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def resolve(self, resume: str) -> Path | None:
        """'' -> None; 'auto' -> latest complete checkpoint (or None); else the given path."""
        if not resume:
            return None
        if resume == "auto":
            found = list_checkpoints(self.root)
            return found[-1] if found else None
        path = Path(resume)
        if not (path / "COMPLETE").exists():
            raise FileNotFoundError(f"{path} is not a complete checkpoint (no COMPLETE marker)")
        return path

    def load(self, path: str | Path, states: Mapping[str, Stateful], optional: Collection[str] = ()) -> None:
        """Restore every state of ``states`` from the checkpoint at ``path`` (in place, through its
        ``load_state_dict``). A key of ``optional`` that the checkpoint lacks is skipped with a warning
        (that state starts fresh); any other missing key is a ``KeyError``."""
        path = Path(path)
        if (path / "trainer_state.pt").exists():
            raise ValueError(f"{path} was written in the earlier checkpoint layout (trainer_state.pt and "
                             "rng-rank*.pt beside the DCP shards), which this version cannot resume; "
                             "start a new run or resume it with the version that wrote it")
        saved = saved_keys(path)
        wanted = {}
        for key, state in states.items():
            if key in saved:
                wanted[key] = state
            elif key in optional:
                logger.warning("%s holds no %r state (written at another world size or with other settings): "
                               "it starts fresh", path, key)
            else:
                raise KeyError(f"{path} holds no {key!r} state (it has {sorted(saved)}): was the run "
                               f"that wrote it configured differently?")
        with self._single_process_quiet():
            dcp.load(wanted, checkpoint_id=str(path), planner=_WeightsOnlyLoadPlanner(),
                     no_dist=not self.env.distributed)

    @contextlib.contextmanager
    def _single_process_quiet(self):
        """Without DCP's warning that it runs in a single process (it does, on purpose, when not distributed)."""
        with warnings.catch_warnings():
            if not self.env.distributed:
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            yield
