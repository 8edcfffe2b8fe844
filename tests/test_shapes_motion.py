"""The moving-shapes video world: grammar, splits, renderer, verifier and reward (fastvideo/shapes/motion*)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy import ndimage

from fastvideo.rewards import available_rewards, build_reward
from fastvideo.shapes.grammar import COLORS, SHAPES
from fastvideo.shapes.motion import (
    MOVES,
    OPPOSITE,
    STAY,
    MotionClaim,
    all_motion_prompts,
    heldout_motion_compositions,
    motion_prompt_splits,
    motion_prompt_text,
    motion_skill_of,
    motion_vocabulary,
    parse_motion_prompt,
    sample_motion_prompts,
)
from fastvideo.shapes.motion_render import (
    MIN_TRAVEL_FRAC,
    check_num_frames,
    render_trajectories,
    render_video,
    sample_motion_scene,
)
from fastvideo.shapes.motion_verifier import (
    MAX_STEP_FRAC,
    check_motion_claims,
    classify_motion,
    detect_frames,
    frame_credit,
    track_object,
    verify_video,
    verify_video_batch,
)
from fastvideo.shapes.render import GAP_FRAC, _boxes_clear
from fastvideo.shapes.verifier import Detection


def _claims_of(text: str) -> tuple[MotionClaim, ...]:
    return tuple(parse_motion_prompt(text))


def _heldout_subset(stride: int, offset: int) -> list[str]:
    """All held-out single prompts plus every ``stride``-th held-out two-object prompt."""
    heldout = motion_prompt_splits(0)[1]
    singles = [p.text for p in heldout if p.skill == "single"]
    pairs = [p.text for p in heldout if p.skill == "two_objects"]
    return singles + pairs[offset::stride]


# --- grammar and splits ---------------------------------------------------------------------------


def test_prompt_space_is_unique_and_round_trips_through_the_parser():
    prompts = all_motion_prompts()
    texts = [p.text for p in prompts]
    assert len(texts) == len(set(texts)) == 18 * 5 + 18 * 17 * 24
    assert Counter(p.skill for p in prompts) == {"single": 90, "two_objects": 7344}
    for prompt in prompts:
        claims = parse_motion_prompt(prompt.text)
        assert motion_prompt_text(claims) == prompt.text
        assert motion_skill_of(prompt.text) == prompt.skill
    assert parse_motion_prompt("a blue square moving up while a green triangle stays") == [
        MotionClaim("blue", "square", "up"), MotionClaim("green", "triangle", STAY)]
    assert parse_motion_prompt("  A Red Circle   staying still. ") == [MotionClaim("red", "circle", STAY)]
    assert set(motion_vocabulary()) == set(COLORS) | set(SHAPES) | set(MOVES) | {
        "a", "moving", "moves", "staying", "still", "stays", "while"}


@pytest.mark.parametrize("text", [
    "a red circle", "a red circle moving", "a red circle moving sideways", "a red circle moves right",
    "a red circle stays", "a red circle staying", "an red circle moving left", "a pink circle moving left",
    "a red circle moving right while a red circle moves left",  # identical objects
    "a red circle staying still while a blue square stays",  # nothing moves
    "a red circle moving right while a blue square moving left",  # second clause needs the finite verb
    "a red circle moving right while", "a red circle moving right and a blue square moves up",
])
def test_parser_rejects_text_outside_the_grammar(text):
    with pytest.raises(ValueError):
        parse_motion_prompt(text)


def test_splits_are_disjoint_deterministic_and_cover_the_prompt_space():
    train, heldout = motion_prompt_splits(0)
    train_texts, heldout_texts = {p.text for p in train}, {p.text for p in heldout}
    assert not train_texts & heldout_texts
    assert train_texts | heldout_texts == {p.text for p in all_motion_prompts()}
    assert (len(train), len(heldout)) == (4482, 2952)
    assert Counter(p.skill for p in heldout) == {"single": 18, "two_objects": 2934}
    again = motion_prompt_splits(0)
    assert [p.text for p in again[0]] == [p.text for p in train] and again[1] == heldout
    assert {p.text for p in motion_prompt_splits(1)[1]} != heldout_texts


def test_heldout_compositions_never_occur_in_training_but_their_parts_do():
    triples, pairs = heldout_motion_compositions(0)
    assert len(triples) == 18 and len(pairs) == 6
    assert {t[:2] for t in triples} == {(color, shape) for color in COLORS for shape in SHAPES}  # one per object
    for color in COLORS:  # a colour's three shapes hold out three different directions
        assert len({t[2] for t in triples if t[0] == color}) == len(SHAPES)
    for shape in SHAPES:  # every direction is held out for some colours of every shape, never all six
        assert {t[2] for t in triples if t[1] == shape} == set(MOVES)
    train, heldout = motion_prompt_splits(0)
    train_triples = {c.triple for p in train for c in _claims_of(p.text)}
    train_pairs = {frozenset(c.key for c in _claims_of(p.text)) for p in train if p.skill == "two_objects"}
    assert not triples & train_triples and not pairs & train_pairs
    for prompt in heldout:  # every held-out prompt carries a composition absent from training
        claims = _claims_of(prompt.text)
        novel_pair = len(claims) == 2 and frozenset(c.key for c in claims) not in train_pairs
        assert any(c.triple not in train_triples for c in claims) or novel_pair, prompt.text
    for color, shape, direction in triples:  # ...made of parts that training does show
        assert any(t[:2] == (color, shape) for t in train_triples)
        assert any(t[0] == color and t[2] == direction for t in train_triples)
        assert any(t[1] == shape and t[2] == direction for t in train_triples)


def test_sampling_is_skill_balanced_deterministic_and_respects_the_split():
    draws = sample_motion_prompts(2000, np.random.default_rng(0), split="heldout")
    assert draws == sample_motion_prompts(2000, np.random.default_rng(0), split="heldout")
    assert abs(Counter(p.skill for p in draws)["single"] - 1000) < 120
    assert {p.text for p in draws} <= {p.text for p in motion_prompt_splits(0)[1]}
    assert {p.skill for p in sample_motion_prompts(50, np.random.default_rng(1), skill="single")} == {"single"}
    with pytest.raises(ValueError):
        sample_motion_prompts(1, np.random.default_rng(0), split="test")


# --- renderer -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 1, 3, 4, 6, 8, 10, 9.0, True])
def test_frame_counts_must_be_4k_plus_1(bad):
    with pytest.raises(ValueError, match="4k\\+1|integer"):
        check_num_frames(bad)
    if isinstance(bad, int) and not isinstance(bad, bool):
        with pytest.raises(ValueError):
            render_video("a red circle moving left", np.random.default_rng(0), 32, num_frames=bad)


def test_valid_frame_counts_and_sizes_render_the_right_layout():
    assert [check_num_frames(n) for n in (5, 9, 13, 17)] == [5, 9, 13, 17]
    for size, frames in ((32, 5), (64, 9), (32, 13)):
        video = render_video("a red circle moving left", np.random.default_rng(0), size, num_frames=frames)
        assert video.shape == (frames, 3, size, size) and video.dtype == np.float32
        assert 0.0 <= video.min() and video.max() <= 1.0
    with pytest.raises(ValueError, match="size"):
        render_video("a red circle moving left", np.random.default_rng(0), 16)
    with pytest.raises(ValueError):
        verify_video(np.zeros((3, 3, 32, 32), np.float32), "a red circle moving left")


@pytest.mark.parametrize("size", [32, 64])
def test_trajectories_satisfy_the_prompt_and_stay_clear_of_each_other(size):
    rng = np.random.default_rng(5)
    for prompt in sample_motion_prompts(200, rng, split="all", skill="two_objects"):
        claims = _claims_of(prompt.text)
        trajectories = sample_motion_scene(prompt.text, rng, size)
        for claim, traj in zip(claims, trajectories):
            ux, uy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), STAY: (0, 0)}[claim.direction]
            travel = traj.dx * ux + traj.dy * uy
            assert (traj.start.color, traj.start.kind) == claim.key
            assert (travel == 0 and traj.dx == traj.dy == 0) if claim.direction == STAY else (
                travel >= MIN_TRAVEL_FRAC * size - 1e-9 and traj.dx * uy == 0 and traj.dy * ux == 0)
            x0, y0, x1, y1 = traj.swept_bbox()
            assert 0 < x0 and 0 < y0 and x1 < size and y1 < size
        assert _boxes_clear(trajectories[0].swept_bbox(), [trajectories[1].swept_bbox()], GAP_FRAC * size - 1e-9)


def test_rendered_frames_show_the_shape_at_its_interpolated_position():
    rng = np.random.default_rng(2)
    (traj,) = sample_motion_scene("a green square moving right", rng, 64)
    video = render_trajectories([traj], 64, 9, antialias=True)
    mass = 235 / 255 - video[:, 1]  # green channel: 0 on the background (235), 75/255 inside the square (160)
    xs = np.arange(64) + 0.5
    centroid_x = [(m * xs[None, :]).sum() / m.sum() for m in mass]
    steps = np.diff(centroid_x)
    assert np.allclose(steps, traj.dx / 8, atol=0.05) and steps.min() >= MIN_TRAVEL_FRAC * 64 / 8 - 0.05


# --- verifier -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,offset", [(32, 0), (64, 3)])
def test_ground_truth_renders_of_heldout_prompts_are_verified_correct(size, offset):
    rng = np.random.default_rng(size)
    texts = _heldout_subset(stride=16, offset=offset)  # 18 singles + 183-184 pairs per size
    failures = []
    for text in texts:
        verdict = verify_video(render_video(text, rng, size), text)
        if not (verdict.correct and verdict.score == 1.0):
            failures.append((text, verdict.claims))
    assert len(texts) > 180 and not failures, failures[:3]


def test_blurred_noisy_videos_at_64_px_are_still_verified_correct():
    rng = np.random.default_rng(11)
    texts = _heldout_subset(stride=40, offset=5)
    videos = [render_video(text, rng, 64, num_frames=5) for text in texts]
    degraded = [np.clip(ndimage.gaussian_filter(v, (0, 0, 0.7, 0.7)) + rng.normal(0, 0.05, v.shape), 0, 1)
                for v in videos]
    scores, correct = verify_video_batch(torch.from_numpy(np.stack(degraded)).float(), texts)
    assert scores.shape == correct.shape == (len(texts),) and scores.dtype == torch.float32
    assert correct.sum().item() == len(texts)


def _variants(claims: tuple[MotionClaim, ...]) -> dict[str, tuple[MotionClaim, ...]]:
    """Captions that contradict the video in one checkable way, keyed by what changed."""
    first = claims[0]
    other_moves = [d for d in MOVES if d != first.direction]
    wrong_direction = OPPOSITE.get(first.direction, other_moves[0])
    color = next(c for c in COLORS if all(c != claim.color for claim in claims))
    shape = next(s for s in SHAPES if all(s != claim.shape for claim in claims))
    out = {"opposite": (MotionClaim(first.color, first.shape, wrong_direction), *claims[1:]),
           "recolored": (MotionClaim(color, first.shape, first.direction), *claims[1:]),
           "reshaped": (MotionClaim(first.color, shape, first.direction), *claims[1:])}
    if first.direction != STAY:
        out["stays"] = (MotionClaim(first.color, first.shape, STAY), *claims[1:])
        out["perpendicular"] = (MotionClaim(first.color, first.shape, other_moves[-1]), *claims[1:])
    if len(claims) == 2:
        out["dropped"] = (claims[0],) if claims[0].direction != STAY else (claims[1],)
    else:
        out["added"] = (first, MotionClaim(color, shape, "up"))
    return out


def test_mismatched_captions_are_never_verified_correct():
    rng = np.random.default_rng(3)
    texts = _heldout_subset(stride=30, offset=1)
    for index, text in enumerate(texts):
        claims = _claims_of(text)
        video = render_video(text, rng, 32 if index % 2 else 64)
        frames, size = detect_frames(video), video.shape[-1]
        for name, variant in _variants(claims).items():
            results, _, _ = check_motion_claims(list(variant), frames, size)
            satisfied = sum(ok for _, ok in results)
            assert satisfied < len(results), (text, name, results)
            if name == "opposite":  # exactly the motion claim of the first object fails
                assert [ok for _, ok in results].count(False) == 1 and not results[len(variant)][1]
        opposite = motion_prompt_text(_variants(claims)["opposite"])
        verdict = verify_video(video, opposite)
        assert not verdict.correct and verdict.score == pytest.approx(1 - 1 / len(verdict.claims))


def test_a_static_video_does_not_satisfy_a_moving_caption():
    rng = np.random.default_rng(4)
    video = render_video("a purple circle moving down", rng, 64)
    frozen = np.repeat(video[:1], len(video), axis=0)
    verdict = verify_video(frozen, "a purple circle moving down")
    assert verdict.motions[("purple", "circle")] == STAY and verdict.score == pytest.approx(2 / 3)
    assert verify_video(frozen, "a purple circle staying still").correct
    reversed_verdict = verify_video(video[::-1].copy(), "a purple circle moving down")
    assert reversed_verdict.motions[("purple", "circle")] == "up" and not reversed_verdict.correct


def test_empty_video_satisfies_only_nothing_else():
    empty = np.full((9, 3, 32, 32), 235 / 255, np.float32)
    assert verify_video(empty, "a red circle moving left").score == pytest.approx(1 / 3)
    verdict = verify_video(empty, "a red circle moving left while a blue square stays")
    assert verdict.score == pytest.approx(1 / 5) and not verdict.correct


def test_layouts_uint8_channels_last_and_torch_give_the_same_verdict():
    text = "a yellow triangle moving up while a black circle moves left"
    video = render_video(text, np.random.default_rng(6), 64)
    uint8_hwc = np.rint(video.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    verdicts = [verify_video(v, text) for v in (video, uint8_hwc, torch.from_numpy(video))]
    assert all(v.correct for v in verdicts)
    assert {v.motions[("yellow", "triangle")] for v in verdicts} == {"up"}


@pytest.mark.parametrize("offset,expected", [
    ((10, 0), "right"), ((-10, 0), "left"), ((0, -10), "up"), ((0, 10), "down"), ((0, 0), STAY),
    ((3.9, 0), STAY), ((7, 0), "other"), ((10, 10), "other"), ((10, 6), "right"), ((10, 8), "other"),
])
def test_motion_classification_rules_at_64_px(offset, expected):
    track = [(20 + offset[0] * t / 4, 30 + offset[1] * t / 4) for t in range(5)]
    assert classify_motion(track, 64) == expected


def test_motion_classification_looks_at_every_frame_for_stays():
    back_and_forth = [(20, 20), (25, 20), (30, 20), (25, 20), (20, 20)]
    assert classify_motion(back_and_forth, 64) == "other"
    assert classify_motion([(20, 20), (21, 20), (22, 20), (21, 20), (23, 20)], 64) == STAY


def _det(color: str, kind: str, x: float, y: float) -> Detection:
    return Detection(color, kind, (x, y), 100.0)


def test_tracking_links_nearest_same_object_and_breaks_on_jumps_or_gaps():
    key, size = ("red", "circle"), 64
    frames = [[_det("red", "circle", 10 + 2 * t, 10), _det("red", "circle", 50, 50 - t), _det("blue", "circle", 12 + 2 * t, 10)]
              for t in range(5)]
    frames[0] = frames[0][:1] + frames[0][2:]  # frame 0: a unique red circle starts the track
    assert track_object(frames, key, size) == [(10 + 2 * t, 10) for t in range(5)]
    gap = [list(f) for f in frames]
    gap[2] = [d for d in gap[2] if d.color != "red"]
    assert track_object(gap, key, size) is None
    jump = [[_det("red", "circle", 10, 10)], [_det("red", "circle", 10 + MAX_STEP_FRAC * size + 1, 10)]] * 3
    assert track_object(jump[:5], key, size) is None
    twins = [[_det("red", "circle", 10, 10), _det("red", "circle", 40, 40)]] * 5
    assert track_object(twins, key, size) is None


# --- reward ---------------------------------------------------------------------------------------


def test_reward_scores_video_batches_in_score_and_binary_modes():
    assert "shapes_motion_verifier" in available_rewards()
    rng = np.random.default_rng(8)
    texts = ["a red circle moving left", "a blue square moving up while a green triangle stays"]
    videos = torch.from_numpy(np.stack([render_video(text, rng, 32) for text in texts]))  # (B, T, 3, H, W)
    wrong = ["a red circle moving right", "a blue square moving down while a green triangle stays"]
    score, binary = build_reward("shapes_motion_verifier"), build_reward("shapes_motion_verifier", mode="binary")
    assert score.input_kind == "video" and score.device == torch.device("cpu")
    assert torch.equal(score(videos, texts), torch.ones(2)) and torch.equal(binary(videos, texts), torch.ones(2))
    assert torch.allclose(score(videos, wrong), torch.tensor([2 / 3, 4 / 5]))
    assert torch.equal(binary(videos, wrong), torch.zeros(2))
    frames = build_reward("shapes_motion_verifier", mode="frames")
    assert torch.equal(frames(videos, texts), torch.ones(2))
    assert torch.allclose(frames(videos, wrong), score(videos, wrong))  # every frame agrees: same as score
    present = build_reward("shapes_motion_verifier", mode="present")
    assert torch.equal(present(videos, texts), torch.ones(2))
    assert torch.allclose(present(videos, wrong), score(videos, wrong))
    blank = videos[..., :1, :1].expand_as(videos).contiguous()  # background only: "nothing else" pays 1/3, 1/5
    assert torch.allclose(frames(blank, texts), torch.tensor([1 / 3, 1 / 5]))
    assert torch.equal(present(blank, texts), torch.zeros(2))
    with pytest.raises(ValueError, match="video input"):
        score(videos[:, 0], texts)  # images (B, 3, H, W) are not videos
    with pytest.raises(ValueError, match="mode"):
        build_reward("shapes_motion_verifier", mode="soft")


def test_frame_credit_counts_the_frames_where_per_frame_claims_hold():
    """9 frames; the red circle vanishes in frame 4 and a stray blue square shows in frames 6-7: ``score``
    credits neither per-frame claim, frame credit gives them 8/9 and 7/9."""
    claims = list(_claims_of("a red circle moving right"))
    frames = [[_det("red", "circle", 10 + 2 * t, 10)] for t in range(9)]
    frames[4] = []
    frames[6] = frames[6] + [_det("blue", "square", 40, 40)]
    frames[7] = frames[7] + [_det("blue", "square", 40, 40)]
    key = ("red", "circle")
    assert frame_credit(claims, frames, {key: "untracked"}) == pytest.approx((8 / 9 + 0 + 7 / 9) / 3)
    assert frame_credit(claims, frames, {key: "right"}) == pytest.approx((8 / 9 + 1 + 7 / 9) / 3)
    clean = [[_det("red", "circle", 10 + 2 * t, 10)] for t in range(9)]
    assert frame_credit(claims, clean, {key: "right"}) == 1.0
    assert frame_credit(claims, clean, {key: "left"}) == pytest.approx(2 / 3)
    empty = [[] for _ in range(9)]
    assert frame_credit(claims, empty, {key: "untracked"}) == pytest.approx(1 / 3)  # as score: only "nothing else"


def test_present_credit_pays_nothing_else_only_where_the_objects_are():
    """``require_present``: the frame without the red circle (4) no longer earns "nothing else", the frame
    with the stray square (6) still does not, and an empty clip earns 0 instead of 1/3."""
    claims = list(_claims_of("a red circle moving right"))
    frames = [[_det("red", "circle", 10 + 2 * t, 10)] for t in range(9)]
    frames[4] = []
    frames[6] = frames[6] + [_det("blue", "square", 40, 40)]
    key = ("red", "circle")
    assert frame_credit(claims, frames, {key: "untracked"}, require_present=True) == pytest.approx(
        (8 / 9 + 0 + 7 / 9) / 3)
    empty = [[] for _ in range(9)]
    assert frame_credit(claims, empty, {key: "untracked"}, require_present=True) == 0.0
    clean = [[_det("red", "circle", 10 + 2 * t, 10)] for t in range(9)]
    assert frame_credit(claims, clean, {key: "right"}, require_present=True) == 1.0
