"""Teach the shapes T5 where each object of a position prompt goes: an auxiliary per-token objective.

A real FLUX reads "left of" through T5-XXL, which arrives pretrained on language. The shapes T5 is trained
from scratch on captions alone, and even with word-order heads (``components.set_neighbour_heads``) the
transformer has to work out, from "subject or object" and "which relation", on which side each object
belongs before it can learn to place it there: continued pretraining did not get that far (docs/
shapes_learning_log.md, rows 93-99). This gives T5 that bit of language understanding beforehand. Each
token of a prompt is labelled with ``token_sides``: the first object's words of "A rel B" get rel's side
(left of -> left, above -> up, ...), the second object's words the opposite side, every other token
``none``. T5 is trained on

    loss = CE(W_unit h + b, side) + anchor * ||h - h_0||^2 / ||h_0||^2

where h are T5's output states, h_0 those of the T5 it started from (kept fixed) and W_unit a linear head
with unit-norm rows (discarded afterwards). Unit rows make the side a direction of a few units in the
states themselves (state norm ~12) rather than a tiny one scaled up by the head; the anchor keeps the rest
of each state where the transformer expects it. The labels use train prompts only; accuracy is reported
on the held-out position prompts, whose object pairs T5 never saw.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
import torch.nn.functional as F
from transformers import T5EncoderModel, T5Tokenizer

from fastvideo.shapes.grammar import RELATIONS, prompt_splits, sample_prompts
from fastvideo.shapes.pretrain.components import T5_MAX_LENGTH
from fastvideo.shapes.pretrain.text import t5_ids

logger = logging.getLogger("fastvideo.shapes.pretrain")

SIDES: tuple[str, ...] = ("none", "left", "right", "up", "down")
RELATION_SIDE = {"left of": 1, "right of": 2, "above": 3, "below": 4}
OPPOSITE_SIDE = {1: 2, 2: 1, 3: 4, 4: 3}


def token_sides(text: str) -> list[int]:
    """Index into ``SIDES`` for each of the ``T5_MAX_LENGTH`` tokens of ``text`` (one token per word).

    >>> [SIDES[i] for i in token_sides("a red circle left of a blue square")[:9]]
    ['left', 'left', 'left', 'none', 'none', 'right', 'right', 'right', 'none']
    """
    labels = [0] * T5_MAX_LENGTH
    for relation in RELATIONS:
        first, sep, second = text.partition(f" {relation} ")
        if sep:
            side, start = RELATION_SIDE[relation], len(first.split()) + len(relation.split())
            labels[:len(first.split())] = [side] * len(first.split())
            labels[start:start + len(second.split())] = [OPPOSITE_SIDE[side]] * len(second.split())
            break
    return labels


def _unit_logits(head: torch.nn.Linear, states: torch.Tensor) -> torch.Tensor:
    return F.linear(states, F.normalize(head.weight, dim=1), head.bias)


def side_accuracy(t5: T5EncoderModel, tokenizer: T5Tokenizer, head: torch.nn.Linear, texts: list[str]) -> float:
    """Fraction of object-word tokens of ``texts`` whose side the head reads from T5's states."""
    labels = torch.tensor([token_sides(text) for text in texts])
    with torch.no_grad():
        predicted = _unit_logits(head, t5(t5_ids(tokenizer, texts))[0]).argmax(-1)
    mask = labels > 0
    return float((predicted[mask] == labels[mask]).float().mean())


def teach_sides(t5: T5EncoderModel, tokenizer: T5Tokenizer, steps: int, anchor: float = 1.0, lr: float = 1e-3,
                batch_size: int = 256, seed: int = 0, split_seed: int = 0) -> dict:
    """Train ``t5`` in place on the side objective (half of each batch position prompts); returns facts:
    the final losses and the held-out side accuracy."""
    reference = copy.deepcopy(t5).eval().requires_grad_(False)
    head = torch.nn.Linear(t5.config.d_model, len(SIDES))
    optimizer = torch.optim.Adam([*t5.parameters(), *head.parameters()], lr=lr)
    rng = np.random.default_rng(seed)
    t5.train()
    for step in range(steps):
        texts = [p.text for p in sample_prompts(batch_size // 2, rng, split="train", seed=split_seed)]
        texts += [p.text for p in sample_prompts(batch_size - len(texts), rng, split="train", skill="position",
                                                 seed=split_seed)]
        ids = t5_ids(tokenizer, texts)
        states = t5(ids)[0]
        with torch.no_grad():
            before = reference(ids)[0]
        side_loss = F.cross_entropy(_unit_logits(head, states).flatten(0, 1),
                                    torch.tensor([token_sides(text) for text in texts]).flatten())
        drift = (states - before).square().mean() / before.square().mean()
        optimizer.zero_grad()
        (side_loss + anchor * drift).backward()
        optimizer.step()
        if (step + 1) % 250 == 0 or step + 1 == steps:
            logger.info("t5 sides step %d: side loss %.4f, relative drift %.4f", step + 1, side_loss.item(), drift.item())
    t5.eval()
    heldout = [p.text for p in prompt_splits(split_seed)[1] if p.skill == "position"]
    return {"steps": steps, "side_loss": side_loss.item(), "relative_drift": drift.item(),
            "heldout_side_accuracy": side_accuracy(t5, tokenizer, head, heldout)}
