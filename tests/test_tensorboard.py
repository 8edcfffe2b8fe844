"""``logging.tensorboard: true``: MetricsLogger writes TensorBoard event files beside metrics.jsonl."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from fastvideo.config import load_config
from fastvideo.training.metrics import TENSORBOARD_DIR, MetricsLogger, MissingDependencyError, save_grid

pytest.importorskip("tensorboard")


def _read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_scalars_and_images_read_back_equal_what_was_logged(tmp_path):
    logger = MetricsLogger(tmp_path, enabled=True, use_tensorboard=True)
    logged = {0: {"reward": 0.25, "loss": torch.tensor(-1.5), "clipfrac": 0, "per_reward": [1.0, 2.0]},
              1: {"reward": 0.5, "loss": torch.tensor(0.75), "clipfrac": 0.125, "per_reward": [3.0, 4.0]},
              2: {"reward": float("nan"), "loss": 2.0, "clipfrac": 1}}
    for step, metrics in logged.items():
        logger.log(step, metrics)
    grid = save_grid(torch.rand(4, 3, 8, 8), 2, tmp_path / "samples" / "iter-000002.png")
    logger.log_image(2, "validation", grid)
    logger.close()
    assert logger.tensorboard is None

    assert len([json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]) == 3
    events = _read_events(tmp_path / TENSORBOARD_DIR)
    assert sorted(events.Tags()["scalars"]) == ["clipfrac", "loss", "reward"]  # lists and 'iteration' skipped
    for tag in ("reward", "loss", "clipfrac"):
        read = [(e.step, e.value) for e in events.Scalars(tag)]
        want = [(step, float(metrics[tag])) for step, metrics in logged.items()]
        assert [s for s, _ in read] == [s for s, _ in want]
        for (_, got), (_, value) in zip(read, want):
            assert (math.isnan(got) and math.isnan(value)) or got == pytest.approx(value, rel=1e-6), tag
    assert events.Tags()["images"] == ["validation"]
    image = events.Images("validation")[0]
    assert (image.step, image.width, image.height) == (2, 16, 16)


def test_disabled_rank_and_default_write_no_event_files(tmp_path):
    MetricsLogger(tmp_path / "a", enabled=False, use_tensorboard=True).close()
    (tmp_path / "b").mkdir()  # the trainer creates the run directory
    default = MetricsLogger(tmp_path / "b", enabled=True)
    default.log(0, {"reward": 1.0})
    default.close()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / TENSORBOARD_DIR).exists()


def test_config_field_and_missing_package_message(tmp_path, monkeypatch):
    assert load_config().logging.tensorboard is False
    assert load_config(None, ["--logging.tensorboard", "true"]).logging.tensorboard is True
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install -e \.\[log\]"):
        MetricsLogger(tmp_path, enabled=True, use_tensorboard=True)
