"""Test configuration. Offline hub flags must be set before anything imports huggingface_hub."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-optin", action="store_true", default=False, help="run opt-in (full-size) tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-optin"):
        return
    skip = pytest.mark.skip(reason="opt-in test: pass --run-optin")
    for item in items:
        if "optin" in item.keywords:
            item.add_marker(skip)
