"""bench_learning's options: each builds a valid trainer config, and the paired AWM/GRPO ablation differs
from DanceGRPO's GRPO in the objective alone."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from tests.bench_loader import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_learning")


def test_every_option_builds_a_config_with_its_seed_and_budget(bench, tmp_path):
    for option in bench.OPTIONS:
        cfg = bench.run_config(option, 3, 2.5, tmp_path / option, [])
        assert cfg.train.seed == 3 and cfg.train.max_minutes == 2.5
        assert cfg.output_dir == str(tmp_path / option)
    assert bench.run_config("nft", 0, 1, tmp_path, []).grpo.objective == "nft"
    assert bench.run_config("nft", 0, 1, tmp_path, []).sampler.sde_type == "ode"


def test_awm_sde_differs_from_dance_only_in_the_objective(bench, tmp_path):
    dance = asdict(bench.run_config("dance", 0, 1, tmp_path, []))
    awm = asdict(bench.run_config("awm_sde", 0, 1, tmp_path, []))
    assert awm["grpo"].pop("objective") == "awm" and dance["grpo"].pop("objective") == "grpo"
    assert awm == dance
    assert awm["sampler"]["sde_type"] == "dance" and awm["sampler"]["init_same_noise"] is True
