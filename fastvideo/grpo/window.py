"""MixGRPO's sliding window over denoising steps, and the per-iteration step plan it implies.

Window W(l) = {l, ..., l + w - 1}: steps inside are sampled with the SDE and trained; steps outside
use the ODE and are never trained. Strategies for the window start l at iteration k:

- ``progressive``: l = (floor(k / tau) * s) mod (l_max + 1), with l_max = S - 1 - w so the window
  never contains the last step (never trained); i.e. l <- l + s every tau iterations, rolling back to 0.
- ``frozen``: l = 0 (MixGRPO-Flash*).
- ``random``: l uniform in [0, l_max], drawn from a generator seeded by (seed, k).

l is a pure function of the iteration and the settings, so resuming at iteration k restores the window
exactly. ``state_dict`` records the settings (it is checkpointed); ``load_state_dict`` refuses, with a
``ValueError``, a checkpoint whose window would differ from this one's (another size, strategy, ...):
continuing under another schedule would silently change which steps are trained.

MixGRPO-Flash: the steps after the window are solved with fewer, larger steps (2nd-order
DPM-Solver++): ``compressed_tail`` keeps ceil(ratio * n) of the n remaining sigmas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

STRATEGIES = ("progressive", "frozen", "random")


@dataclass
class SlidingWindow:
    num_steps: int
    size: int
    strategy: str = "progressive"
    shift_every: int = 25
    stride: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown window strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if not 1 <= self.size <= self.num_steps - 1:
            raise ValueError(f"window size {self.size} must be in [1, num_steps - 1 = {self.num_steps - 1}]")

    @property
    def max_start(self) -> int:
        return self.num_steps - 1 - self.size

    def start(self, iteration: int) -> int:
        """Window start l for ``iteration`` (see the module docstring)."""
        if self.strategy == "frozen":
            return 0
        if self.strategy == "random":
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
            return int(torch.randint(0, self.max_start + 1, (1,), generator=gen))
        return (iteration // self.shift_every * self.stride) % (self.max_start + 1)

    def steps(self, iteration: int) -> list[int]:
        l0 = self.start(iteration)
        return list(range(l0, l0 + self.size))

    def _schedule_fields(self) -> tuple[str, ...]:
        """The settings that decide the window of every iteration under this strategy."""
        extra = {"progressive": ("shift_every", "stride"), "random": ("seed",), "frozen": ()}[self.strategy]
        return ("num_steps", "size", "strategy", *extra)

    def state_dict(self) -> dict:
        """The settings (plain values); the window of iteration k is ``start(k)``."""
        return {"num_steps": self.num_steps, "size": self.size, "strategy": self.strategy,
                "shift_every": self.shift_every, "stride": self.stride, "seed": self.seed}

    def load_state_dict(self, state: Mapping) -> None:
        """Check a saved ``state_dict`` against this window's settings: ``ValueError`` when any setting
        that decides the schedule differs (``seed`` counts for ``random`` only, ``shift_every`` and
        ``stride`` for ``progressive`` only). Nothing is loaded: the settings come from the config."""
        changed = [f"{name}: {state.get(name)!r} in the checkpoint, {getattr(self, name)!r} now"
                   for name in self._schedule_fields() if state.get(name) != getattr(self, name)]
        if changed:
            raise ValueError("the checkpoint was trained with another sliding window (" + "; ".join(changed)
                             + "); resume with the same sampler.window_* / sampler.num_steps / train.seed "
                             "settings, or start a new run")


def compressed_tail(sigmas: torch.Tensor, keep_until: int, ratio: float) -> torch.Tensor:
    """Sigma grid whose part after index ``keep_until`` is thinned to ceil(ratio * n) steps.

    ``sigmas`` has S + 1 entries; entries 0..keep_until are kept as they are (the window and the
    steps before it, which must stay first-order and unchanged), the remaining n = S - keep_until
    steps to sigma = 0 are replaced by ceil(ratio * n) steps on the same grid (evenly spaced indices).
    """
    if ratio >= 1.0:
        return sigmas
    n = sigmas.numel() - 1 - keep_until
    if n <= 1:
        return sigmas
    m = max(1, math.ceil(ratio * n))
    picks = torch.linspace(keep_until, sigmas.numel() - 1, m + 1).round().long()
    return torch.cat([sigmas[:keep_until], sigmas[picks]])
