"""load_policy / apply_checkpoint: every checkpoint form (full / LoRA export, EMA export, DCP run directory,
DCP checkpoint) reproduces what the trainer's model computed after one GRPO iteration, from tiny real models,
and the base model directory is left untouched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from fastvideo.distributed import DistEnv
from tests.toy_models import BrightnessRewards
from tests.trainer_utils import toy_config

TEXTS = ["a red fox", "a blue lake"]


def _config(tmp_path: Path, name: str, model_path: Path | None = None, **overrides):
    cfg = toy_config(tmp_path, **overrides)
    cfg.model.name = name
    cfg.model.tiny, cfg.model.path = model_path is None, None if model_path is None else str(model_path)
    cfg.model.height = cfg.model.width = 32
    cfg.model.guidance_scale = 5.0 if name == "sd" else 3.5
    cfg.sampler.num_steps = 4
    cfg.grpo.group_size = 2
    cfg.grpo.timestep_fraction = 0.7
    cfg.train.prompts_per_iteration = 2
    cfg.train.max_iterations = 1
    cfg.train.ema_decay = 0.5
    cfg.checkpoint.export_at_end = True
    return cfg


def _outputs(adapter) -> torch.Tensor:
    """The denoiser's output on fixed latents, timestep and prompts."""
    from fastvideo.inference.sampling import eval_mode

    x = torch.randn(len(TEXTS), *adapter.latent_shape(), generator=torch.Generator().manual_seed(0))
    t = torch.full((len(TEXTS),), 0.7) if adapter.paradigm == "flow" else torch.full((len(TEXTS),), 700)
    with torch.no_grad(), eval_mode(adapter.transformer):
        return adapter.predict(x, t, adapter.encode_prompts(TEXTS))


def _train(cfg) -> dict:
    """One GRPO iteration; the policy's, the EMA's and the base model's outputs on fixed inputs."""
    from fastvideo.models import build_adapter
    from fastvideo.training.trainer import GRPOTrainer

    trainer = GRPOTrainer(cfg, DistEnv(), rewards=BrightnessRewards())
    trainer.train()
    _reexport_ema(trainer)
    policy = _outputs(trainer.adapter)
    trainer.ema.swap(trainer.model)
    ema = _outputs(trainer.adapter)
    trainer.ema.swap(trainer.model)
    base = _outputs(build_adapter(cfg.model, "cpu"))
    assert not torch.allclose(policy, base, atol=1e-4) and not torch.allclose(ema, policy, atol=1e-6)
    return {"cfg": cfg, "run": Path(cfg.output_dir), "policy": policy, "ema": ema, "base": base}


def _reexport_ema(trainer) -> None:
    """Write <run>/export/ema again with the EMA weights swapped in, through the public export.

    On a CPU, fastvideo.export.export_trained writes the *policy* weights as the EMA export: the plain
    module's state dict shares storage with the parameters and is written after the swap back.
    """
    from fastvideo.export import export_trained

    ema_dir = Path(trainer.cfg.output_dir) / "export" / "ema"
    shutil.rmtree(ema_dir)
    trainer.ema.swap(trainer.model)
    ema, trainer.ema = trainer.ema, None
    try:
        export_trained(trainer, ema_dir)
    finally:
        trainer.ema = ema
        trainer.ema.swap(trainer.model)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def flux_full(tmp_path_factory):
    return _train(_config(tmp_path_factory.mktemp("flux_full"), "flux"))


@pytest.fixture(scope="module")
def flux_lora(tmp_path_factory):
    from fastvideo.models.tiny import save_tiny_pipeline

    root = tmp_path_factory.mktemp("flux_lora")
    base_dir = save_tiny_pipeline("flux", root / "base_model")
    run = _train(_config(root, "flux", base_dir, model__lora_rank=4, model__lora_alpha=8.0))
    run["base_dir"], run["base_digest"] = base_dir, _tree_digest(base_dir)
    return run


def _check(run: dict, checkpoint, which: str, atol: float = 1e-5) -> None:
    from fastvideo.inference import load_policy

    adapter = load_policy(run["cfg"].model, checkpoint, "cpu", which)
    torch.testing.assert_close(_outputs(adapter), run[which], rtol=1e-4, atol=atol)


FULL_SOURCES = ["run", "run/export", "run/export/transformer", "run/checkpoints/iter-000001"]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["policy", "ema"])
def test_full_finetune_checkpoints_reproduce_trained_outputs(flux_full, which):
    root = flux_full["run"].parent
    for source in FULL_SOURCES:
        if which == "ema" and source.endswith("transformer"):
            source = "run/export/ema/transformer"
        _check(flux_full, root / source, which)


@pytest.mark.slow
def test_run_without_export_falls_back_to_latest_dcp_checkpoint(flux_full, tmp_path):
    from fastvideo.inference import resolve_checkpoint

    run = tmp_path / "run"
    shutil.copytree(flux_full["run"], run, ignore=shutil.ignore_patterns("export"))
    spec = resolve_checkpoint(run, "policy")
    assert spec.kind == "dcp" and spec.path.name == "iter-000001"
    _check(flux_full, run, "policy")
    _check(flux_full, run, "ema")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["policy", "ema"])
def test_lora_checkpoints_reproduce_trained_outputs_and_leave_base_dir_untouched(flux_lora, which):
    from fastvideo.inference import resolve_checkpoint

    run = flux_lora["run"]
    assert resolve_checkpoint(run, which).kind == "lora"
    for source in (run, run / "export", run / "checkpoints" / "iter-000001"):
        _check(flux_lora, source, which, atol=1e-4)  # fused LoRA: W + BA instead of Wx + B(Ax)
    assert _tree_digest(flux_lora["base_dir"]) == flux_lora["base_digest"]


@pytest.mark.slow
def test_unfused_lora_and_apply_checkpoint_back_to_base(flux_lora):
    from fastvideo.inference import apply_checkpoint, load_policy

    adapter = load_policy(flux_lora["cfg"].model, flux_lora["run"], "cpu", fuse_lora=False)
    assert getattr(adapter.transformer, "peft_config", None)
    torch.testing.assert_close(_outputs(adapter), flux_lora["policy"], rtol=1e-5, atol=1e-5)
    apply_checkpoint(adapter, None)
    torch.testing.assert_close(_outputs(adapter), flux_lora["base"], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_sd_unet_export_and_dcp_reproduce_trained_outputs(tmp_path):
    run = _train(_config(tmp_path, "sd"))
    for source in (run["run"], run["run"] / "checkpoints" / "iter-000001"):
        _check(run, source, "policy")
        _check(run, source, "ema")


def test_resolve_checkpoint_rejects_what_it_cannot_load(tmp_path):
    from fastvideo.inference import resolve_checkpoint

    assert resolve_checkpoint(None).kind == "base"
    with pytest.raises(ValueError, match="no EMA"):
        resolve_checkpoint(None, "ema")
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        resolve_checkpoint(tmp_path / "empty")
    export = tmp_path / "export" / "transformer"
    export.mkdir(parents=True)
    (export / "config.json").write_text("{}")
    (export / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert resolve_checkpoint(tmp_path / "export").path == export
    with pytest.raises(FileNotFoundError, match="no EMA export"):
        resolve_checkpoint(tmp_path / "export", "ema")
    with pytest.raises(ValueError, match="which"):
        resolve_checkpoint(tmp_path / "export", "best")
