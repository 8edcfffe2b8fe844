"""Mistakes a user can fix, and the wrapper every ``python -m fastvideo...`` command runs its ``main`` in.

A ``UserError`` is an error whose message alone tells the user what is wrong, where, and how to fix it:
a missing model directory or file, an empty prompt file, a missing prompt-embedding cache or reward
checkpoint, an invalid configuration. The specific classes keep their usual base class as well
(``ModelNotFoundError`` is a ``FileNotFoundError``, ``ConfigError`` a ``ValueError``...), so code that
catches those keeps working.

``run_cli(main)`` calls ``main(argv)`` and turns a ``UserError`` into one ``error: <message>`` on stderr
and exit code 2, without a traceback. ``--debug`` anywhere on the command line (removed before ``main``
parses it) or ``FASTVIDEO_DEBUG=1`` re-raises the error instead, so the traceback shows. Under torchrun
each rank that fails prints its message once, prefixed with ``[rank r]``.

This module imports nothing heavy: entry points import it before torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

DEBUG_FLAG = "--debug"
"""Command-line flag that shows the traceback of a user error."""
DEBUG_ENV = "FASTVIDEO_DEBUG"
"""Environment variable that shows the traceback of a user error when set to 1 / true / yes."""
EXIT_CODE = 2
"""Exit status of a command stopped by a user error (argparse uses 2 for usage errors too)."""

T = TypeVar("T")


class UserError(Exception):
    """An error the user fixes (a path, a file, a config value); reported as one message, no traceback."""


def debug_enabled(argv: Sequence[str] = ()) -> bool:
    """True if ``--debug`` is in ``argv`` or ``FASTVIDEO_DEBUG`` is set to a true value."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return DEBUG_FLAG in argv or env not in ("", "0", "false", "no", "off")


def format_user_error(err: BaseException) -> str:
    """``error: <message>``, prefixed with ``[rank r]`` when the process is one of several torchrun ranks."""
    message = str(err).strip() or type(err).__name__
    prefix = ""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        prefix = f"[rank {os.environ.get('RANK', '?')}] "
    return f"{prefix}error: {message}"


def run_cli(main: Callable[[list[str]], T], argv: Sequence[str] | None = None) -> T:
    """Run ``main(argv)`` (default ``sys.argv[1:]``, minus ``--debug``) and report a ``UserError`` as one
    message on stderr with exit code 2; with ``--debug`` or ``FASTVIDEO_DEBUG=1`` the error propagates."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(args)
    args = [arg for arg in args if arg != DEBUG_FLAG]
    try:
        return main(args)
    except UserError as err:
        if debug:
            raise
        print(format_user_error(err), file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CODE) from None

