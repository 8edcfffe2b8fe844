"""GRPO on the moving-shapes video world: the motion world of the held-out evaluation, rendered first
frames for image-to-video, configs and prompt files, and 2-iteration T2V / I2V runs of train_shapes on
the smoke pipelines of ``fastvideo.shapes.pretrain.video`` / ``video_i2v``."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from fastvideo.distributed import DistEnv
from fastvideo.shapes import motion_frames
from fastvideo.shapes.figure import CORRECT, LABEL_WIDTH, VIDEO_TILE_TARGET, Layout, tile_scale
from fastvideo.shapes.motion import MOTION_SKILLS, sample_motion_prompts
from fastvideo.shapes.motion_frames import (
    MotionFirstFrames,
    eval_first_frames,
    first_frame_seed,
    indexed_first_frames,
    use_motion_first_frames,
)
from fastvideo.shapes.motion_render import render_video
from fastvideo.shapes.policy_eval import EvalSettings, evaluate_policy, paired_gain
from fastvideo.shapes.worlds import CELL_MARGIN, IMAGE_WORLD, MOTION_WORLD, get_world
from tests.test_shapes_grpo import RenderingStub

ROOT = Path(__file__).resolve().parents[1]
SIZE, FRAMES = 32, 5


def flow_sampler(steps: int = 2):
    from fastvideo.grpo.sampler import FlowSampler

    return FlowSampler.build(steps, 5.0, "ode", 0.0)


class VideoRenderingStub(RenderingStub):
    """A 'video model' whose samples are ground-truth clips of the prompts it was last asked to encode."""

    def __init__(self):
        super().__init__(SIZE)
        self.model_cfg = SimpleNamespace(num_frames=FRAMES, height=SIZE, width=SIZE)

    def decode(self, latents):
        clips = [render_video(t, np.random.default_rng(i), SIZE, FRAMES) for i, t in enumerate(self.texts)]
        return torch.from_numpy(np.stack(clips))


# ------------------------------------------------------------------------------------------ world


def test_motion_world_draws_the_video_pretraining_evaluation_prompts():
    from fastvideo.shapes.pretrain.video import evaluate_video

    defaults = inspect.signature(evaluate_video).parameters
    settings = EvalSettings().resolved(MOTION_WORLD)
    assert (settings.num_prompts, settings.seed) == (defaults["num"].default, defaults["seed"].default)
    rng = np.random.default_rng(settings.seed)
    expected = sample_motion_prompts(settings.num_prompts, rng, split="heldout")
    assert MOTION_WORLD.prompts(settings.num_prompts, settings.seed) == [(p.text, p.skill) for p in expected]
    assert EvalSettings().resolved(IMAGE_WORLD).num_prompts == 400


def test_world_follows_the_adapter_unless_forced():
    assert get_world("auto", VideoRenderingStub()) is MOTION_WORLD
    assert get_world("auto", SimpleNamespace(model_cfg=SimpleNamespace(num_frames=1))) is IMAGE_WORLD
    assert get_world("auto") is IMAGE_WORLD and get_world("motion") is MOTION_WORLD
    with pytest.raises(ValueError):
        get_world("sound")


def test_eval_world_flag_is_a_string_and_checked():
    from fastvideo.shapes.train_shapes import split_eval_args

    settings, rest = split_eval_args(["--eval.world", "motion", "--eval.num_prompts=8", "--train.lr", "1"])
    assert (settings.world, settings.num_prompts, rest) == ("motion", 8, ["--train.lr", "1"])
    with pytest.raises(SystemExit):
        split_eval_args(["--eval.world", "sound"])


def test_motion_evaluation_scores_ground_truth_clips_as_correct(tmp_path):
    from fastvideo.shapes.policy_eval import build_summary, save_before_after

    settings = EvalSettings(num_prompts=8, batch_size=3, grid_per_skill=1)
    result = evaluate_policy(VideoRenderingStub(), flow_sampler(), DistEnv(), settings, progress_bar=False)
    summary = result.summary
    assert set(summary["per_skill"]) == set(MOTION_SKILLS) and summary["overall"]["n"] == 8
    assert summary["overall"]["acc"] == 1.0 and summary["overall"]["no_shape_frac"] == 0.0
    assert result.grid_images.shape == (2, FRAMES, 3, SIZE, SIZE)
    full = build_summary({"base": result, "final": result}, settings, {}, MOTION_WORLD)
    assert full["eval"]["world"] == "motion" and full["gain"]["final"]["overall"]["acc"] == 0.0
    save_before_after({"base": result, "final": result}, ["a red circle", "b"], tmp_path / "ba.png", MOTION_WORLD,
                      indices=[0, 1])
    check_video_figure(tmp_path / "ba.png", rows=2, columns=2, verdict=CORRECT)


def check_video_figure(path: Path, rows: int, columns: int, verdict: tuple | None = None) -> None:
    """The labelled video figure: cells of three frames (PNG) or one (every GIF frame), upscaled, with
    text above the columns and left of the rows, and every cell framed in ``verdict``'s colour."""
    scale = tile_scale(SIZE, VIDEO_TILE_TARGET)
    strip = Layout(rows, columns, (3 * SIZE + 2 * CELL_MARGIN) * scale, SIZE * scale)
    single = Layout(rows, columns, SIZE * scale, SIZE * scale)
    gif = Image.open(path.with_suffix(".gif"))
    assert gif.n_frames == FRAMES and gif.size == single.size()
    for layout, image in ((strip, Image.open(path)), (single, gif.convert("RGB"))):
        pixels = np.asarray(image.convert("RGB")).astype(int)
        assert (pixels.shape[1], pixels.shape[0]) == layout.size()
        white = np.all(pixels == 255, axis=-1)
        x, y = layout.frame(0, 0)
        assert (~white[:y, x:x + layout.cell_width]).sum() > 30 and (~white[y:, :LABEL_WIDTH]).sum() > 30
        for row in range(rows):
            for column in range(columns):
                x, y = layout.frame(row, column)
                if verdict is not None:
                    assert tuple(pixels[y + 1, x + 1]) == verdict, (row, column)


# ------------------------------------------------------------------------------------------ first frames


def test_first_frames_are_the_ground_truth_render_and_fixed_per_prompt():
    prompts = ["a red circle moving right", "a blue square moving up while a green triangle stays",
               "a red circle moving right"]
    frames = MotionFirstFrames(SIZE)(prompts)
    assert frames.shape == (3, 3, SIZE, SIZE) and frames.dtype == torch.float32
    for prompt, frame in zip(prompts, frames):
        clip = render_video(prompt, np.random.default_rng(first_frame_seed(prompt)), SIZE, 9)
        assert torch.equal(frame, torch.from_numpy(clip[0]))
    assert torch.equal(frames[0], frames[2]) and not torch.equal(frames[0], frames[1])
    assert torch.equal(MotionFirstFrames(SIZE)(prompts[::-1]), frames.flip(0))
    assert not torch.equal(MotionFirstFrames(SIZE, seed=1)(prompts[:1]), frames[:1])


def test_evaluation_first_frames_are_a_fresh_ground_truth_scene_per_index():
    prompt = "a red circle moving right"
    frames = indexed_first_frames([prompt] * 4, [0, 1, 2, 0], 1234, SIZE)
    assert frames.shape == (4, 3, SIZE, SIZE)
    for index, frame in zip([0, 1, 2], frames):
        clip = render_video(prompt, np.random.default_rng([1234, index]), SIZE, 9)
        assert torch.equal(frame, torch.from_numpy(clip[0]))
    assert torch.equal(frames[0], frames[3]) and not torch.equal(frames[0], frames[1])
    adapter = SimpleNamespace(first_frame_source=MotionFirstFrames(SIZE))
    assert torch.equal(eval_first_frames(adapter, 1234)([prompt], [2]), frames[2:3])
    assert eval_first_frames(SimpleNamespace(first_frame_source=lambda prompts: None), 1234) is None  # a file
    assert eval_first_frames(SimpleNamespace(), 1234) is None  # text-to-video


def test_fresh_first_frames_draw_a_new_ground_truth_scene_per_call_shared_within_it():
    prompts = ["a red circle moving right", "a red circle moving right", "a blue square moving up"]
    source = MotionFirstFrames(SIZE, fresh=True, draws=5)
    first, second = source(prompts), source(prompts[:1])
    assert source.draws == 7 and torch.equal(first[0], first[1]) and not torch.equal(first[0], second[0])
    for frame, draw in ((first[0], 5), (second[0], 6)):
        rng = np.random.default_rng([first_frame_seed(prompts[0]), draw])
        assert torch.equal(frame, torch.from_numpy(render_video(prompts[0], rng, SIZE, 9)[0]))
    assert torch.equal(MotionFirstFrames(SIZE, fresh=True, draws=6)(prompts[:1]), second)  # a resumed run


def test_first_frame_source_is_wired_unless_a_file_is_configured(monkeypatch):
    from fastvideo.models.skyreels_i2v import FIRST_FRAME_ENV

    monkeypatch.delenv(FIRST_FRAME_ENV, raising=False)
    adapter = SimpleNamespace(model_cfg=SimpleNamespace(height=SIZE, width=SIZE, first_frame_file=None))
    adapter.set_first_frame_source = lambda fn: setattr(adapter, "source", fn)
    assert use_motion_first_frames(adapter) and isinstance(adapter.source, MotionFirstFrames)
    assert not adapter.source.fresh
    adapter.model_cfg.first_frame_scenes = "per_iteration"
    assert use_motion_first_frames(adapter, iteration=3) and adapter.source.fresh and adapter.source.draws == 3
    assert not use_motion_first_frames(SimpleNamespace(model_cfg=adapter.model_cfg))  # a T2V adapter
    adapter.model_cfg.first_frame_file, adapter.source = "frames.json", None
    assert not use_motion_first_frames(adapter) and adapter.source is None


# ------------------------------------------------------------------------------------------ files


def test_configs_and_motion_prompt_file():
    from fastvideo.config import load_config
    from fastvideo.data.prompts import read_prompt_file
    from fastvideo.shapes.prompt_files import balanced_train_texts, single_train_texts

    presets = [(f"{name}_{objective}", model, guidance, objective) for objective in ("grpo", "nft")
               for name, model, guidance in [("hunyuan_t2v", "hunyuan", 6.0), ("skyreels_i2v", "skyreels_i2v", 5.0)]]
    for name, model, guidance, objective in presets:
        cfg = load_config(ROOT / f"configs/shapes_video/{name}.yaml")
        assert (cfg.model.name, cfg.model.path, cfg.model.guidance_scale) == (
            model, f"assets/shapes_video/{model}", guidance)
        assert (cfg.model.height, cfg.model.width, cfg.model.num_frames, cfg.sampler.shift) == (32, 32, 9, 5.0)
        assert [t.name for t in cfg.rewards.terms] == ["shapes_motion_verifier"]
        sampling = json.loads((ROOT / cfg.model.path / "pretrain.json").read_text())["sampling"]
        if model == "hunyuan":  # real CFG at the scale the shipped pipeline's pretrain.json names
            assert cfg.model.true_cfg_scale == sampling["true_cfg_scale"] == 4.0
        # the Llama length the bases were trained with (256 padded tokens cost 2.7x per call, log row 82)
        assert cfg.model.max_sequence_length == sampling["max_sequence_length"] == 16
        assert (cfg.grpo.group_size, cfg.train.prompts_per_iteration, cfg.train.max_minutes) == (8, 4, 20)
        assert (cfg.grpo.objective, cfg.sampler.sde_type, cfg.grpo.train_cfg_free) == (
            ("nft", "ode", True) if objective == "nft" else ("grpo", "dance", False))
        # the binary reward (the `frames` credit pays blank clips, log row 113), constant groups skipped
        assert (cfg.rewards.terms[0].kwargs["mode"], cfg.grpo.drop_constant_groups) == ("binary", True)
        # T2V NFT trains on single-object prompts only (log rows 129-130), the others on the balanced file
        expected = single_train_texts(0) if name == "hunyuan_t2v_nft" else balanced_train_texts(0)
        assert read_prompt_file(ROOT / cfg.data.prompt_file) == expected
    launcher = (ROOT / "scripts/finetune/finetune_shapes_video_grpo.sh").read_text()
    assert "CONFIG=${CONFIG:-configs/shapes_video/hunyuan_t2v_nft.yaml}" in launcher


def test_balanced_motion_prompts_are_train_prompts_half_single(tmp_path):
    from fastvideo.data.prompts import read_prompt_file
    from fastvideo.shapes.motion import motion_skill_of
    from fastvideo.shapes.prompt_files import balanced_train_texts, split_texts, write_prompt_files

    texts, train = balanced_train_texts(0), split_texts(0, "motion")["train"]
    skills = [motion_skill_of(text) for text in texts]
    singles = [text for text in train if motion_skill_of(text) == "single"]
    assert set(texts) <= set(train) and len(set(texts)) == len(texts) == 2 * len(singles)
    assert skills.count("single") == skills.count("two_objects") and set(singles) <= set(texts)
    assert balanced_train_texts(1) != texts  # another seed draws other two-object prompts
    written = write_prompt_files(tmp_path, seed=0, world="motion")
    for name in ("train", "heldout", "train_balanced", "train_single"):
        assert written[name].read_text() == (ROOT / f"assets/shapes_video/prompts/{written[name].name}").read_text()
    assert read_prompt_file(written["train_balanced"]) == texts
    assert read_prompt_file(written["train_single"]) == singles and len(singles) == 72


# ------------------------------------------------------------------------------------------ smoke runs


@pytest.fixture(scope="module")
def smoke_pipelines(tmp_path_factory) -> dict[str, Path]:
    """Tiny T2V (2 steps) and I2V (2 steps, derived from it) pipelines at 32 px, 5 frames."""
    from fastvideo.shapes.pretrain import video, video_i2v

    root = tmp_path_factory.mktemp("shapes_video")
    video.main(["--smoke", "--size", str(SIZE), "--num_frames", str(FRAMES), "--threads", "1",
                "--work_dir", str(root / "work"), "--output_dir", str(root / "hunyuan")])
    video_i2v.main(["--smoke", "--stage", "train", "--threads", "1", "--t2v_dir", str(root / "hunyuan"),
                    "--work_dir", str(root / "work_i2v"), "--output_dir", str(root / "skyreels_i2v")])
    return {"hunyuan": root / "hunyuan", "skyreels_i2v": root / "skyreels_i2v"}


def run_video_grpo(tmp_path: Path, config: str, pipeline: Path, extra: list[str] = ()) -> Path:
    from fastvideo.shapes.train_shapes import main

    run_dir = tmp_path / "run"
    main(["--config", str(ROOT / f"configs/shapes_video/{config}.yaml"), "--output_dir", str(run_dir),
          "--model.path", str(pipeline), "--model.num_frames", str(FRAMES),
          "--data.prompt_file", str(ROOT / "assets/shapes_video/prompts/train.txt"),
          "--train.max_iterations", "2", "--grpo.group_size", "2", "--train.prompts_per_iteration", "1",
          "--sampler.num_steps", "3", "--logging.progress_bar", "false", "--checkpoint.export_at_end", "false",
          "--eval.num_prompts", "4", "--eval.batch_size", "4", "--eval.grid_per_skill", "1", *extra])
    return run_dir


def check_video_artefacts(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1]
    summary = json.loads((run_dir / "summary.json").read_text())
    for policy in ("base", "final"):
        assert set(summary[policy]["per_skill"]) == set(MOTION_SKILLS)
        assert {"acc", "se", "n", "mean_score", "no_shape_frac"} <= set(summary[policy]["overall"])
        assert summary[policy]["overall"]["n"] == 4
    assert set(summary["gain"]["final"]["per_skill"]) == set(MOTION_SKILLS)
    assert summary["eval"]["world"] == "motion" and len(summary["grid_prompts"]) == 2
    check_video_figure(run_dir / "before_after.png", rows=2 + bool(summary.get("final_ema")), columns=2)  # + EMA row
    assert len((run_dir / "eval_final.jsonl").read_text().splitlines()) == 4
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["grpo", "nft"])
def test_t2v_presets_on_the_smoke_pipeline_write_all_artefacts(tmp_path, smoke_pipelines, objective):
    check_video_artefacts(run_video_grpo(tmp_path, f"hunyuan_t2v_{objective}", smoke_pipelines["hunyuan"]))


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["grpo", "nft"])
def test_i2v_presets_condition_training_and_evaluation_on_rendered_first_frames(tmp_path, smoke_pipelines,
                                                                               monkeypatch, objective):
    seen: list[str] = []
    evaluated: list[tuple[str, int]] = []
    original, indexed = MotionFirstFrames.__call__, motion_frames.indexed_first_frames
    monkeypatch.setattr(MotionFirstFrames, "__call__", lambda self, prompts: seen.extend(prompts) or original(
        self, prompts))
    monkeypatch.setattr(motion_frames, "indexed_first_frames", lambda texts, indices, seed, size: evaluated.extend(
        zip(texts, indices)) or indexed(texts, indices, seed, size))
    summary = check_video_artefacts(run_video_grpo(tmp_path, f"skyreels_i2v_{objective}",
                                                   smoke_pipelines["skyreels_i2v"]))
    train = set((ROOT / "assets/shapes_video/prompts/train.txt").read_text().splitlines())
    heldout = [text for text, _ in MOTION_WORLD.prompts(4, EvalSettings().seed)]
    assert set(seen) <= train and set(seen)  # rollouts: one frame per train prompt
    expected = [(text, index) for index, text in enumerate(heldout)]
    evaluations = 2 + bool(summary.get("final_ema"))  # base, final and (with an EMA) the EMA weights
    assert sorted(evaluated) == sorted(expected * evaluations)  # one scene per index in every evaluation


@pytest.mark.slow
def test_evaluation_of_the_same_weights_is_identical(smoke_pipelines):
    from fastvideo.config import ModelConfig
    from fastvideo.models import build_adapter

    cfg = ModelConfig(name="hunyuan", path=str(smoke_pipelines["hunyuan"]), height=SIZE, width=SIZE,
                      num_frames=FRAMES, guidance_scale=6.0, dtype="fp32")
    adapter = build_adapter(cfg, "cpu")
    settings = EvalSettings(num_prompts=4, batch_size=3, grid_per_skill=1)
    first, second = (evaluate_policy(adapter, flow_sampler(), DistEnv(), settings, progress_bar=False)
                     for _ in range(2))
    assert first.records == second.records and torch.equal(first.grid_images, second.grid_images)
    gain = paired_gain(first.records, second.records, MOTION_SKILLS)["overall"]
    assert gain["acc"] == 0.0 and gain["mean_score"] == 0.0 and gain["n"] == 4
