"""Caption grammar of the moving-shapes video world: prompt space, parsing and train/held-out splits.

The video world extends the image world (same palette ``COLORS``, shapes ``SHAPES`` and background)
to short clips in which one or two flat shapes move in a straight line. A prompt names the *whole*
video: every object it mentions, with its motion, and nothing else.

Skills:

- ``single``       "a red circle moving right" / "a red circle staying still"
- ``two_objects``  "a blue square moving up while a green triangle stays",
                   "a blue square staying still while a green triangle moves left"

The first object takes the participle ("moving <d>" / "staying still"), the object after "while"
the finite verb ("moves <d>" / "stays"). Directions are ``left``, ``right``, ``up``, ``down`` (image
axes: up = towards row 0) or ``stays``. The two objects of a prompt differ in colour or shape (so
each can be told apart by colour + shape), and at least one of them moves.

Prompt space: 18 objects x 5 directions = 90 single prompts and 18 * 17 * (25 - 1) = 7344
two-object prompts (both staying is excluded), 7434 in all.

Splits (``motion_prompt_splits(seed)``, disjoint and deterministic):

- ``NUM_HELDOUT_TRIPLES`` (colour, shape, direction) *compositions*, one per object: every colour-shape
  object has one moving direction it is never seen taking in training (drawn from ``seed``, so that each
  colour's three shapes hold out three different directions). Every prompt that contains one (single or
  either object of a pair) is held out. Each of their parts (the object with its other directions and
  staying still, colour + direction, shape + direction) still occurs in training.
- ``NUM_HELDOUT_OBJECT_PAIRS`` further unordered object pairs: every two-object prompt over such a
  pair (both orders, all direction combinations) is held out, so the pair never co-occurs in training.

Everything else is train. See ``fastvideo/shapes/README.md`` ("Moving shapes") for the renderer and
the verifier.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from fastvideo.shapes.grammar import COLORS, SHAPES, Prompt, normalize_prompt

STAY = "stays"
MOVES: tuple[str, ...] = ("left", "right", "up", "down")
DIRECTIONS: tuple[str, ...] = (*MOVES, STAY)
DIRECTION_VECTORS: dict[str, tuple[int, int]] = {
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), STAY: (0, 0),
}
"""Unit displacement (dx, dy) in image coordinates (y grows downwards)."""
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "up": "down", "down": "up"}
MOTION_SKILLS: tuple[str, ...] = ("single", "two_objects")
CONNECTIVE = "while"

NUM_HELDOUT_TRIPLES = 18
"""(colour, shape, direction) compositions absent from training: one per colour-shape object. Until
2026-12-07 it was 6 (one per colour), which left the evaluation's single-object half on 6 prompts."""
NUM_HELDOUT_OBJECT_PAIRS = 6
"""Unordered (colour, shape) object pairs whose two-object prompts are all held out."""


@dataclass(frozen=True)
class MotionClaim:
    """One object of a video prompt: exactly one ``color`` ``shape`` whose motion is ``direction``."""

    color: str
    shape: str
    direction: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.color, self.shape)

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.color, self.shape, self.direction)


def _article(color: str) -> str:
    return "an" if color[0] in "aeiou" else "a"


def lead_phrase(claim: MotionClaim) -> str:
    """The first object: "a red circle moving right" / "a red circle staying still"."""
    motion = "staying still" if claim.direction == STAY else f"moving {claim.direction}"
    return f"{_article(claim.color)} {claim.color} {claim.shape} {motion}"


def while_phrase(claim: MotionClaim) -> str:
    """The object after "while": "a red circle moves right" / "a red circle stays"."""
    motion = STAY if claim.direction == STAY else f"moves {claim.direction}"
    return f"{_article(claim.color)} {claim.color} {claim.shape} {motion}"


def motion_prompt_text(claims: list[MotionClaim] | tuple[MotionClaim, ...]) -> str:
    """The caption of one or two claims (inverse of ``parse_motion_prompt``)."""
    _check_claims(list(claims), repr(claims))
    if len(claims) == 1:
        return lead_phrase(claims[0])
    return f"{lead_phrase(claims[0])} {CONNECTIVE} {while_phrase(claims[1])}"


def _objects() -> list[tuple[str, str]]:
    return [(color, shape) for color in COLORS for shape in SHAPES]


def _enumerate() -> list[tuple[Prompt, tuple[MotionClaim, ...]]]:
    """Every prompt with its claims, in a fixed order: singles, then ordered pairs."""
    entries = []
    for color, shape in _objects():
        for direction in DIRECTIONS:
            claim = MotionClaim(color, shape, direction)
            entries.append((Prompt(lead_phrase(claim), "single"), (claim,)))
    for first, second in itertools.permutations(_objects(), 2):
        for d1, d2 in itertools.product(DIRECTIONS, repeat=2):
            if d1 == STAY and d2 == STAY:
                continue
            claims = (MotionClaim(*first, d1), MotionClaim(*second, d2))
            entries.append((Prompt(motion_prompt_text(claims), "two_objects"), claims))
    return entries


@functools.lru_cache(maxsize=1)
def _enumerated() -> tuple[tuple[Prompt, tuple[MotionClaim, ...]], ...]:
    return tuple(_enumerate())


def all_motion_prompts() -> list[Prompt]:
    """The full video prompt space (7434 prompts) in a fixed order."""
    return [prompt for prompt, _ in _enumerated()]


def heldout_motion_compositions(seed: int = 0) -> tuple[set[tuple[str, str, str]], set[frozenset]]:
    """The held-out (colour, shape, direction) triples and unordered object pairs for ``seed``.

    With ``m = perm(MOVES)`` and ``o = perm(0, 1, 2)`` drawn from ``seed``, object (colour i, shape j) holds out
    direction ``m[(i + o[j]) mod 4]``: each colour's three shapes hold out three different directions and
    each shape holds out every direction with one or two of the six colours, so colour + direction and
    shape + direction both still occur in training. Object pairs: ``NUM_HELDOUT_OBJECT_PAIRS`` of the
    153 unordered pairs.
    """
    rng = np.random.default_rng([seed, 17])
    moves = rng.permutation(len(MOVES))
    offsets = rng.permutation(len(SHAPES))
    triples = {(color, shape, MOVES[moves[(i + offsets[j]) % len(MOVES)]])
               for i, color in enumerate(COLORS) for j, shape in enumerate(SHAPES)}
    pairs = [frozenset(pair) for pair in itertools.combinations(_objects(), 2)]
    chosen = rng.choice(len(pairs), size=NUM_HELDOUT_OBJECT_PAIRS, replace=False)
    return triples, {pairs[i] for i in sorted(chosen)}


@functools.lru_cache(maxsize=8)
def _splits_cached(seed: int) -> tuple[tuple[Prompt, ...], tuple[Prompt, ...]]:
    triples, pairs = heldout_motion_compositions(seed)
    train: list[Prompt] = []
    heldout: list[Prompt] = []
    for prompt, claims in _enumerated():
        has_triple = any(claim.triple in triples for claim in claims)
        has_pair = len(claims) == 2 and frozenset(claim.key for claim in claims) in pairs
        (heldout if has_triple or has_pair else train).append(prompt)
    return tuple(train), tuple(heldout)


def motion_prompt_splits(seed: int = 0) -> tuple[list[Prompt], list[Prompt]]:
    """Deterministic, disjoint (train, heldout) split of ``all_motion_prompts()`` (module docstring).

    Seed 0: train 4482 (single 72, two_objects 4410), held-out 2952 (single 18, two_objects 2934).
    """
    train, heldout = _splits_cached(seed)
    return list(train), list(heldout)


@functools.lru_cache(maxsize=16)
def _by_skill(split: str, seed: int) -> dict[str, tuple[Prompt, ...]]:
    if split == "all":
        pool = tuple(all_motion_prompts())
    elif split in ("train", "heldout"):
        pool = _splits_cached(seed)[0 if split == "train" else 1]
    else:
        raise ValueError(f"unknown split {split!r}; expected 'train', 'heldout' or 'all'")
    return {skill: tuple(p for p in pool if p.skill == skill) for skill in MOTION_SKILLS}


def sample_motion_prompts(
    n: int, rng: np.random.Generator, split: str = "train", skill: str | None = None, seed: int = 0
) -> list[Prompt]:
    """Draw ``n`` prompts with replacement: a skill uniformly (unless given), then a prompt uniformly."""
    by_skill = _by_skill(split, seed)
    if skill is not None and skill not in MOTION_SKILLS:
        raise ValueError(f"unknown skill {skill!r}; expected one of {MOTION_SKILLS}")
    skills = [skill] if skill is not None else [name for name in MOTION_SKILLS if by_skill[name]]
    out = []
    for pick in rng.integers(0, len(skills), size=n):
        group = by_skill[skills[pick]]
        out.append(group[int(rng.integers(0, len(group)))])
    return out


def motion_vocabulary() -> list[str]:
    """Every word that can appear in a video prompt, sorted (20 words)."""
    return sorted({word for prompt in all_motion_prompts() for word in prompt.text.split()})


def _parse_object(words: list[str], text: str) -> tuple[str, str]:
    if len(words) != 3:
        raise ValueError(f"not a prompt of the motion grammar: {text!r}")
    article, color, shape = words
    if color not in COLORS or shape not in SHAPES or article != _article(color):
        raise ValueError(f"not a prompt of the motion grammar: {text!r}")
    return color, shape


def _parse_clause(words: list[str], lead: bool, text: str) -> MotionClaim:
    """``lead``: "<obj> moving <d>" | "<obj> staying still"; else "<obj> moves <d>" | "<obj> stays"."""
    color, shape = _parse_object(words[:3], text)
    motion = words[3:]
    if lead and motion == ["staying", "still"] or not lead and motion == [STAY]:
        return MotionClaim(color, shape, STAY)
    verb = "moving" if lead else "moves"
    if len(motion) == 2 and motion[0] == verb and motion[1] in MOVES:
        return MotionClaim(color, shape, motion[1])
    raise ValueError(f"not a prompt of the motion grammar: {text!r}")


def _check_claims(claims: list[MotionClaim], text: str) -> None:
    if not 1 <= len(claims) <= 2 or any(c.direction not in DIRECTIONS for c in claims):
        raise ValueError(f"a video prompt has one or two objects with directions in {DIRECTIONS}: {text}")
    if len(claims) == 2 and claims[0].key == claims[1].key:
        raise ValueError(f"the two objects of a video prompt must differ in colour or shape: {text}")
    if len(claims) == 2 and claims[0].direction == claims[1].direction == STAY:
        raise ValueError(f"at least one object of a two-object video prompt must move: {text}")


@functools.lru_cache(maxsize=8192)
def _parse_cached(normalized: str) -> tuple[MotionClaim, ...]:
    words = normalized.split()
    if CONNECTIVE in words:
        cut = words.index(CONNECTIVE)
        claims = [_parse_clause(words[:cut], True, normalized), _parse_clause(words[cut + 1:], False, normalized)]
    else:
        claims = [_parse_clause(words, True, normalized)]
    _check_claims(claims, repr(normalized))
    return tuple(claims)


def parse_motion_prompt(text: str) -> list[MotionClaim]:
    """One MotionClaim per object (prompt order); ValueError outside the grammar.

    Case, extra spaces and one final period are tolerated (``grammar.normalize_prompt``).
    """
    return list(_parse_cached(normalize_prompt(text)))


def motion_skill_of(text: str) -> str:
    """``single`` or ``two_objects``."""
    return MOTION_SKILLS[len(parse_motion_prompt(text)) - 1]


__all__ = [
    "CONNECTIVE", "DIRECTIONS", "DIRECTION_VECTORS", "MOTION_SKILLS", "MOVES", "OPPOSITE", "STAY",
    "MotionClaim", "all_motion_prompts", "heldout_motion_compositions", "motion_prompt_splits",
    "motion_prompt_text", "motion_skill_of", "motion_vocabulary", "parse_motion_prompt",
    "sample_motion_prompts",
]
