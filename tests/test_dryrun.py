"""The dry run (``fastvideo.dryrun``): every shipped real recipe at real dimensions on fake tensors.

Real recipes run with ``memory=False`` (shapes, parameters, the FSDP plan, the launch plan) except the
FLUX reference recipe, which runs the memory trackers end to end through its launcher. The accounting
itself is checked on tiny configs against numbers computed here by other means.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastvideo.config import load_config
from fastvideo.dryrun import DryRunError, dry_run
from fastvideo.dryrun.real_configs import CHECKPOINTS, write_checkpoint_dir
from fastvideo.dryrun.report import check_fits, format_report

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


def _cfg(path: str, *overrides: str):
    return load_config(str(ROOT / path), list(overrides))


def _state(report, key: str) -> int:
    return next(v for k, v in report.state.items() if k.startswith(key))


# --- accounting on tiny configs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_flux_reports():
    cfg = _cfg("configs/debug/flux_tiny.yaml", "--train.train_batch_size=2")
    return {world: dry_run(cfg, world_size=world, device_type="cpu") for world in (1, 4)}


def test_tiny_state_matches_the_model(tiny_flux_reports):
    """fp32 master weights = 4 bytes per parameter on 1 GPU; AdamW keeps two moments per trainable weight."""
    report = tiny_flux_reports[1]
    transformer = report.components[0]
    assert transformer.params == transformer.trainable > 0
    assert _state(report, "parameters") == 4 * transformer.params
    assert _state(report, "gradients") == 4 * transformer.trainable
    optimizer = _state(report, "optimizer state")
    assert 8 * transformer.trainable <= optimizer <= 8 * transformer.trainable + 8 * 1000  # + step counters


def test_fsdp_divides_the_sharded_state(tiny_flux_reports):
    """4 ranks hold about a quarter of the parameters each (FSDP2 pads dim 0 to a multiple of the ranks)."""
    one, four = tiny_flux_reports[1], tiny_flux_reports[4]
    ratio = _state(four, "parameters") / _state(one, "parameters")
    assert 0.25 <= ratio < 0.3
    assert four.components[0].params == one.components[0].params  # global counts stay global
    train = next(p for p in four.phases if p.name.startswith("train: forward"))
    assert "sharded_param" in train.categories and "unsharded_param" in train.categories  # all-gathered blocks


def test_phase_peaks_include_the_resident_state(tiny_flux_reports):
    report = tiny_flux_reports[1]
    resident = _state(report, "parameters") + _state(report, "optimizer state")
    for phase in report.phases:
        assert phase.peak_bytes >= resident, phase.name
    step = next(p for p in report.phases if p.name == "train: optimizer step")
    assert step.categories.get("opt", 0) >= _state(report, "optimizer state")
    text = format_report(report)
    assert "train: forward + backward" in text and "fits" in text


def test_lora_trains_only_the_adapters():
    from fastvideo.models import build_adapter
    from fastvideo.training.lora import add_lora

    cfg = _cfg("configs/debug/flux_tiny.yaml", "--model.lora_rank=4")
    report = dry_run(cfg, world_size=1, device_type="cpu")
    adapter = build_adapter(cfg.model, "cpu")  # the same LoRA on real tensors
    model = add_lora(adapter.transformer, cfg.model, adapter.default_lora_targets)
    expected = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report.components[0].trainable == expected < report.components[0].params
    assert _state(report, "gradients") == 4 * expected


def test_larger_micro_batches_need_more_activation_memory():
    peaks = {}
    for batch in (1, 8):
        cfg = _cfg("configs/debug/flux_tiny.yaml", f"--train.train_batch_size={batch}", "--model.height=64",
                   "--model.width=64")
        report = dry_run(cfg, world_size=1, device_type="cpu")
        train = next(p for p in report.phases if p.name.startswith("train: forward"))
        peaks[batch] = train.categories.get("act", 0) + train.categories.get("temp", 0)
    assert peaks[8] > 4 * peaks[1] > 0


# --- real recipes -------------------------------------------------------------------------------

REAL_RECIPES = {
    # recipe: (config, GPUs, overrides)
    "flux_lora": ("configs/flux_lora_grpo.yaml", 8, ()),
    "flux_mixgrpo": ("configs/flux_grpo_mixgrpo.yaml", 16, ()),
    "flux_mixgrpo_flash": ("configs/flux_grpo_mixgrpo_flash.yaml", 16, ()),
    "sd_hps": ("configs/sd_grpo.yaml", 8, ()),
    "sd_pickscore": ("configs/sd_grpo.yaml", 8, ("--rewards.terms=[{name: pickscore}]",)),
    "sd_clip_score": ("configs/sd_grpo.yaml", 8, ("--rewards.terms=[{name: clip_score}]",)),
    "sd_image_reward": ("configs/sd_grpo.yaml", 8, ("--rewards.terms=[{name: image_reward}]",)),
    "hunyuan_t2v_videoalign": ("configs/hunyuan_grpo.yaml", 32, ()),
    "hunyuan_t2i": ("configs/hunyuan_grpo.yaml", 8, ("--model.num_frames=1", "--rewards.terms=[{name: hps}]")),
    "skyreels_i2v": ("configs/skyreels_i2v_grpo.yaml", 8, ()),
    "sd3": ("configs/sd3_grpo.yaml", 8, ()),
    "wan": ("configs/wan_grpo.yaml", 8, ()),
    "qwen_image": ("configs/qwen_image_grpo.yaml", 8, ()),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(REAL_RECIPES))
def test_every_real_recipe_dry_runs(recipe):
    """Real widths, sequence lengths and resolutions through every phase, and the FSDP2 plan."""
    path, world, overrides = REAL_RECIPES[recipe]
    cfg = _cfg(path, *overrides)
    report = dry_run(cfg, world_size=world, memory=False, recipe=recipe)
    transformer = report.components[0]
    assert transformer.params > 5e8  # the real denoiser, not a tiny one
    assert [p.name for p in report.phases][-2:] == ["train: forward + backward", "train: optimizer step"]
    assert report.plan["samples per GPU"] == cfg.grpo.group_size * cfg.train.prompts_per_iteration
    if cfg.model.lora_rank == 0 and cfg.train.fsdp:
        assert _state(report, "parameters") <= 4 * transformer.params / world * 1.01
    assert "memory not tracked" in format_report(report)


@pytest.mark.slow
def test_flux_launcher_dry_run_plans_memory():
    """The FLUX reference recipe through its launcher, memory trackers on: 16 x 80 GB, as DanceGRPO ran it."""
    env = {**os.environ, "FASTVIDEO_DEBUG": "1"}
    result = subprocess.run(["bash", str(ROOT / "scripts/finetune/finetune_flux_grpo.sh"), "--dry_run",
                             "--dry_run.world_size", "16"], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "11,901,408,320" in out  # FLUX.1-dev's 12B transformer
    peak = float(out.split("peak ")[-1].split(" GiB")[0])
    assert 10 < peak < 80 and out.rstrip().endswith("fits")


# --- failures -----------------------------------------------------------------------------------


def _shrunk_flux_dir(tmp_path: Path, **changes) -> str:
    """FLUX.1-dev's widths with 1 + 1 blocks (fast), with ``changes`` applied to component configs."""
    root = write_checkpoint_dir("flux", tmp_path / "flux")
    edits = {"transformer/config.json": {"num_layers": 1, "num_single_layers": 1},
             "text_encoder_2/config.json": {"num_layers": 1}}
    for relative, update in changes.items():
        edits.setdefault(relative.replace("__", "/") + "/config.json", {}).update(update)
    for relative, update in edits.items():
        file = root / relative
        file.write_text(json.dumps({**json.loads(file.read_text()), **update}))
    return str(root)


def test_a_wrong_text_embedding_width_fails_with_a_clear_message(tmp_path):
    path = _shrunk_flux_dir(tmp_path, text_encoder_2={"d_model": 2048})
    cfg = _cfg("configs/flux_grpo.yaml", f"--model.path={path}")
    with pytest.raises(DryRunError) as error:
        dry_run(cfg, world_size=2, memory=False)
    message = str(error.value)
    assert "rollout phase" in message and "(1, 512, 2048)" in message and "[4096, 3072]" in message


def test_a_plan_that_does_not_fit_names_the_settings_that_would(tmp_path):
    cfg = _cfg("configs/flux_grpo.yaml", f"--model.path={_shrunk_flux_dir(tmp_path)}")
    report = dry_run(cfg, world_size=1, gpu_memory_gb=8.0)  # needs ~12.9 GiB: decoding 4 images at 720 px
    assert not report.fits
    with pytest.raises(DryRunError) as error:
        check_fits(report, cfg)
    message = str(error.value)
    assert "GiB per GPU" in message and "--model.lora_rank 64" in message
    fitting = [line for line in message.splitlines() if line.endswith("(fits)")]
    assert fitting and all("--dry_run.world_size" in line for line in fitting)  # 8+ GPUs fit; nothing else alone
    assert "--dry_run.world_size 8 " in fitting[-1] or any("world_size 8 " in line for line in fitting)


def test_dry_run_refuses_an_unknown_model_without_configs(tmp_path):
    cfg = _cfg("configs/debug/flux_tiny.yaml", "--model.tiny=false", f"--model.path={tmp_path}")
    cfg.model.name = "nonexistent"
    with pytest.raises(DryRunError, match="no real config"):
        dry_run(cfg)


def test_shipped_configs_cover_every_real_recipe_model():
    models = {load_config(str(ROOT / path)).model.name for path, _, _ in REAL_RECIPES.values()}
    assert models <= set(CHECKPOINTS) and {"flux", "sd", "hunyuan", "skyreels_i2v"} <= models


def test_cli_dry_run_of_a_tiny_config():
    result = subprocess.run([sys.executable, "-m", "fastvideo.train", "--config",
                             str(ROOT / "configs/debug/flux_tiny.yaml"), "--dry_run", "--dry_run.device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Dry run of flux_tiny" in result.stdout and result.stdout.rstrip().endswith("fits")
    assert torch.distributed.is_available()
