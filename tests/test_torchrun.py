"""The tests' torchrun helper retries the gloo teardown abort once, and nothing else."""

from __future__ import annotations

import pytest

from tests.torchrun import TEARDOWN_ABORT, torchrun

WORKER = """import sys
from pathlib import Path
marker = Path(sys.argv[1])
runs = int(marker.read_text()) if marker.exists() else 0
marker.write_text(str(runs + 1))
if runs < int(sys.argv[2]):
    sys.stderr.write(sys.argv[3] + "\\n")
    sys.exit(1)
"""


def _launch(tmp_path, failures: int, message: str):
    script, marker, output = tmp_path / "worker.py", tmp_path / "runs", tmp_path / "output"
    script.write_text(WORKER)
    output.mkdir()
    torchrun(1, [str(script), str(marker), str(failures), message], outputs=(output,), timeout=120)
    return int(marker.read_text()), output.exists()


@pytest.mark.slow
def test_the_teardown_abort_is_retried_once_after_its_outputs_are_removed(tmp_path):
    with pytest.warns(UserWarning, match="retrying once"):
        assert _launch(tmp_path, 1, TEARDOWN_ABORT) == (2, False)


@pytest.mark.slow
def test_other_failures_and_a_second_abort_fail(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(AssertionError, match="some other error"):
        _launch(tmp_path / "a", 1, "some other error")
    assert (tmp_path / "a" / "runs").read_text() == "1"  # not retried
    with pytest.warns(UserWarning), pytest.raises(AssertionError, match=TEARDOWN_ABORT):
        _launch(tmp_path / "b", 2, TEARDOWN_ABORT)
    assert (tmp_path / "b" / "runs").read_text() == "2"
