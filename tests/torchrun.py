"""One way for the tests to launch ``torchrun`` on CPU (gloo), so that every multi-rank test gets the
same environment, the same failure message and the same handling of one known torch abort.

Gloo's C++ threads can abort a rank while the process tears down ("terminate called without an
active exception", SIGABRT), after its work is done: seen once in about ten clean-clone CI runs of
the suite, never in 42 runs of the same worker alone or eight at a time (2026-12-07). That abort,
and only that one, is retried once with a warning; any other failure, or the same abort twice,
fails the test. ``PYTHONFAULTHANDLER`` makes an aborted rank print its Python stack, so that the next
one says where it happened.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEARDOWN_ABORT = "terminate called without an active exception"
"""What libstdc++ prints when a joinable ``std::thread`` is destroyed: the gloo teardown abort."""


def torchrun(nproc: int, args: list[str], outputs: tuple[Path, ...] = (), timeout: int = 300,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=nproc *args`` on CPU with one
    thread per rank, from the repository root; asserts that it succeeded and returns the process.
    ``outputs``: what the run writes (files or folders), removed before a retry."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORCE_CPU": "1", "PYTHONFAULTHANDLER": "1",
           "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    done = _run(cmd, env, timeout)
    if done.returncode != 0 and TEARDOWN_ABORT in done.stderr:
        warnings.warn(f"a rank aborted ({TEARDOWN_ABORT!r}); retrying once:\n{done.stderr[-2000:]}",
                      stacklevel=2)
        for path in outputs:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        done = _run(cmd, env, timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def _run(cmd: list[str], env: dict, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
