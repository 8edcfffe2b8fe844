"""The clean-render flow loss on the adapter equals the pretraining loss, and the control trains."""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adapter():
    from fastvideo.config import load_config
    from fastvideo.models import build_adapter

    cfg = load_config(REPO / "configs/shapes/flux_grpo.yaml", [])
    cfg.model.path = str(REPO / "assets/shapes/flux")
    return build_adapter(cfg.model, "cpu")


def test_clean_flow_loss_through_the_adapter_equals_the_pretraining_loss(adapter):
    from fastvideo.shapes.clean_renders import clean_flow_loss
    from fastvideo.shapes.pretrain.data import scene_batch, step_generator
    from fastvideo.shapes.pretrain.train_flux import flux_latents, flux_loss

    prompts, images = scene_batch(6, 11, 0)

    class Bundle:  # the pretraining loss's view of the same modules
        transformer = adapter.transformer
        clip = adapter.component("text_encoder")
        t5 = adapter.component("text_encoder_2")

    with torch.no_grad():
        ours = clean_flow_loss(adapter, prompts, images, step_generator(11, 0, purpose=1))
        generator = step_generator(11, 0, purpose=1)
        toks = (adapter.component("tokenizer"), adapter.component("tokenizer_2"))
        reference = flux_loss(Bundle, toks, flux_latents(adapter.component("vae"), images, generator),
                              prompts, generator)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_training_on_clean_renders_moves_the_policy(adapter):
    from fastvideo.shapes.clean_renders import train_on_clean_renders

    before = {n: p.detach().clone() for n, p in adapter.transformer.named_parameters()}
    facts = train_on_clean_renders(adapter, minutes=5, max_steps=2, batch_size=4, lr=1e-4)
    assert facts["steps"] == 2 and torch.isfinite(torch.tensor(facts["loss_last"]))
    moved = [n for n, p in adapter.transformer.named_parameters() if not torch.equal(before[n], p.detach())]
    assert len(moved) > 0.9 * len(before)
