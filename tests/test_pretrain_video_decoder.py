"""Decoder-only fine-tuning of the moving-shapes video VAE: the latent space stays, the decoder learns,
shipping keeps the stored dtype and refuses a pipeline with another encoder."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKLHunyuanVideo

from fastvideo.shapes.pretrain import video_decoder
from fastvideo.shapes.pretrain.video_components import VIDEO_SMOKE, build_video_vae


def fake_pipeline(directory, seed: int) -> None:
    """A pipeline directory with only what the decoder stage reads: vae/ (fp16) and pretrain.json."""
    torch.manual_seed(seed)
    build_video_vae(VIDEO_SMOKE).to(torch.float16).save_pretrained(directory / "vae")
    sampling = {"height": 32, "width": 32, "num_frames": 9}
    (directory / "pretrain.json").write_text(json.dumps({"sampling": sampling, "vae_stats": {"steps": 1}}))
    (directory / "eval.json").write_text("{}")


def weights(directory) -> dict[str, torch.Tensor]:
    vae = AutoencoderKLHunyuanVideo.from_pretrained(directory, dtype=torch.float32)
    return {k: v.clone() for k, v in vae.state_dict().items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoder")
    for name, seed in (("t2v", 0), ("i2v", 0), ("other", 1)):
        fake_pipeline(root / name, seed)
    video_decoder.main(["--pipelines", str(root / "t2v"), str(root / "i2v"), "--work_dir", str(root / "work"),
                        "--steps", "3", "--batch_size", "2", "--lr", "1e-2", "--stats_samples", "4",
                        "--threads", "1"])
    return root


def test_only_the_decoder_moves(trained):
    before, after = weights(trained / "t2v" / "vae"), weights(trained / "work" / "decoder" / "model")
    frozen = [k for k in before if k.startswith(video_decoder.FROZEN_PREFIXES)]
    tuned = [k for k in before if k not in frozen]
    assert frozen and tuned
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert sum(not torch.equal(before[k], after[k]) for k in tuned) > len(tuned) // 2
    stats = json.loads((trained / "work" / "decoder" / "stats.json").read_text())
    for reading in ("base", "finetuned"):
        assert 0.0 <= stats[reading]["verifier_acc_reconstruction"] <= 1.0
        assert "scaling_factor" not in stats[reading]  # the VAE keeps its config's factor


def test_ship_refuses_another_latent_space_and_writes_nothing(trained):
    original = (trained / "t2v" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="encoder differs"):
        video_decoder.main(["--pipelines", str(trained / "t2v"), str(trained / "other"),
                            "--work_dir", str(trained / "work"), "--ship"])
    assert (trained / "t2v" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == original


def test_ship_writes_the_tuned_vae_in_the_stored_dtype(trained):
    video_decoder.main(["--pipelines", str(trained / "t2v"), str(trained / "i2v"),
                        "--work_dir", str(trained / "work"), "--ship"])
    tuned = weights(trained / "work" / "decoder" / "model")
    for name in ("t2v", "i2v"):
        directory = trained / name
        assert video_decoder.stored_dtype(directory / "vae") == torch.float16
        shipped = weights(directory / "vae")
        assert all(torch.equal(shipped[k], tuned[k].half().float()) for k in tuned)
        info = json.loads((directory / "pretrain.json").read_text())
        assert info["vae_decoder_finetune"]["steps"] == 3
        assert "verifier_acc_reconstruction" in info["vae_stats"] and info["vae_stats"]["steps"] == 1
        assert not (directory / "eval.json").exists()  # it described the old decoder
        assert "vae_decoder_finetune_history" not in info
    video_decoder.main(["--pipelines", str(trained / "t2v"), "--work_dir", str(trained / "work"), "--ship"])
    info = json.loads((trained / "t2v" / "pretrain.json").read_text())  # shipped again: the first one is kept
    assert [entry["steps"] for entry in info["vae_decoder_finetune_history"]] == [3]
