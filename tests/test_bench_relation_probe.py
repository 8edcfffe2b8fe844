"""The relation probe tells a model that reads position relations from one that is blind to them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fastvideo.shapes.render import render_prompt
from tests.bench_loader import load_benchmark

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "shapes"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_relation_probe")


def test_variants_exchange_places_or_relation_and_the_converse_says_the_same(bench):
    assert bench.variants("a red circle left of a blue square") == {
        "original": "a red circle left of a blue square", "converse": "a blue square right of a red circle",
        "swapped": "a blue square left of a red circle", "flipped": "a red circle right of a blue square"}
    assert bench.variants("a green triangle below a black circle")["converse"] == "a black circle above a green triangle"
    with pytest.raises(ValueError, match="not a position prompt"):
        bench.split_position("two red circles")


class RenderingPipe:
    """A stand-in pipeline that renders ground truth for each prompt, or (``blind``) for the prompt with
    its relation replaced by "left of" and its objects in sorted order, as a model that ignores both."""

    def __init__(self, blind: bool, bench):
        self.blind, self.bench = blind, bench

    def __call__(self, prompts, num_inference_steps, generator, output_type, **kwargs):
        images = []
        for text, gen in zip(prompts, generator):
            if self.blind:
                first, _, second = self.bench.split_position(text)
                text = " left of ".join(sorted([first, second]))
            rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen)))
            images.append(torch.from_numpy(render_prompt(text, rng)).permute(2, 0, 1).float() / 255)
        return SimpleNamespace(images=torch.stack(images))


def test_probe_separates_a_relation_reader_from_a_blind_model(bench):
    texts = ["a red circle left of a blue square", "a green triangle above a yellow circle",
             "a purple square right of a black triangle", "a blue circle below a red triangle"] * 3
    reader = bench.probe(RenderingPipe(False, bench), texts, 1, {}, seed=5, batch_size=5)
    assert reader["acc"]["original"] > 0.9 and reader["acc"]["converse"] > 0.9
    assert reader["acc"]["swapped"] < 0.1 and reader["acc"]["flipped"] < 0.1
    assert reader["original_minus_flipped"]["diff"] > 0.8 and reader["converse_minus_swapped"]["diff"] > 0.8
    blind = bench.probe(RenderingPipe(True, bench), texts, 1, {}, seed=5, batch_size=5)
    assert len({blind["acc"][v] for v in bench.VARIANTS}) == 1  # the same image whatever the words
    assert blind["original_minus_flipped"]["diff"] == 0 and blind["pixel_diff"]["swapped"] == 0
    assert reader["pixel_diff"]["swapped"] > 0


@pytest.mark.skipif(not (ASSETS / "flux").exists(), reason="shipped shapes pipelines not built")
def test_loss_gap_is_large_for_the_shipped_relation_reader_and_zero_for_a_blind_conditioning(bench):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(ASSETS / "flux", dtype=torch.float32)
    texts = ["a red circle left of a blue square", "a green triangle above a yellow circle",
             "a purple square right of a black triangle", "a blue circle below a red triangle"]
    kwargs = {"height": 64, "guidance_scale": 3.5, "max_sequence_length": 16}
    gaps = bench.loss_gap(pipe, texts, kwargs, seed=3, reps=4, times=(0.8,))
    assert set(gaps) == {"0.8"} and set(gaps["0.8"]) == {"swapped", "flipped"}
    for gap in gaps["0.8"].values():  # v7 reads relations (docs/shapes_learning_log.md rows 101-102)
        assert gap["diff"] > max(3 * gap["se"], 0.05)  # 0.23 +- 0.05 here; blind v6 had |gap| < 0.002
    assert bench.loss_gap(pipe, texts, kwargs, seed=3, reps=4, times=(0.8,)) == gaps  # seeded

    encode = pipe.encode_prompt

    def blind_encode(prompts, **kw):  # every variant of "A rel B" as one canonical prompt: no relation to read
        canonical = [" left of ".join(sorted(bench.split_position(p)[::2])) for p in prompts]
        return encode(canonical, **kw)

    pipe.encode_prompt = blind_encode
    blind = bench.loss_gap(pipe, texts, kwargs, seed=3, reps=4, times=(0.8,))
    assert all(gap == {"diff": 0.0, "se": 0.0} for gap in blind["0.8"].values())
    row = {"model": "m", "n": 4, "acc": dict.fromkeys(bench.VARIANTS, 0.5),
           "original_minus_flipped": {"diff": 0.0, "se": 0.0}, "converse_minus_swapped": {"diff": 0.0, "se": 0.0},
           "pixel_diff": dict.fromkeys(bench.VARIANTS[1:], 0.0), "loss_gap": gaps}
    assert "loss gap x 1e3" in bench.format_rows([row]) and "t=0.8" in bench.format_rows([row])
