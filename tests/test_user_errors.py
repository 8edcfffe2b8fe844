"""User errors (missing model, empty prompt file, missing embedding cache or reward checkpoint, bad config)
print one ``error:`` message with the fix and exit with code 2; ``--debug`` / FASTVIDEO_DEBUG=1 show the
traceback. Every subprocess fails before any model is loaded."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastvideo.errors import DEBUG_ENV, EXIT_CODE, UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = "configs/debug/flux_tiny.yaml"


def run_module(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (DEBUG_ENV, "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    full_env = {**base, "OMP_NUM_THREADS": "1", "FORCE_CPU": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=300)


def assert_user_error(done: subprocess.CompletedProcess, *expected: str) -> None:
    """Exit code 2, one ``error:`` message holding every ``expected`` piece, no traceback."""
    assert done.returncode == EXIT_CODE, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.count("error: ") == 1, done.stderr[-3000:]
    for piece in expected:
        assert piece in done.stderr, f"{piece!r} not in:\n{done.stderr[-3000:]}"


@pytest.fixture
def empty_prompts(tmp_path) -> Path:
    path = tmp_path / "empty.txt"
    path.write_text("\n  \n", encoding="utf-8")
    return path


# --- python -m fastvideo.train ------------------------------------------------------------------------


@pytest.mark.slow
def test_missing_model_directory_names_the_download_command(tmp_path):
    missing = tmp_path / "no_flux"
    done = run_module("fastvideo.train", "--config", "configs/flux_grpo.yaml", "--output_dir", str(tmp_path / "run"),
                      "--model.path", str(missing))
    assert_user_error(done, f"model directory not found: {missing}",
                      f"huggingface-cli download black-forest-labs/FLUX.1-dev --local-dir {missing}")


def test_empty_prompt_file_says_which_file_and_what_to_put_in_it(tmp_path, empty_prompts):
    done = run_module("fastvideo.train", "--config", TINY, "--output_dir", str(tmp_path / "run"),
                      "--data.prompt_file", str(empty_prompts))
    assert_user_error(done, f"prompt file {empty_prompts} holds no prompts", "one prompt per line",
                      "data.prompt_file")


def test_missing_prompt_file(tmp_path):
    missing = tmp_path / "absent.txt"
    done = run_module("fastvideo.train", "--config", TINY, "--output_dir", str(tmp_path / "run"),
                      "--data.prompt_file", str(missing))
    assert_user_error(done, f"prompt file not found: {missing}", "data.prompt_file")


def test_missing_embedding_cache_names_the_preprocess_command(tmp_path):
    cache = tmp_path / "no_cache"
    done = run_module("fastvideo.train", "--config", TINY, "--output_dir", str(tmp_path / "run"),
                      "--data.embeddings_dir", str(cache))
    assert_user_error(done, "no prompt-embedding cache for model 'flux'", str(cache),
                      f"-m fastvideo.data.preprocess --model.name flux --model.tiny true --prompt_file prompts.txt "
                      f"--output_dir {cache}")


@pytest.mark.slow
def test_missing_reward_checkpoint_names_the_download_command(tmp_path):
    checkpoint = tmp_path / "hps.pt"
    done = run_module("fastvideo.train", "--config", TINY, "--output_dir", str(tmp_path / "run"),
                      "--rewards.terms.0.name", "hps", "--rewards.terms.0.kwargs", f"{{checkpoint: '{checkpoint}'}}")
    assert_user_error(done, f"HPS-v2.1 checkpoint not found at '{checkpoint}'", "hf download xswu/HPSv2")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["--grpo.clip_rnge", "0.1"], ["unknown config key 'grpo.clip_rnge'", "did you mean 'grpo.clip_range'"]),
        (["--sampler.sde_type", "dancing"], ["sampler.sde_type: must be one of dance | flow_grpo", "'dancing'"]),
    ],
)
def test_bad_config_names_the_key_and_the_valid_values(tmp_path, overrides, expected):
    done = run_module("fastvideo.train", "--config", TINY, "--output_dir", str(tmp_path / "run"), *overrides)
    assert_user_error(done, *expected)


def test_debug_flag_and_environment_variable_show_the_traceback(tmp_path, empty_prompts):
    args = ["--config", TINY, "--output_dir", str(tmp_path / "run"), "--data.prompt_file", str(empty_prompts)]
    for done in (run_module("fastvideo.train", *args, "--debug"),
                 run_module("fastvideo.train", *args, env={DEBUG_ENV: "1"})):
        assert done.returncode != 0
        assert "Traceback" in done.stderr and "EmptyPromptFileError" in done.stderr, done.stderr[-3000:]
        assert "holds no prompts" in done.stderr


# --- the other entry points ---------------------------------------------------------------------------


def test_inference_command_reports_an_empty_prompt_file(tmp_path, empty_prompts):
    done = run_module("fastvideo.inference.visualize", "--model.tiny", "true", "--prompt_file", str(empty_prompts),
                      "--output_dir", str(tmp_path / "out"))
    assert_user_error(done, f"prompt file {empty_prompts} holds no prompts")


@pytest.mark.slow
def test_preprocess_reports_a_missing_model_directory(tmp_path, empty_prompts):
    missing = tmp_path / "no_sd"
    (tmp_path / "prompts.txt").write_text("a cat\n", encoding="utf-8")
    done = run_module("fastvideo.data.preprocess", "--model.name", "sd", "--model.path", str(missing),
                      "--prompt_file", str(tmp_path / "prompts.txt"), "--output_dir", str(tmp_path / "cache"))
    assert_user_error(done, f"model directory not found: {missing}", "huggingface-cli download")


# --- run_cli in process ---------------------------------------------------------------------------------


class _Missing(FileNotFoundError, UserError):
    pass


def _failing_main(argv):
    raise _Missing(f"thing not found at /x (argv={argv}); fix: create it")


def test_run_cli_prints_one_message_and_exits_2(monkeypatch, capsys):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(_failing_main, ["--a", "1"])
    assert info.value.code == EXIT_CODE
    err = capsys.readouterr().err
    assert err == "error: thing not found at /x (argv=['--a', '1']); fix: create it\n"


def test_run_cli_debug_flag_is_removed_and_reraises(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(_Missing, match=r"argv=\['--a', '1'\]"):
        run_cli(_failing_main, ["--a", "--debug", "1"])
    assert run_cli(lambda argv: argv, ["x", "--debug"]) == ["x"]
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(_Missing):
        run_cli(_failing_main, [])
    monkeypatch.setenv(DEBUG_ENV, "0")
    with pytest.raises(SystemExit):
        run_cli(_failing_main, [])


def test_run_cli_leaves_other_errors_alone_and_prefixes_the_rank(monkeypatch, capsys):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(ZeroDivisionError):
        run_cli(lambda argv: 1 / 0, [])
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(SystemExit):
        run_cli(_failing_main, [])
    assert capsys.readouterr().err.startswith("[rank 3] error: thing not found")


def test_user_errors_keep_their_classic_base_classes():
    from fastvideo.config import ConfigError
    from fastvideo.data.cache import EmbeddingCacheMismatchError, EmbeddingCacheNotFoundError
    from fastvideo.data.prompts import EmptyPromptFileError, PromptFileNotFoundError
    from fastvideo.models import ModelNotFoundError
    from fastvideo.rewards import RewardWeightsError, RewardWeightsNotFoundError
    from fastvideo.training.metrics import MissingDependencyError

    for cls, classic in [(ConfigError, ValueError), (ModelNotFoundError, FileNotFoundError),
                         (RewardWeightsError, RuntimeError), (RewardWeightsNotFoundError, FileNotFoundError),
                         (EmbeddingCacheNotFoundError, FileNotFoundError), (EmbeddingCacheMismatchError, ValueError),
                         (PromptFileNotFoundError, FileNotFoundError), (EmptyPromptFileError, ValueError),
                         (MissingDependencyError, ImportError)]:
        assert issubclass(cls, UserError) and issubclass(cls, classic), cls


def test_every_module_entry_point_runs_through_run_cli():
    sources = {p: p.read_text(encoding="utf-8") for p in (ROOT / "fastvideo").rglob("*.py")}
    entry_points = [p for p, text in sources.items() if 'if __name__ == "__main__":' in text]
    assert len(entry_points) >= 10
    for path in entry_points:
        tail = sources[path].split('if __name__ == "__main__":', 1)[1]
        assert "run_cli(main)" in tail, f"{path.relative_to(ROOT)} does not run main through run_cli"


def _unsafe_loads(path: Path) -> list[int]:
    """Lines of ``torch.load(..., weights_only=False)`` calls (any ``*.load`` with that keyword)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
            and any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is False
                    for k in node.keywords)]


def test_no_unsafe_torch_load_remains():
    offenders = {str(p.relative_to(ROOT)): lines for p in (ROOT / "fastvideo").rglob("*.py")
                 if (lines := _unsafe_loads(p))}
    assert offenders == {}
