"""The auxiliary side objective for the shapes T5 (fastvideo/shapes/pretrain/t5_sides.py)."""

from __future__ import annotations

import torch

from fastvideo.shapes.grammar import prompt_splits, vocabulary
from fastvideo.shapes.pretrain.components import (
    SMOKE,
    build_t5_encoder,
    build_t5_tokenizer,
    set_neighbour_heads,
)
from fastvideo.shapes.pretrain.t5_sides import SIDES, side_accuracy, teach_sides, token_sides


def _names(text: str) -> list[str]:
    return [SIDES[i] for i in token_sides(text)]


def test_token_sides_label_each_object_of_a_relation_with_its_side_and_nothing_else():
    assert _names("a red circle left of a blue square")[:9] == ["left"] * 3 + ["none"] * 2 + ["right"] * 3 + ["none"]
    assert _names("a red circle right of a blue square")[:8] == ["right"] * 3 + ["none"] * 2 + ["left"] * 3
    assert _names("an orange square above a red circle")[:7] == ["up"] * 3 + ["none"] + ["down"] * 3
    assert _names("a blue square below a red circle")[:7] == ["down"] * 3 + ["none"] + ["up"] * 3
    for text in ("two red circles", "a red circle and a blue square", "a red circle"):
        assert set(_names(text)) == {"none"}


def test_teaching_makes_the_side_readable_on_heldout_pairs_and_keeps_states_close():
    tokenizer = build_t5_tokenizer(vocabulary())
    torch.manual_seed(0)
    t5 = build_t5_encoder(SMOKE, tokenizer).eval()
    set_neighbour_heads(t5, 10.0, span="context")
    heldout = [p.text for p in prompt_splits(0)[1] if p.skill == "position"]
    untaught = side_accuracy(t5, tokenizer, torch.nn.Linear(t5.config.d_model, len(SIDES)), heldout)
    facts = teach_sides(t5, tokenizer, steps=150, batch_size=64, lr=3e-3)
    assert facts["heldout_side_accuracy"] > 0.9 > untaught + 0.3
    assert facts["relative_drift"] < 0.5
