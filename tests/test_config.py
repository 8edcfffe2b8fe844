"""Typed configuration: loading, overrides, unknown keys, validation, saving, --help, presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from fastvideo.config import (
    Config,
    ConfigError,
    RewardTermConfig,
    TrainConfig,
    config_to_dict,
    format_help,
    load_config,
    parse_args,
    save_config,
    split_overrides,
    validate,
)
from fastvideo.utils import attribute_docstrings

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(p for p in (REPO / "configs").rglob("*") if p.suffix in (".yaml", ".yml", ".toml"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults, precedence, override syntax --------------------------------------------------------


def test_defaults_are_a_real_config_dataclass():
    cfg = load_config()
    assert type(cfg) is Config
    assert type(cfg.rewards.terms[0]) is RewardTermConfig
    assert cfg == Config()


def test_precedence_default_then_file_then_overrides(tmp_path):
    path = write(tmp_path, "run.yaml", "train:\n  lr: 2e-5\ngrpo:\n  group_size: 8\n")
    from_file = load_config(path)
    assert from_file.train.lr == 2e-5 and from_file.grpo.group_size == 8
    assert from_file.sampler.num_steps == Config().sampler.num_steps  # untouched default
    both = load_config(path, ["--train.lr", "3e-5"])
    assert both.train.lr == 3e-5 and both.grpo.group_size == 8


@pytest.mark.parametrize(
    "overrides",
    [["--grpo.clip_range", "2e-4"], ["--grpo.clip_range=2e-4"], ["grpo.clip_range=2e-4"]],
)
def test_three_override_forms(overrides):
    assert load_config(None, overrides).grpo.clip_range == 2e-4


def test_override_values_are_parsed_like_yaml():
    cfg = load_config(
        None,
        [
            "--model.lora_targets", "[to_q, to_k]",
            "--data.embeddings_dir", "null",
            "--model.tiny", "true",
            "--train.adam_betas", "[0.8, 0.95]",
            "--model.height", "64",
        ],
    )  # fmt: skip
    assert cfg.model.lora_targets == ["to_q", "to_k"]
    assert cfg.data.embeddings_dir is None
    assert cfg.model.tiny is True
    assert cfg.train.adam_betas == [0.8, 0.95]
    assert cfg.model.height == 64 and isinstance(cfg.model.height, int)


def test_string_fields_keep_the_text_verbatim():
    cfg = load_config(
        None, ["--output_dir", "2024", "--model.path", "./data/flux", "--checkpoint.resume", "auto"]
    )
    assert cfg.output_dir == "2024" and cfg.model.path == "./data/flux" and cfg.checkpoint.resume == "auto"
    assert load_config(None, ["--model.path", "null"]).model.path is None


def test_bare_bool_flag_means_true_and_other_bare_flags_fail():
    assert load_config(None, ["--logging.wandb"]).logging.wandb is True
    with pytest.raises(ConfigError, match="missing value for --train.lr"):
        load_config(None, ["--train.lr"])


def test_split_overrides_and_stray_arguments():
    assert split_overrides(["--a.b", "1", "--c=2", "d.e=x=y", "--output-dir", "o"]) == [
        ("a.b", "1"),
        ("c", "2"),
        ("d.e", "x=y"),
        ("output_dir", "o"),
    ]
    with pytest.raises(ConfigError, match="unexpected argument 'stray'"):
        load_config(None, ["stray"])


def test_yaml_file_reads_exponent_floats(tmp_path):
    path = write(tmp_path, "f.yaml", "rewards:\n  terms:\n    - {name: hps, kwargs: {scale: 1e-3}}\n")
    assert load_config(path).rewards.terms[0].kwargs == {"scale": 1e-3}


# --- unknown keys and type errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bad", "suggestion"),
    [
        ("grpo:\n  clip_rnge: 1.0e-4\n", "grpo.clip_rnge", "grpo.clip_range"),
        ("optim:\n  lr: 1.0e-4\n", "optim.lr", "train.lr"),
        ("train:\n  group_size: 4\n", "train.group_size", "grpo.group_size"),
        ("rewards:\n  terms:\n    - {name: a}\n    - {name: b, wieght: 2}\n", "rewards.terms.1.wieght",
         "rewards.terms.1.weight"),
    ],
)  # fmt: skip
def test_unknown_key_in_file_names_key_and_suggestion(tmp_path, text, bad, suggestion):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "bad.yaml", text))
    message = str(info.value)
    assert f"'{bad}'" in message and f"did you mean '{suggestion}'" in message
    assert "bad.yaml" in message


def test_all_unknown_keys_of_a_file_are_reported_together(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "bad.yaml", "model:\n  nmae: x\nsampler:\n  stpes: 3\n"))
    assert "'model.nmae'" in str(info.value) and "'sampler.stpes'" in str(info.value)


@pytest.mark.parametrize(
    ("override", "bad", "suggestion"),
    [
        (["--grpo.clip_rnge", "1e-4"], "grpo.clip_rnge", "grpo.clip_range"),
        (["grpo.clip_rnge=1e-4"], "grpo.clip_rnge", "grpo.clip_range"),
        (["--modle.name", "sd"], "modle.name", "model.name"),
        (["--rewards.terms.0.wieght", "2"], "rewards.terms.0.wieght", "rewards.terms.0.weight"),
        (["--rewards.terms", "[{name: hps, wieght: 2}]"], "rewards.terms.0.wieght", "rewards.terms.0.weight"),
    ],
)
def test_unknown_override_names_key_and_suggestion(override, bad, suggestion):
    with pytest.raises(ConfigError) as info:
        load_config(None, override)
    assert f"unknown config key '{bad}'" in str(info.value)
    assert f"'{suggestion}'" in str(info.value)


def test_key_below_a_plain_value_is_unknown():
    with pytest.raises(ConfigError, match="model.height.x"):
        load_config(None, ["--model.height.x", "1"])


def test_reward_kwargs_accept_any_keys(tmp_path):
    path = write(
        tmp_path,
        "k.yaml",
        "rewards:\n  terms:\n    - {name: hps, kwargs: {ckpt_dir: ./hps_ckpt, any: {x: 1}}}\n",
    )
    cfg = load_config(path, ["--rewards.terms.0.kwargs.new_key", "7"])
    assert cfg.rewards.terms[0].kwargs == {"ckpt_dir": "./hps_ckpt", "any": {"x": 1}, "new_key": 7}


@pytest.mark.parametrize(
    ("override", "field", "expected", "value"),
    [
        (["--train.lr", "abc"], "train.lr", "float", "abc"),
        (["--train.max_iterations", "1.5"], "train.max_iterations", "int", "1.5"),
        (["--model.tiny", "maybe"], "model.tiny", "bool", "maybe"),
        (["--model.lora_targets", "7"], "model.lora_targets", "list[str]", "7"),
        (["--train.adam_betas", "[0.9, x]"], "train.adam_betas.1", "float", "x"),
    ],
)
def test_type_error_names_field_type_and_value(override, field, expected, value):
    with pytest.raises(ConfigError) as info:
        load_config(None, override)
    message = str(info.value)
    assert f"'{field}'" in message and f"expected {expected}" in message and value in message


def test_type_error_in_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "t.yaml", "model:\n  height: tall\n"))
    assert (
        "'model.height'" in str(info.value)
        and "expected int" in str(info.value)
        and "tall" in str(info.value)
    )


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- validation -----------------------------------------------------------------------------------

INVALID = [
    ("train.lr", "0"),
    ("train.lr", "-1e-5"),
    ("grpo.group_size", "1"),
    ("grpo.timestep_fraction", "0"),
    ("grpo.timestep_fraction", "1.5"),
    ("sampler.eta", "-0.1"),
    ("sampler.shift", "0"),
    ("sampler.num_steps", "1"),
    ("grpo.clip_range", "0"),
    ("sampler.sde_type", "langevin"),
    ("grpo.advantage_scope", "batch"),
    ("rewards.aggregation", "mean"),
    ("rewards.nan_policy", "ignore"),
    ("train.mixed_precision", "fp16"),
    ("model.dtype", "int8"),
    ("model.name", ""),
    ("model.name", "  "),
    ("model.height", "0"),
    ("model.width", "-8"),
    ("model.num_frames", "0"),
    ("model.lora_rank", "-1"),
    ("checkpoint.keep_last", "0"),
    ("train.prompts_per_iteration", "0"),
    ("train.train_batch_size", "0"),
    ("train.rollout_batch_size", "-1"),
    ("train.updates_per_iteration", "0"),
    ("rewards.terms", "[]"),
    ("rewards.terms.0.weight", ".nan"),
    ("rewards.terms.0.weight", ".inf"),
    ("train.ema_decay", "1.0"),
    ("train.ema_decay", "-0.5"),
    ("grpo.objective", "ppo"),
    ("grpo.forward_timesteps", "-1"),
    ("grpo.nft_beta", "0"),
    ("grpo.nft_old_decay_rate", "-0.001"),
    ("grpo.nft_old_decay_max", "1.0"),
    ("train.passes_per_rollout", "0"),
]


@pytest.mark.parametrize(("field", "value"), INVALID)
def test_invalid_value_names_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"--{field}", value])
    assert f"{field}:" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("grpo.timestep_fraction", "1.0"),
        ("sampler.eta", "0"),
        ("train.ema_decay", "0.999"),
        ("model.lora_rank", "0"),
    ],
)
def test_boundary_values_are_valid(field, value):
    load_config(None, [f"--{field}", value])


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["--train.lr", "0", "--grpo.group_size", "1", "--sampler.sde_type", "x"])
    message = str(info.value)
    assert "train.lr:" in message and "grpo.group_size:" in message and "sampler.sde_type:" in message


def test_validate_checks_a_config_built_in_python():
    assert validate(Config()) == Config()
    with pytest.raises(ConfigError, match="train.lr: must be > 0"):
        validate(Config(train=TrainConfig(lr=0.0)))


def test_choices_are_the_tuples_of_the_implementing_code():
    from fastvideo.config import rules
    from fastvideo.distributed import MIXED_PRECISIONS
    from fastvideo.grpo.advantage import ADVANTAGE_SCOPES
    from fastvideo.grpo.forward import OBJECTIVES
    from fastvideo.grpo.plan import ODE_SOLVERS
    from fastvideo.grpo.sde import SDE_TYPES
    from fastvideo.grpo.window import STRATEGIES
    from fastvideo.models.base import DTYPES, FIRST_FRAME_SCENES
    from fastvideo.rewards.reward_set import AGGREGATIONS, NAN_POLICIES

    expected = {
        "model.dtype": DTYPES, "model.first_frame_scenes": FIRST_FRAME_SCENES, "sampler.sde_type": SDE_TYPES,
        "sampler.window_strategy": STRATEGIES,
        "sampler.ode_solver": ODE_SOLVERS, "grpo.advantage_scope": ADVANTAGE_SCOPES, "grpo.objective": OBJECTIVES,
        "rewards.aggregation": AGGREGATIONS, "rewards.nan_policy": NAN_POLICIES,
        "train.mixed_precision": MIXED_PRECISIONS,
    }  # fmt: skip
    assert rules._CHOICES.keys() == expected.keys()
    for key, choices in expected.items():
        assert rules._CHOICES[key] is choices, f"{key}: rules holds a copy, not the code's tuple"
        for value in choices:  # every value the code offers is a valid config value
            load_config(None, [f"--{key}", value])


def test_config_package_imports_one_way_and_stays_light():
    import ast
    import subprocess
    import sys

    package = REPO / "fastvideo" / "config"

    def imported(name: str) -> set[str]:
        tree = ast.parse((package / f"{name}.py").read_text(encoding="utf-8"))
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}

    assert not {m for m in imported("schema") if m.startswith("fastvideo")}
    assert not {m for m in imported("rules") if m.startswith("fastvideo.config")} - {"fastvideo.config.schema"}
    assert "fastvideo.config.loader" not in imported("rules")
    heavy = ("diffusers", "transformers", "open_clip", "wandb", "tensorboard")
    code = ("import sys, fastvideo.config; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]


# --- lists of dataclasses -------------------------------------------------------------------------


def test_reward_terms_from_yaml_and_item_overrides(tmp_path):
    path = write(
        tmp_path, "r.yaml", "rewards:\n  terms: [{name: hps, weight: 1.0}, {name: clip_score, weight: 0.5}]\n"
    )
    cfg = load_config(path, ["--rewards.terms.0.weight", "2", "--rewards.terms.1.threshold", "0.28"])
    assert [(t.name, t.weight, t.threshold) for t in cfg.rewards.terms] == [
        ("hps", 2.0, None),
        ("clip_score", 0.5, 0.28),
    ]
    assert all(type(t) is RewardTermConfig for t in cfg.rewards.terms)


def test_reward_terms_whole_list_replaced_and_appended():
    cfg = load_config(None, ["--rewards.terms", "[{name: hps}, {name: pickscore, weight: 0.3}]"])
    assert [(t.name, t.weight) for t in cfg.rewards.terms] == [("hps", 1.0), ("pickscore", 0.3)]
    appended = load_config(None, ["--rewards.terms.1.name", "clip_score"])
    assert [t.name for t in appended.rewards.terms] == ["brightness", "clip_score"]
    with pytest.raises(ConfigError, match="index 5 out of range"):
        load_config(None, ["--rewards.terms.5.weight", "1"])
    with pytest.raises(ConfigError, match="expected an index"):
        load_config(None, ["--rewards.terms.first.weight", "1"])


# --- files: round trip, TOML, base ----------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    cfg = load_config(
        None,
        [
            "--rewards.terms", "[{name: hps, weight: 0.7, threshold: 0.28, kwargs: {a: [1, 2]}}, {name: clip_score}]",
            "--train.lr", "3e-4", "--model.lora_targets", "[to_q]", "--model.path", "./data/flux",
            "--checkpoint.resume", "auto", "--output_dir", "outputs/x",
        ],
    )  # fmt: skip
    path = tmp_path / "out" / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)
    assert config_to_dict(cfg)["rewards"]["terms"][0]["kwargs"] == {"a": [1, 2]}


def test_toml_file(tmp_path):
    text = (
        'output_dir = "outputs/toml"\n[train]\nlr = 2e-5\n[sampler]\nsde_type = "cps"\n'
        '[[rewards.terms]]\nname = "hps"\nweight = 1.0\n[[rewards.terms]]\nname = "clip_score"\nweight = 0.5\n'
    )
    cfg = load_config(write(tmp_path, "run.toml", text))
    assert cfg.output_dir == "outputs/toml" and cfg.train.lr == 2e-5 and cfg.sampler.sde_type == "cps"
    assert [(t.name, t.weight) for t in cfg.rewards.terms] == [("hps", 1.0), ("clip_score", 0.5)]


def test_base_file_is_merged_first(tmp_path):
    write(tmp_path, "parent.yaml", "train:\n  lr: 1.0e-5\n  seed: 7\nmodel:\n  lora_targets: [a, b]\n")
    child = write(
        tmp_path, "child.yaml", "base: parent.yaml\ntrain:\n  lr: 3.0e-4\nmodel:\n  lora_targets: [c]\n"
    )
    cfg = load_config(child)
    assert cfg.train.lr == 3e-4 and cfg.train.seed == 7 and cfg.model.lora_targets == ["c"]


def test_base_cycle_and_bad_files(tmp_path):
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="include each other"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=".yaml, .yml or .toml"):
        load_config(write(tmp_path, "c.json", "{}"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "list.yaml", "- 1\n"))


# --- command line ---------------------------------------------------------------------------------


def test_parse_args_shortcuts(tmp_path):
    path = write(tmp_path, "run.yaml", "grpo:\n  group_size: 6\n")
    cfg = parse_args(
        ["--config", str(path), "--output_dir", "outputs/a", "--resume", "auto", "--train.lr=5e-6"]
    )
    assert cfg.grpo.group_size == 6 and cfg.output_dir == "outputs/a"
    assert cfg.checkpoint.resume == "auto" and cfg.train.lr == 5e-6


def _all_fields(cls: type, prefix: str = ""):
    for f in dataclasses.fields(cls):
        default = getattr(cls(), f.name)
        if dataclasses.is_dataclass(default):
            yield from _all_fields(type(default), prefix + f.name + ".")
        else:
            yield prefix + f.name, cls, f.name
            if f.name == "terms":
                yield from _all_fields(RewardTermConfig, prefix + "terms.N.")


def test_help_lists_every_field_with_type_default_and_docstring(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text == format_help()
    flat = " ".join(text.split())
    for key, cls, name in _all_fields(Config):
        doc = attribute_docstrings(cls)[name]
        assert doc, f"{key} has no docstring"
        assert f"--{key} " in text
        assert " ".join(doc.split()) in flat
    assert "--grpo.clip_range  (float, default: 0.0001)" in text
    assert "--model.path  (str | None, default: null)" in text


# --- repository files -----------------------------------------------------------------------------


def test_presets_exist():
    names = {p.name for p in CONFIG_FILES}
    assert {"flux_grpo.yaml", "flux_lora_grpo.yaml", "sd_grpo.yaml"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_file_loads_and_validates(path):
    cfg = load_config(path)
    prompt_file = REPO / cfg.data.prompt_file
    if cfg.data.validation_prompts and prompt_file.is_file():
        prompts = set(prompt_file.read_text(encoding="utf-8").splitlines())
        assert set(cfg.data.validation_prompts) <= prompts, "validation prompts must be in the prompt file"


def test_reference_hyperparameters():
    flux = load_config(REPO / "configs/flux_grpo.yaml")
    assert (flux.model.name, flux.model.path, flux.model.height, flux.model.width) == (
        "flux",
        "./data/flux",
        720,
        720,
    )
    assert (flux.grpo.group_size, flux.sampler.num_steps, flux.sampler.eta, flux.sampler.shift) == (
        12,
        16,
        0.3,
        3.0,
    )
    assert (flux.train.lr, flux.grpo.clip_range, flux.grpo.timestep_fraction) == (1e-5, 1e-4, 0.6)
    assert flux.data.embeddings_dir == "./data/rl_embeddings/flux" and flux.train.max_grad_norm == 1.0
    assert [(t.name, t.weight) for t in flux.rewards.terms] == [("hps", 1.0)]
    lora = load_config(REPO / "configs/flux_lora_grpo.yaml")
    assert (lora.model.lora_rank, lora.model.lora_alpha, lora.train.lr, lora.sampler.num_steps) == (
        128,
        256,
        3e-4,
        12,
    )
    assert lora.grpo.group_size == 12 and lora.model.path == "./data/flux"  # inherited from flux_grpo.yaml
    sd = load_config(REPO / "configs/sd_grpo.yaml")
    assert (sd.model.name, sd.model.path, sd.model.height) == ("sd", "./data/stable-diffusion-v1-4", 512)
    assert (sd.grpo.group_size, sd.sampler.num_steps, sd.sampler.eta, sd.model.guidance_scale) == (
        16,
        50,
        1.0,
        5.0,
    )
    assert sd.train.lr == 1e-5


def test_prompt_file_is_clean():
    lines = (REPO / "prompts.txt").read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    assert len(lines) >= 250
    assert all(line.strip() == line and line for line in lines)
    assert len(set(lines)) == len(lines)


def test_block_noise_rule_is_the_samplers_own():
    from fastvideo.config import Config, ConfigError, validate
    from fastvideo.grpo.block_noise import block_noise_problem
    from fastvideo.grpo.sampler import FlowSampler

    cfg = Config()
    cfg.sampler.noise_block, cfg.sampler.sde_type = 2, "flow_grpo"
    with pytest.raises(ConfigError, match="needs the 'dance' SDE"):
        validate(cfg)
    assert block_noise_problem(2, "dance") is None and block_noise_problem(1, "cps") is None

    class Model:
        paradigm = "flow"

    with pytest.raises(ValueError, match="needs the 'dance' SDE"):
        FlowSampler.for_model(Model(), 4, sde_type="cps", noise_block=2)


@pytest.mark.parametrize("objective", ["nft", "awm", "rft"])
def test_forward_objectives_reject_a_deterministic_rollout_from_shared_noise(objective):
    with pytest.raises(ConfigError, match="sampler.init_same_noise: .* all 12 samples of a group identical"):
        load_config(None, ["--grpo.objective", objective, "--sampler.sde_type", "ode"])
    with pytest.raises(ConfigError, match="sampler.init_same_noise: .*eta 0.0"):
        load_config(None, ["--grpo.objective", objective, "--sampler.eta", "0"])
    load_config(None, ["--grpo.objective", objective, "--sampler.sde_type", "ode", "--sampler.init_same_noise", "false"])
    load_config(None, ["--grpo.objective", objective])  # an SDE rollout differs within a group
    cfg = load_config(None, ["--grpo.objective", objective, "--grpo.forward_timesteps", "3", "--train.passes_per_rollout",
                             "2", "--grpo.drop_constant_groups", "true", "--sampler.init_same_noise", "false"])
    assert (cfg.grpo.forward_timesteps, cfg.train.passes_per_rollout, cfg.grpo.drop_constant_groups) == (3, 2, True)


def test_new_objective_fields_default_to_todays_grpo():
    cfg = Config()
    assert (cfg.grpo.objective, cfg.grpo.forward_timesteps, cfg.grpo.drop_constant_groups) == ("grpo", 0, False)
    assert (cfg.grpo.nft_beta, cfg.grpo.nft_old_decay_rate, cfg.grpo.nft_old_decay_max) == (1.0, 0.001, 0.5)
    assert cfg.train.passes_per_rollout == 1
    load_config(None, ["--sampler.sde_type", "ode"])  # grpo keeps accepting what it accepted (it trains nothing)
    with pytest.raises(ConfigError, match="grpo.forward_timesteps: used by the forward-process objectives"):
        load_config(None, ["--grpo.forward_timesteps", "4"])
