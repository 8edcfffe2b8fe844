"""Checkpoints of the full training state with torch.distributed.checkpoint (DCP).

Layout of ``<run>/checkpoints/iter-000010/``:
- DCP shards of ``model`` (trainable weights), ``optim`` and ``ema`` — every rank writes its own part;
- ``trainer_state.pt`` (rank 0): iteration, LR schedule, advantage tracker, sampler window, ... ;
- ``rng-rank<r>.pt``: each rank's torch / CUDA / python / numpy RNG states;
- ``COMPLETE``: written last. A checkpoint is written into ``iter-XXXXXX.tmp`` and renamed only when
  complete, so a process killed mid-write leaves the previous checkpoint as the latest loadable one.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from fastvideo.distributed import DistEnv, barrier

logger = logging.getLogger("fastvideo")
_OPTIONS = StateDictOptions(ignore_frozen_params=True)


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:06d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("iter-")
            and not p.name.endswith(".tmp") and (p / "COMPLETE").exists()]
    return sorted(done, key=lambda p: p.name)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Save / find / load full training states; keeps the last ``keep_last`` checkpoints."""

    def __init__(self, root: str | Path, env: DistEnv, keep_last: int = 3):
        self.root = Path(root)
        self.env = env
        self.keep_last = keep_last

    def save(self, iteration: int, model, optimizer, *, ema: dict | None, trainer_state: dict) -> Path:
        final = self.root / checkpoint_name(iteration)
        tmp = final.with_name(final.name + ".tmp")
        if self.env.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
        state = {"model": model_sd, "optim": optim_sd}
        if ema is not None:
            state["ema"] = ema
        dcp.save(state, checkpoint_id=str(tmp))
        torch.save(_rng_state(), tmp / f"rng-rank{self.env.rank}.pt")
        barrier()
        if self.env.is_main:
            torch.save(trainer_state, tmp / "trainer_state.pt")
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

    def load(self, path: Path, model, optimizer, *, ema: dict | None) -> dict:
        """Restore model, optimizer, EMA and RNG states in place; return the trainer state."""
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
        state = {"model": model_sd, "optim": optim_sd}
        if ema is not None:
            state["ema"] = ema
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                       options=StateDictOptions(ignore_frozen_params=True, strict=False))
        rng_file = path / f"rng-rank{self.env.rank}.pt"
        if rng_file.exists():
            _set_rng_state(torch.load(rng_file, weights_only=True))
        else:
            logger.warning("no RNG state for rank %d in %s (different world size?)", self.env.rank, path)
        return torch.load(path / "trainer_state.pt", weights_only=True)
