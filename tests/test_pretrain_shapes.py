"""Pretraining of the shapes pipelines: tokenizers, plumbing (tiny smoke run) and the shipped assets."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastvideo.shapes.grammar import prompt_splits, vocabulary
from fastvideo.shapes.heldout import heldout_prompts, proportion, summarize
from fastvideo.shapes.pretrain.common import StageOptions, lr_factor
from fastvideo.shapes.pretrain.components import (
    FULL,
    T5_MAX_LENGTH,
    build_clip_tokenizer,
    build_t5_encoder,
    build_t5_tokenizer,
    rope_axes,
    set_neighbour_heads,
)
from fastvideo.shapes.pretrain.data import scene_batch
from fastvideo.shapes.pretrain.train_flux import sample_flow_time

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "shapes"


def test_clip_tokenizer_maps_every_word_to_one_token():
    tokenizer = build_clip_tokenizer(vocabulary())
    for word in vocabulary():
        assert tokenizer.tokenize(word) == [word + "</w>"]
    ids = tokenizer("a red circle left of a blue square", padding="max_length", max_length=77).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[9] == tokenizer.eos_token_id and len(ids) == 77


def test_t5_tokenizer_maps_every_word_to_one_piece_and_fits_longest_prompt():
    tokenizer = build_t5_tokenizer(vocabulary())
    for word in vocabulary():
        assert tokenizer.tokenize(word) == ["\u2581" + word]
    train, heldout = prompt_splits(0)
    longest = max(len(tokenizer(p.text).input_ids) for p in train + heldout)
    assert longest <= T5_MAX_LENGTH, "T5_MAX_LENGTH would truncate grammar prompts"
    assert tokenizer.unk_token_id not in tokenizer("two purple triangles").input_ids


def test_neighbour_heads_attend_to_the_adjacent_words_and_give_a_word_its_role():
    tokenizer = build_t5_tokenizer(vocabulary())
    torch.manual_seed(0)
    t5 = build_t5_encoder(FULL, tokenizer).eval()
    t5.config._attn_implementation = "eager"
    with torch.no_grad():  # saturated content attention, as the jointly trained encoder's: logits of tens
        for block in t5.encoder.block:
            block.layer[0].SelfAttention.q.weight.mul_(30.0)
    texts = ["a red circle left of a blue square", "a blue square left of a red circle"]
    ids = tokenizer(texts, max_length=T5_MAX_LENGTH, padding="max_length", return_tensors="pt").input_ids
    assert ids[0, 1:3].tolist() == ids[1, 6:8].tolist()  # "red circle": subject, then object

    def states():
        with torch.no_grad():
            out = t5(ids, output_attentions=True)
        return out.last_hidden_state, out.attentions

    before, _ = states()
    set_neighbour_heads(t5, 5.0)
    after, attentions = states()
    for layer in attentions:
        queries = torch.arange(1, T5_MAX_LENGTH - 1)
        assert (layer[0, 0, queries, queries - 1] > 0.9).all() and (layer[0, 1, queries, queries + 1] > 0.9).all()
    role = lambda h: (h[0, 1:3] - h[1, 6:8]).norm() / h[0, 1:3].norm()  # noqa: E731
    assert role(after) > 0.05 and role(after) > 20 * role(before)


def test_context_heads_attend_evenly_to_every_word_on_their_side_and_gain_scales_their_output():
    tokenizer = build_t5_tokenizer(vocabulary())
    torch.manual_seed(0)
    t5 = build_t5_encoder(FULL, tokenizer).eval()
    t5.config._attn_implementation = "eager"
    ids = tokenizer(["a red circle left of a blue square"], max_length=T5_MAX_LENGTH, padding="max_length",
                    return_tensors="pt").input_ids
    plain = copy.deepcopy(t5)
    set_neighbour_heads(plain, 10.0, span="context")
    set_neighbour_heads(t5, 10.0, span="context", gain=3.0)
    with torch.no_grad():
        attentions = t5(ids, output_attentions=True).attentions
    query = 5
    for layer in attentions:
        before, after = layer[0, 0, query], layer[0, 1, query]
        assert torch.allclose(before[:query], torch.full((query,), 1 / query), atol=1e-3)  # the mean of the past
        assert torch.allclose(after[query + 1:], torch.full((T5_MAX_LENGTH - query - 1,), 1 / (T5_MAX_LENGTH - query - 1)),
                              atol=1e-3)
    d = t5.config.d_kv
    for block, reference in zip(t5.encoder.block, plain.encoder.block):
        o, o_ref = block.layer[0].SelfAttention.o.weight, reference.layer[0].SelfAttention.o.weight
        assert torch.equal(o[:, :2 * d], 3.0 * o_ref[:, :2 * d]) and torch.equal(o[:, 2 * d:], o_ref[:, 2 * d:])
    with pytest.raises(ValueError, match="span"):
        set_neighbour_heads(t5, 1.0, span="diagonal")


def test_rope_axes_sum_to_head_dim():
    assert rope_axes(64) == (16, 24, 24)
    assert sum(rope_axes(16)) == 16
    with pytest.raises(ValueError):
        rope_axes(20)


def test_scene_batch_is_deterministic_and_uses_train_prompts_only():
    prompts, images = scene_batch(16, seed=3, step=7)
    prompts_again, images_again = scene_batch(16, seed=3, step=7)
    assert prompts == prompts_again and torch.equal(images, images_again)
    assert images.shape == (16, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    train_texts = {p.text for p in prompt_splits(0)[0]}
    many, _ = scene_batch(256, seed=0, step=1)
    assert set(many) <= train_texts
    assert scene_batch(16, seed=3, step=8)[0] != prompts
    position = {p.text for p in prompt_splits(0)[0] if p.skill == "position"}
    only, _ = scene_batch(64, seed=0, step=1, skill="position")
    assert set(only) <= position and len(set(only)) > 30
    plain, _ = scene_batch(256, seed=0, step=1)
    mixed, _ = scene_batch(256, seed=0, step=1, position_share=0.5)
    share = np.mean([text in position for text in mixed])
    assert 0.5 < share < 0.7  # 0.5 + 0.5 / 5 on average
    kept = [a == b for a, b in zip(plain, mixed)]
    assert 0.35 < np.mean(kept) < 0.65 and all(b in position for a, b, k in zip(plain, mixed, kept) if not k)


def test_lr_schedule_warms_up_then_decays_to_final_fraction():
    options = StageOptions(steps=100, batch_size=1, lr=1.0, warmup=10, final_lr_fraction=0.1)
    assert lr_factor(0, options) == pytest.approx(0.1)
    assert lr_factor(9, options) == pytest.approx(1.0)
    assert lr_factor(55, options) == pytest.approx(0.55)
    assert lr_factor(100, options) == pytest.approx(0.1)


def test_flow_time_is_shifted_towards_noise():
    t = sample_flow_time(20000, torch.Generator().manual_seed(0), shift=3.0)
    assert 0 < t.min() and t.max() < 1
    assert t.median() == pytest.approx(0.75, abs=0.02)  # shift 3 maps the logit-normal median 0.5 to 0.75


def test_summary_reports_per_skill_accuracy_with_standard_error():
    records = [{"skill": "single", "correct": 1.0, "score": 1.0, "num_detected": 1},
               {"skill": "single", "correct": 0.0, "score": 0.5, "num_detected": 0},
               {"skill": "counting", "correct": 0.0, "score": 0.0, "num_detected": 0}]
    result = summarize(records)
    assert result["per_skill"]["single"]["acc"] == 0.5
    assert result["per_skill"]["single"]["se"] == pytest.approx(np.sqrt(0.25 / 2))
    assert result["overall"]["acc"] == pytest.approx(1 / 3)
    assert result["overall"]["no_shape_frac"] == pytest.approx(2 / 3)
    assert proportion([1.0, 1.0])["se"] == 0.0


def test_heldout_prompts_are_fixed_and_cover_every_skill():
    prompts = heldout_prompts(300)
    assert prompts == heldout_prompts(300)
    heldout_texts = {p.text for p in prompt_splits(0)[1]}
    assert {text for text, _ in prompts} <= heldout_texts
    assert len({skill for _, skill in prompts}) == 5


def _sample_flux(directory: Path) -> torch.Tensor:
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(directory)
    pipe.set_progress_bar_config(disable=True)
    return pipe(["a red circle", "two blue squares"], height=64, width=64, num_inference_steps=2,
                max_sequence_length=T5_MAX_LENGTH, output_type="pt").images


def _sample_sd(directory: Path) -> torch.Tensor:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(directory)
    pipe.set_progress_bar_config(disable=True)
    return pipe(["a red circle left of a blue square"], num_inference_steps=2, output_type="pt").images


@pytest.mark.slow
def test_smoke_pretraining_writes_pipelines_that_stock_diffusers_load_and_sample(tmp_path):
    from fastvideo.shapes.pretrain.images import main

    out, work = tmp_path / "out", tmp_path / "work"
    threads = torch.get_num_threads()
    try:
        main(["--stage", "all", "--smoke", "--output_dir", str(out), "--work_dir", str(work), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert (work / "vae" / "stats.json").exists() and (work / "flux" / "step_000002").exists()
    stats = json.loads((work / "vae" / "stats.json").read_text())
    assert stats["flux_scaling_factor"] > 0 and stats["sd_scaling_factor"] > 0
    flux_images, sd_images = _sample_flux(out / "flux"), _sample_sd(out / "sd")
    assert flux_images.shape == (2, 3, 64, 64) and sd_images.shape == (1, 3, 64, 64)
    assert all(not list(p.rglob("*.bin")) for p in (out / "flux", out / "sd")), "safetensors only"
    sd_vae_config = json.loads((out / "sd" / "vae" / "config.json").read_text())
    assert sd_vae_config["scaling_factor"] == pytest.approx(stats["sd_scaling_factor"])
    flux_vae_config = json.loads((out / "flux" / "vae" / "config.json").read_text())
    assert flux_vae_config["shift_factor"] == pytest.approx(stats["flux_shift_factor"])
    # rerunning resumes from the saved state instead of training again
    try:
        main(["--stage", "flux", "--smoke", "--output_dir", str(out), "--work_dir", str(work), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in (work / "flux").glob("step_*")) == ["step_000002"]
    # continued with word order given to T5 and T5 kept fixed: the saved T5 is exactly the surgery's
    from transformers import T5EncoderModel

    try:
        main(["--stage", "flux", "--smoke", "--init_from", str(out / "flux"), "--output_dir", str(tmp_path / "more"),
              "--work_dir", str(tmp_path / "work_more"), "--threads", "1", "--t5_neighbour_heads", "5",
              "--t5_order_span", "context", "--t5_order_gain", "2", "--freeze_t5"])
    finally:
        torch.set_num_threads(threads)
    expected = T5EncoderModel.from_pretrained(out / "flux" / "text_encoder_2")
    set_neighbour_heads(expected, 5.0, span="context", gain=2.0)
    continued = T5EncoderModel.from_pretrained(tmp_path / "more" / "flux" / "text_encoder_2")
    assert all(torch.equal(value, continued.state_dict()[name]) for name, value in expected.state_dict().items())
    info = json.loads((tmp_path / "more" / "flux" / "pretrain.json").read_text())
    assert info["t5_neighbour_heads"] == 5.0 and info["freeze_t5"] is True
    assert info["t5_order_span"] == "context" and info["t5_order_gain"] == 2.0
    # taught the sides first (t5_sides.teach_sides), then frozen: the saved T5 moved away from the surgery's
    try:
        main(["--stage", "flux", "--smoke", "--init_from", str(out / "flux"), "--output_dir", str(tmp_path / "sides"),
              "--work_dir", str(tmp_path / "work_sides"), "--threads", "1", "--t5_neighbour_heads", "5",
              "--t5_order_span", "context", "--t5_order_gain", "2", "--t5_sides_steps", "3", "--freeze_t5"])
    finally:
        torch.set_num_threads(threads)
    taught = T5EncoderModel.from_pretrained(tmp_path / "sides" / "flux" / "text_encoder_2")
    assert not torch.equal(taught.shared.weight, continued.shared.weight)
    assert json.loads((tmp_path / "sides" / "flux" / "pretrain.json").read_text())["t5_sides_steps"] == 3


@pytest.mark.slow
@pytest.mark.skipif(not (ASSETS / "flux").exists(), reason="shipped shapes pipelines not built")
def test_shipped_pipelines_load_offline_with_stock_classes_and_sample_64px():
    total_bytes = sum(p.stat().st_size for p in ASSETS.rglob("*.safetensors"))
    assert total_bytes <= 30 * 2**20
    assert not list(ASSETS.rglob("*.bin")), "safetensors only"
    flux_images = _sample_flux(ASSETS / "flux")
    assert flux_images.shape == (2, 3, 64, 64) and torch.isfinite(flux_images).all()
    if (ASSETS / "sd").exists():
        sd_images = _sample_sd(ASSETS / "sd")
        assert sd_images.shape == (1, 3, 64, 64) and torch.isfinite(sd_images).all()


def test_caption_noise_swaps_one_attribute_for_a_train_prompt_and_keeps_the_images():
    from fastvideo.shapes.grammar import prompt_splits
    from fastvideo.shapes.pretrain.data import caption_neighbours, scene_batch

    train = {p.text for p in prompt_splits(0)[0]}
    clean_prompts, clean_images = scene_batch(64, 3, 7)
    noisy_prompts, noisy_images = scene_batch(64, 3, 7, caption_noise=0.5)
    assert torch.equal(clean_images, noisy_images)  # rendered from the true prompts either way
    changed = [(a, b) for a, b in zip(clean_prompts, noisy_prompts) if a != b]
    assert 16 <= len(changed) <= 48  # about half of 64
    for true, wrong in changed:
        assert wrong in train and wrong in caption_neighbours()[true]
        assert sum(x != y for x, y in zip(true.split(), wrong.split())) == 1 and len(true.split()) == len(wrong.split())
    assert scene_batch(64, 3, 7, caption_noise=0.0)[0] == clean_prompts


def test_init_from_loads_the_shipped_flux_weights(tmp_path):
    from fastvideo.shapes.pretrain.components import FULL
    from fastvideo.shapes.pretrain.images import tokenizers
    from fastvideo.shapes.pretrain.train_flux import FluxBundle, load_flux_bundle

    shipped = ASSETS / "flux"
    bundle = load_flux_bundle(FluxBundle(FULL, *tokenizers()), shipped)
    from diffusers import FluxTransformer2DModel

    reference = FluxTransformer2DModel.from_pretrained(shipped, subfolder="transformer").float()
    for name, value in reference.state_dict().items():
        assert torch.equal(bundle.transformer.state_dict()[name], value), name


def test_a_stage_keeps_the_tokenizers_it_started_with(tmp_path):
    from fastvideo.shapes.grammar import vocabulary
    from fastvideo.shapes.pretrain.common import stage_tokenizers
    from fastvideo.shapes.pretrain.components import build_clip_tokenizer

    first = stage_tokenizers(tmp_path / "flux", lambda: (build_clip_tokenizer(vocabulary()),))[0]
    # a resumed process may build another numbering (BpeTrainer breaks ties in hash order): use a
    # deliberately different vocabulary to stand for it
    other = stage_tokenizers(tmp_path / "flux", lambda: (build_clip_tokenizer(["zebra", "quartz"]),))[0]
    text = "a red circle left of a blue square"
    assert other(text).input_ids == first(text).input_ids
    shipped = stage_tokenizers(tmp_path / "cont", lambda: (build_clip_tokenizer(["zebra"]),), ASSETS / "flux")[0]
    from transformers import CLIPTokenizer

    assert shipped(text).input_ids == CLIPTokenizer.from_pretrained(ASSETS / "flux", subfolder="tokenizer")(text).input_ids
