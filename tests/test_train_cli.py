"""The README's debug commands: torchrun with 2 ranks (gloo, FSDP2) on the tiny FLUX, SD, HunyuanVideo
(text-to-video) and SkyReels-style image-to-video configs, 2 iterations each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fastvideo.config import ConfigError, load_config
from tests.torchrun import torchrun


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flux", "sd", "hunyuan", "skyreels_i2v"])
def test_debug_config_under_torchrun_writes_run_directory(tmp_path, name):
    out = tmp_path / "run"
    torchrun(2, ["-m", "fastvideo.train", "--config", f"configs/debug/{name}_tiny.yaml", "--output_dir", str(out),
                 "--train.max_iterations", "2", "--checkpoint.every", "1", "--logging.validation_every", "2",
                 "--logging.progress_bar", "false"], outputs=(out,), timeout=600)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1]
    assert all(abs(r["ratio_mean"] - 1) < 1e-5 for r in records)
    assert load_config(out / "config.yaml").train.max_iterations == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["iter-000001", "iter-000002"]
    assert (out / "samples" / "iter-000002.png").exists()
    if name in ("hunyuan", "skyreels_i2v"):
        assert (out / "samples" / "iter-000002.gif").exists()
    sub = "unet" if name == "sd" else "transformer"
    assert (out / "export" / sub / "diffusion_pytorch_model.safetensors").exists()


def test_cli_config_errors_exit_with_a_message(tmp_path):
    cmd = [sys.executable, "-m", "fastvideo.train", "--config", "configs/debug/flux_tiny.yaml",
           "--output_dir", str(tmp_path), "--grpo.clip_rnge", "0.1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "grpo.clip_range" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(ConfigError, match="group_size"):
        load_config("configs/debug/flux_tiny.yaml", ["--grpo.group_size", "1"])
