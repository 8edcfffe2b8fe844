"""Grammar, splits and renderer of the shapes world (fastvideo/shapes)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from fastvideo.shapes import grammar
from fastvideo.shapes.grammar import (
    BACKGROUND,
    COLORS,
    SHAPES,
    SKILLS,
    Claim,
    Prompt,
    all_prompts,
    parse_prompt,
    prompt_splits,
    sample_prompts,
    skill_of,
    vocabulary,
)
from fastvideo.shapes.render import (
    GAP_FRAC,
    MAX_SIZE_FRAC,
    MIN_SIZE_FRAC,
    Shape,
    relation_holds,
    render_prompt,
    render_scene,
    sample_scene,
)


def _objects_of(text: str) -> frozenset:
    return frozenset(claim.key for claim in parse_prompt(text))


def test_palette_is_well_separated_from_itself_and_the_background():
    rgb = {name: np.array(value, float) for name, value in COLORS.items()}
    for first, second in itertools.combinations(rgb, 2):
        assert np.linalg.norm(rgb[first] - rgb[second]) >= 120, (first, second)
    for name, value in rgb.items():
        assert np.linalg.norm(value - np.array(BACKGROUND, float)) >= 200, name
    assert len(COLORS) >= 5 and set(SHAPES) == {"circle", "square", "triangle"}


def test_prompt_space_is_unique_parseable_and_labelled_with_its_skill():
    prompts = all_prompts()
    texts = [p.text for p in prompts]
    assert len(texts) == len(set(texts)) == 1620
    counts = Counter(p.skill for p in prompts)
    assert counts == {
        "single": 18,
        "counting": 72,
        "two_objects": 126,
        "color_binding": 180,
        "position": 1224,
    }
    for prompt in prompts:
        assert skill_of(prompt.text) == prompt.skill
        claims = parse_prompt(prompt.text)
        if prompt.skill in ("two_objects", "color_binding"):
            first, second = claims[0].key, claims[1].key
            differing = (first[0] != second[0]) + (first[1] != second[1])
            assert differing == (2 if prompt.skill == "color_binding" else 1)
    assert all_prompts() == prompts  # deterministic order


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red circle", [Claim("red", "circle", 1)]),
        ("three green triangles", [Claim("green", "triangle", 3)]),
        ("one blue square", [Claim("blue", "square", 1)]),
        ("a red circle and a blue square", [Claim("red", "circle"), Claim("blue", "square")]),
        (
            "a yellow square left of a purple circle",
            [Claim("yellow", "square", 1, "left of", ("purple", "circle")), Claim("purple", "circle")],
        ),
        (
            "a black triangle below a black circle",
            [Claim("black", "triangle", 1, "below", ("black", "circle")), Claim("black", "circle")],
        ),
        ("  A Red Circle. ", [Claim("red", "circle", 1)]),
    ],
)
def test_parse_prompt_returns_the_structured_spec(text, expected):
    assert parse_prompt(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "red circle",
        "a pink circle",
        "a red hexagon",
        "an red circle",
        "two red circle",
        "one red circles",
        "five red circles",
        "a red circles",
        "a red circle and a red circle",
        "a red circle left of a red circle",
        "a red circle near a blue square",
        "a red circle and",
        "a red circle left a blue square",
        "a red circle and two blue squares",
        "three red circles and a blue square",
        "a red circle and a blue square and a green triangle",
        "the red circle",
    ],
)
def test_parse_prompt_rejects_text_outside_the_grammar(text):
    with pytest.raises(ValueError):
        parse_prompt(text)


def test_vocabulary_is_sorted_and_covers_exactly_the_prompt_words():
    words = vocabulary()
    assert words == sorted(set(words))
    used = {word for prompt in all_prompts() for word in prompt.text.split()}
    assert set(words) == used
    assert {"one", "four", "circles", "left", "of", "above", "and", "a"} <= set(words)


def test_splits_are_deterministic_disjoint_and_cover_the_prompt_space():
    train, heldout = prompt_splits(0)
    assert (train, heldout) == prompt_splits(0)
    assert prompt_splits(1) != (train, heldout)
    train_texts, heldout_texts = {p.text for p in train}, {p.text for p in heldout}
    shared = train_texts & heldout_texts
    assert shared == {p.text for p in all_prompts() if p.skill == "single"}
    assert train_texts | heldout_texts == {p.text for p in all_prompts()}
    assert len(heldout) >= 300 and len(train) >= 2.5 * len(heldout)
    assert {p.skill for p in heldout} == set(SKILLS)


@pytest.mark.parametrize("seed", [0, 3])
def test_heldout_compositions_never_occur_in_training(seed):
    train, heldout = prompt_splits(seed)
    pairings, _ = grammar.heldout_compositions(seed)
    train_multi = {_objects_of(p.text) for p in train if p.skill not in ("single", "counting")}
    train_counted = {parse_prompt(p.text)[0].key for p in train if p.skill == "counting"}
    for prompt in heldout:
        if prompt.skill == "single":
            continue
        objects = _objects_of(prompt.text)
        if prompt.skill == "counting":
            assert next(iter(objects)) not in train_counted, prompt
        else:
            assert objects not in train_multi, prompt
    for prompt in train:
        if prompt.skill != "single":
            assert not (_objects_of(prompt.text) & pairings), prompt


def test_sample_prompts_respects_split_and_skill_and_balances_skills():
    rng = np.random.default_rng(0)
    train, heldout = prompt_splits(0)
    drawn = sample_prompts(1000, rng)
    assert all(isinstance(p, Prompt) for p in drawn) and set(drawn) <= set(train)
    per_skill = Counter(p.skill for p in drawn)
    assert set(per_skill) == set(SKILLS) and min(per_skill.values()) >= 150
    held = sample_prompts(200, rng, split="heldout", skill="position")
    assert set(held) <= set(heldout) and {p.skill for p in held} == {"position"}
    again = sample_prompts(50, np.random.default_rng(7), split="heldout")
    assert again == sample_prompts(50, np.random.default_rng(7), split="heldout")
    with pytest.raises(ValueError):
        sample_prompts(1, rng, split="validation")
    with pytest.raises(ValueError):
        sample_prompts(1, rng, skill="spelling")


def _gap(first: Shape, second: Shape) -> float:
    a, b = first.bbox(), second.bbox()
    return max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])


@pytest.mark.parametrize("size", [64, 32])
def test_sampled_scenes_satisfy_the_prompt_and_the_layout_constraints(size):
    rng = np.random.default_rng(1)
    train, heldout = prompt_splits(0)
    for prompt in [p for p in heldout if p.skill != "position"] + heldout[-40:]:
        shapes = sample_scene(prompt.text, rng, size)
        claims = parse_prompt(prompt.text)
        expected = Counter({claim.key: claim.count for claim in claims})
        assert Counter((s.color, s.kind) for s in shapes) == expected
        for shape in shapes:
            x0, y0, x1, y1 = shape.bbox()
            assert 0 <= x0 and 0 <= y0 and x1 <= size and y1 <= size
            assert MIN_SIZE_FRAC * size <= shape.size <= MAX_SIZE_FRAC * size
        for first, second in itertools.combinations(shapes, 2):
            assert _gap(first, second) >= GAP_FRAC * size - 1e-9
        for claim in claims:
            if claim.relation:
                a = next(s for s in shapes if (s.color, s.kind) == claim.key)
                b = next(s for s in shapes if (s.color, s.kind) == claim.relative_to)
                assert relation_holds(a.centroid, b.centroid, claim.relation, size)


def test_render_is_deterministic_given_the_seed_and_draws_the_right_colours():
    first = render_prompt("a red circle left of a blue square", np.random.default_rng(5))
    second = render_prompt("a red circle left of a blue square", np.random.default_rng(5))
    other = render_prompt("a red circle left of a blue square", np.random.default_rng(6))
    assert first.dtype == np.uint8 and first.shape == (64, 64, 3)
    assert np.array_equal(first, second) and not np.array_equal(first, other)
    assert render_prompt("a red circle", np.random.default_rng(0), size=32).shape == (32, 32, 3)

    shapes = [
        Shape("circle", "red", 16.0, 16.0, 16.0),
        Shape("square", "blue", 44.0, 44.0, 14.0),
        Shape("triangle", "yellow", 44.0, 14.0, 18.0),
    ]
    image = render_scene(shapes)
    assert tuple(image[0, 0]) == BACKGROUND and tuple(image[63, 0]) == BACKGROUND
    assert tuple(image[16, 16]) == COLORS["red"] and tuple(image[44, 44]) == COLORS["blue"]
    assert tuple(image[17, 44]) == COLORS["yellow"]
    assert tuple(image[6, 37]) == BACKGROUND  # outside the triangle's slanted edge, inside its bbox
    assert tuple(image[9, 9]) == BACKGROUND  # bbox corner of the circle
    hard = render_scene(shapes, antialias=False)
    assert set(map(tuple, hard.reshape(-1, 3))) == {
        BACKGROUND,
        COLORS["red"],
        COLORS["blue"],
        COLORS["yellow"],
    }


def test_rendered_coverage_matches_the_geometric_area():
    for kind, expected in [("circle", np.pi / 4), ("square", 1.0), ("triangle", 0.5)]:
        image = render_scene([Shape(kind, "black", 31.3, 32.6, 20.0)]).astype(float)
        coverage = (np.array(BACKGROUND) - image).mean(-1) / (BACKGROUND[0] - COLORS["black"][0])
        assert coverage.sum() == pytest.approx(expected * 400, rel=0.02), kind
