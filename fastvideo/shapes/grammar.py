"""The caption grammar of the shapes world: palette, prompt space, parsing and train/held-out splits.

Every prompt names the *whole* scene: "a red circle" means exactly one red circle and nothing else.
Skills (GenEval analogues):

- ``single``         "a red circle"
- ``counting``       "three green triangles" (one..four of one colour+shape, nothing else)
- ``two_objects``    "a red circle and a red square": two objects differing in exactly one attribute
- ``color_binding``  "a red circle and a blue square": two objects differing in colour *and* shape
- ``position``       "a yellow square left of a purple circle" (left of / right of / above / below)

See ``fastvideo/shapes/README.md`` for the split rules and the verifier's thresholds.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "yellow": (240, 210, 20),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "purple": (150, 40, 175),
    "black": (30, 30, 30),
}
"""Shape colours (RGB 0-255). Pairwise distance >= 132 and >= 216 from the background."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND: tuple[int, int, int] = (235, 235, 235)
SKILLS: tuple[str, ...] = ("single", "counting", "two_objects", "color_binding", "position")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
NUMBER_WORDS: tuple[str, ...] = ("one", "two", "three", "four")
PLURALS: dict[str, str] = {shape: shape + "s" for shape in SHAPES}
MAX_COUNT = len(NUMBER_WORDS)

NUM_HELDOUT_PAIRINGS = 2
"""Colour-shape pairings that appear only in single-object prompts in training (see prompt_splits)."""
NUM_HELDOUT_OBJECT_PAIRS = 6
"""Further random unordered object pairs whose multi-object prompts are all held out."""


@dataclass(frozen=True)
class Prompt:
    """A caption and the skill it exercises."""

    text: str
    skill: str


@dataclass(frozen=True)
class Claim:
    """One required object group: exactly ``count`` shapes of ``shape`` in ``color``.

    For position prompts the first claim carries ``relation`` (e.g. "left of") with respect to the
    object ``relative_to`` = (color, shape) of the second claim.
    """

    color: str
    shape: str
    count: int = 1
    relation: str | None = None
    relative_to: tuple[str, str] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.color, self.shape)


def _article(color: str) -> str:
    return "an" if color[0] in "aeiou" else "a"


def _object_phrase(color: str, shape: str) -> str:
    return f"{_article(color)} {color} {shape}"


def _count_phrase(count: int, color: str, shape: str) -> str:
    noun = shape if count == 1 else PLURALS[shape]
    return f"{NUMBER_WORDS[count - 1]} {color} {noun}"


def _objects() -> list[tuple[str, str]]:
    return [(color, shape) for color in COLORS for shape in SHAPES]


def _pair_skill(first: tuple[str, str], second: tuple[str, str]) -> str:
    """two_objects when the objects differ in one attribute, color_binding when they differ in both."""
    differs_in_both = first[0] != second[0] and first[1] != second[1]
    return "color_binding" if differs_in_both else "two_objects"


def _enumerate_prompts() -> list[tuple[Prompt, frozenset]]:
    """Every prompt with its composition key (the unordered set of (colour, shape) objects it names)."""
    entries: list[tuple[Prompt, frozenset]] = []
    objects = _objects()
    for obj in objects:
        entries.append((Prompt(_object_phrase(*obj), "single"), frozenset([obj])))
    for obj in objects:
        for count in range(1, MAX_COUNT + 1):
            entries.append((Prompt(_count_phrase(count, *obj), "counting"), frozenset([obj])))
    for first, second in itertools.permutations(objects, 2):
        text = f"{_object_phrase(*first)} and {_object_phrase(*second)}"
        entries.append((Prompt(text, _pair_skill(first, second)), frozenset([first, second])))
    for first, second in itertools.permutations(objects, 2):
        for relation in RELATIONS:
            text = f"{_object_phrase(*first)} {relation} {_object_phrase(*second)}"
            entries.append((Prompt(text, "position"), frozenset([first, second])))
    return entries


@functools.lru_cache(maxsize=1)
def _all_prompts_cached() -> tuple[Prompt, ...]:
    return tuple(prompt for prompt, _ in _enumerate_prompts())


def all_prompts() -> list[Prompt]:
    """The full prompt space in a fixed order: single, counting, the two-object prompts ("and";
    two_objects and color_binding interleaved), position."""
    return list(_all_prompts_cached())


def heldout_compositions(seed: int = 0) -> tuple[set[tuple[str, str]], set[frozenset]]:
    """The held-out colour-shape pairings and the extra held-out unordered object pairs for ``seed``.

    Pairings are drawn with distinct colours and distinct shapes; object pairs are drawn among pairs
    that do not contain a held-out pairing.
    """
    rng = np.random.default_rng(seed)
    colors = list(COLORS)
    shape_order = rng.permutation(len(SHAPES))[:NUM_HELDOUT_PAIRINGS]
    color_order = rng.permutation(len(colors))[:NUM_HELDOUT_PAIRINGS]
    pairings = {(colors[c], SHAPES[s]) for c, s in zip(color_order, shape_order)}
    remaining = [obj for obj in _objects() if obj not in pairings]
    candidate_pairs = [frozenset(pair) for pair in itertools.combinations(remaining, 2)]
    chosen = rng.choice(len(candidate_pairs), size=NUM_HELDOUT_OBJECT_PAIRS, replace=False)
    return pairings, {candidate_pairs[i] for i in sorted(chosen)}


@functools.lru_cache(maxsize=8)
def _splits_cached(seed: int) -> tuple[tuple[Prompt, ...], tuple[Prompt, ...]]:
    pairings, held_pairs = heldout_compositions(seed)
    train: list[Prompt] = []
    heldout: list[Prompt] = []
    for prompt, objects in _enumerate_prompts():
        if prompt.skill == "single":
            train.append(prompt)
            heldout.append(prompt)
        elif objects & pairings or objects in held_pairs:
            heldout.append(prompt)
        else:
            train.append(prompt)
    return tuple(train), tuple(heldout)


def prompt_splits(seed: int = 0) -> tuple[list[Prompt], list[Prompt]]:
    """Deterministic (train, heldout) split of ``all_prompts()``.

    Held out: every counting and multi-object prompt that names a held-out colour-shape pairing, and
    every multi-object prompt over a held-out unordered object pair (both orders, all relations,
    "and"). Single-object prompts appear in both splits (the only shared texts), so the held-out
    split measures every skill while its compositions never occur in training.
    """
    train, heldout = _splits_cached(seed)
    return list(train), list(heldout)


def vocabulary() -> list[str]:
    """Every word that can appear in a prompt, sorted."""
    words = {word for prompt in _all_prompts_cached() for word in prompt.text.split()}
    return sorted(words)


@functools.lru_cache(maxsize=16)
def _prompts_by_skill(split: str, split_seed: int) -> dict[str, tuple[Prompt, ...]]:
    if split == "all":
        pool = _all_prompts_cached()
    elif split in ("train", "heldout"):
        pool = _splits_cached(split_seed)[0 if split == "train" else 1]
    else:
        raise ValueError(f"unknown split {split!r}; expected 'train', 'heldout' or 'all'")
    return {name: tuple(p for p in pool if p.skill == name) for name in SKILLS}


def sample_prompts(
    n: int, rng: np.random.Generator, split: str = "train", skill: str | None = None, seed: int = 0
) -> list[Prompt]:
    """Draw ``n`` prompts with replacement from ``split`` ("train", "heldout" or "all").

    With ``skill=None`` the skill is drawn uniformly first (position prompts would otherwise be 75% of
    the draws), then a prompt uniformly within that skill. ``seed`` selects the split (as in prompt_splits).
    """
    by_skill = _prompts_by_skill(split, seed)
    if skill is not None and skill not in SKILLS:
        raise ValueError(f"unknown skill {skill!r}; expected one of {SKILLS}")
    skills = [skill] if skill is not None else [name for name in SKILLS if by_skill[name]]
    picks = rng.integers(0, len(skills), size=n)
    out = []
    for pick in picks:
        group = by_skill[skills[pick]]
        out.append(group[int(rng.integers(0, len(group)))])
    return out


def _parse_object(words: list[str], text: str) -> tuple[str, str]:
    """Parse "a red circle" (article agreeing with the colour) into (colour, shape)."""
    if len(words) != 3:
        raise ValueError(f"not a prompt of the shapes grammar: {text!r}")
    article, color, shape = words
    if color not in COLORS or shape not in SHAPES or article != _article(color):
        raise ValueError(f"not a prompt of the shapes grammar: {text!r}")
    return color, shape


def _parse_count(words: list[str], text: str) -> Claim:
    """Parse "three green triangles" / "one red circle"."""
    if len(words) != 3 or words[0] not in NUMBER_WORDS or words[1] not in COLORS:
        raise ValueError(f"not a prompt of the shapes grammar: {text!r}")
    count = NUMBER_WORDS.index(words[0]) + 1
    nouns = {(PLURALS[s] if count > 1 else s): s for s in SHAPES}
    if words[2] not in nouns:
        raise ValueError(f"not a prompt of the shapes grammar: {text!r}")
    return Claim(words[1], nouns[words[2]], count)


def _split_two_objects(words: list[str], text: str) -> tuple[list[str], str | None, list[str]]:
    """Split a 6-7+ word prompt into (first object, connective, second object)."""
    first, rest = words[:3], words[3:]
    for connective in ("and", *RELATIONS):
        n = len(connective.split())
        if rest[:n] == connective.split():
            return first, connective, rest[n:]
    raise ValueError(f"not a prompt of the shapes grammar: {text!r}")


@functools.lru_cache(maxsize=4096)
def _parse_cached(normalized: str) -> tuple[Claim, ...]:
    words = normalized.split()
    if len(words) == 3 and words[0] in NUMBER_WORDS:
        return (_parse_count(words, normalized),)
    if len(words) == 3:
        return (Claim(*_parse_object(words, normalized)),)
    if len(words) < 7:
        raise ValueError(f"not a prompt of the shapes grammar: {normalized!r}")
    first_words, connective, second_words = _split_two_objects(words, normalized)
    first = _parse_object(first_words, normalized)
    second = _parse_object(second_words, normalized)
    if first == second:
        raise ValueError(f"the two objects of a prompt must differ: {normalized!r}")
    if connective == "and":
        return (Claim(*first), Claim(*second))
    return (Claim(*first, relation=connective, relative_to=second), Claim(*second))


def normalize_prompt(text: str) -> str:
    """Lower-case, collapse whitespace and drop one trailing period."""
    normalized = " ".join(text.lower().split())
    return normalized[:-1].rstrip() if normalized.endswith(".") else normalized


def parse_prompt(text: str) -> list[Claim]:
    """Structured spec of a prompt: one Claim per required object group (position: relation on the first).

    Raises ValueError on text outside the grammar (case, extra spaces and a final period are tolerated).
    """
    return list(_parse_cached(normalize_prompt(text)))


def skill_of(text: str) -> str:
    """The skill a (grammatical) prompt exercises."""
    claims = parse_prompt(text)
    if len(claims) == 1:
        return "counting" if normalize_prompt(text).split()[0] in NUMBER_WORDS else "single"
    if claims[0].relation is not None:
        return "position"
    return _pair_skill(claims[0].key, claims[1].key)
