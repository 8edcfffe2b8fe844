"""Video visualisation on the tiny HunyuanVideo (configs/debug/hunyuan_tiny.yaml): one MP4 and one GIF per
sample, the animated grid and the first / middle / last frame grid.png in the documented layout, and
scripts/visualization/vis_hunyuanvideo.sh end to end on two CPU ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "debug" / "hunyuan_tiny.yaml"
PROMPTS = ["a cat walks on the grass", "a red car in the city", "a blue sky"]
SIZE, FRAMES, STEPS = 32, 5, 2
PICKS = [0, 2, 4]  # first, middle, last of 5 frames


def _read(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(path)[..., :3]


@pytest.fixture(scope="module")
def tuned_export(tmp_path_factory) -> Path:
    """A 'trained' tiny HunyuanVideo transformer (perturbed weights), exported like a run."""
    from fastvideo.config import load_config
    from fastvideo.models import build_adapter

    root = tmp_path_factory.mktemp("hunyuan_ckpt")
    adapter = build_adapter(load_config(str(CONFIG)).model, "cpu")
    with torch.no_grad():
        for param in adapter.transformer.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    adapter.save_transformer(adapter.transformer, root / "run" / "export" / "transformer")
    return root / "run" / "export"


@pytest.fixture(scope="module")
def expected_videos(tuned_export) -> np.ndarray:
    """uint8 (models, rows, T, H, W, 3): base and tuned samples of (prompt 0, seed 0), (0, 3), (1, 0), (1, 3)."""
    from fastvideo.config import load_config
    from fastvideo.inference import apply_checkpoint, load_policy, sample
    from fastvideo.inference.video import to_uint8

    adapter = load_policy(load_config(str(CONFIG)).model, None, "cpu")
    models = []
    for checkpoint in (None, tuned_export):
        apply_checkpoint(adapter, checkpoint)
        videos = sample(adapter, [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]], [0, 3, 0, 3], num_steps=STEPS,
                        shift=5.0)
        assert videos.shape == (4, FRAMES, 3, SIZE, SIZE)
        models.append(np.stack([to_uint8(v) for v in videos]))
    return np.stack(models)


@pytest.fixture()
def prompt_file(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def _cell(grid: np.ndarray, row: int, column: int, width: int = SIZE) -> np.ndarray:
    return grid[..., row * SIZE:(row + 1) * SIZE, column * width:(column + 1) * width, :]


def test_frame_strip_and_grid_tiling():
    from fastvideo.inference.video import assemble_grid, frame_picks, frame_strip

    assert frame_picks(5) == [0, 2, 4] and frame_picks(1) == [0] and frame_picks(2) == [0, 1]
    video = np.arange(5 * 2 * 3 * 3, dtype=np.uint8).reshape(5, 2, 3, 3)
    assert np.array_equal(frame_strip(video), np.concatenate([video[0], video[2], video[4]], axis=1))
    cells = {(r, c): np.full((5, 2, 3, 3), 10 * r + c, np.uint8) for r in range(3) for c in range(2)}
    grid = assemble_grid(cells, [(2,), (0,)], 2)  # rows in the given order
    assert grid.shape == (5, 4, 6, 3)
    assert (grid[:, :2, :3] == 20).all() and (grid[:, :2, 3:] == 21).all() and (grid[:, 2:, 3:] == 1).all()
    with pytest.raises(ValueError, match="shape"):
        assemble_grid({(0, 0): np.zeros((2, 2, 3), np.uint8), (0, 1): np.zeros((2, 3, 3), np.uint8)}, [(0,)], 2)


def test_hunyuan_visualize_writes_videos_and_grids(tmp_path, prompt_file, tuned_export, expected_videos):
    from fastvideo.inference.visualize import main

    out = tmp_path / "vis"
    main(["--config", str(CONFIG), "--prompt_file", str(prompt_file), "--max_prompts", "2", "--seeds", "0", "3",
          "--num_steps", str(STEPS), "--num_frames", str(FRAMES), "--checkpoints", str(tuned_export),
          "--batch_size", "3", "--fps", "10", "--output_dir", str(out)])
    rows = [(0, 0), (0, 3), (1, 0), (1, 3)]
    layout = json.loads((out / "grid.json").read_text())
    assert [(r["prompt"], r["seed"]) for r in layout["rows"]] == [(PROMPTS[i], s) for i, s in rows]
    assert [c["label"] for c in layout["columns"]] == ["base", "run/export"]
    strip = np.asarray(Image.open(out / "grid.png"))
    assert strip.shape == (4 * SIZE, 2 * 3 * SIZE, 3)  # rows: prompt x seed; columns: model x (first|mid|last)
    animated, animated_mp4 = _read(out / "grid.gif"), _read(out / "grid.mp4")
    assert animated.shape == animated_mp4.shape == (FRAMES, 4 * SIZE, 2 * SIZE, 3)
    for r, (index, seed) in enumerate(rows):
        for c, folder in enumerate(["base", "run_export"]):
            expected = np.concatenate(list(expected_videos[c, r][PICKS]), axis=1).astype(int)
            assert np.abs(_cell(strip, r, c, 3 * SIZE).astype(int) - expected).max() <= 1
            gif, mp4 = (_read(out / folder / f"p{index:04d}_s{seed}{ext}") for ext in (".gif", ".mp4"))
            assert gif.shape == mp4.shape == (FRAMES, SIZE, SIZE, 3)
            # Lossy (GIF palette, MP4 codec): the nearest grid cell must be this one, or the same seed and
            # model with the other prompt (the tiny model's prompts barely change a sample; grid.png is exact).
            for video in (gif, mp4, _cell(animated, r, c), _cell(animated_mp4, r, c)):
                assert _closest_cell(video[PICKS], strip) in ((r, c), (r ^ 2, c))
    assert not list(out.rglob("p*.png"))  # videos are not written as images
    assert np.abs(strip[:, :3 * SIZE].astype(float) - strip[:, 3 * SIZE:]).mean() > 1.0  # the checkpoint differs


def _closest_cell(frames: np.ndarray, strip: np.ndarray) -> tuple[int, int]:
    """(row, column) of the grid.png cell whose first / middle / last frames are nearest to ``frames``."""
    rows, columns = strip.shape[0] // SIZE, strip.shape[1] // (3 * SIZE)
    cells = [(r, c) for r in range(rows) for c in range(columns)]
    errors = [np.abs(np.concatenate(list(frames), axis=1).astype(float) - _cell(strip, r, c, 3 * SIZE)).mean()
              for r, c in cells]
    return cells[int(np.argmin(errors))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_vis_hunyuanvideo_script_on_the_tiny_model(tmp_path, prompt_file, expected_videos):
    out = tmp_path / "script"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORCE_CPU": "1", "CHECKPOINTS": "", "PROMPT_FILE": str(prompt_file),
           "SEEDS": "3", "NUM_STEPS": str(STEPS), "HEIGHT": str(SIZE), "WIDTH": str(SIZE), "NUM_FRAMES": str(FRAMES),
           "OUTPUT_DIR": str(out), "GPU_NUM": "2", "MASTER_PORT": str(_free_port())}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "visualization" / "vis_hunyuanvideo.sh"),
                           "--model.tiny", "true", "--max_prompts", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in (out / "base").iterdir()) == ["p0000_s3.gif", "p0000_s3.mp4", "p0001_s3.gif",
                                                                "p0001_s3.mp4"]
    strip = np.asarray(Image.open(out / "grid.png"))
    assert strip.shape == (2 * SIZE, 3 * SIZE, 3) and _read(out / "grid.gif").shape == (FRAMES, 2 * SIZE, SIZE, 3)
    for r in range(2):  # two ranks (one prompt each), the script's shift 5 and guidance 6: the in-process run
        expected = np.concatenate(list(expected_videos[0, 2 * r + 1][PICKS]), axis=1).astype(int)
        assert np.abs(_cell(strip, r, 0, 3 * SIZE).astype(int) - expected).max() <= 1
