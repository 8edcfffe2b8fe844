"""Test configuration. Offline hub flags must be set before anything imports huggingface_hub.

The README's test command runs the suite on ``-n auto`` pytest-xdist workers (one per core, at most
``MAX_WORKERS``). Each worker then gets its share of the cores as torch threads, set here before torch is
imported, so two workers on two cores do not fight over four threads; the slow tests are dealt out first so
that the longest ones do not start last.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_WORKERS = 8
"""``-n auto`` never starts more workers than this (each holds torch, diffusers and transformers)."""

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-optin", action="store_true", default=False, help="run opt-in (full-size) tests")


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core, capped at ``MAX_WORKERS``."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # xdist workers collect (identically); the controller deals
        items.sort(key=lambda item: "slow" not in item.keywords)  # stable: slow tests first, order kept
    if config.getoption("--run-optin"):
        return
    skip = pytest.mark.skip(reason="opt-in test: pass --run-optin")
    for item in items:
        if "optin" in item.keywords:
            item.add_marker(skip)
