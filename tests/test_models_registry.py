"""Adapter registry, conditioning-dict helpers and dtype resolution (no model is built here)."""

from __future__ import annotations

import pytest
import torch

from fastvideo.config import ModelConfig
from fastvideo.models import (
    available_adapters,
    build_adapter,
    cat_cond,
    register_adapter,
    repeat_cond,
    select_cond,
)
from fastvideo.models.base import resolve_dtype


def make_cond() -> dict[str, torch.Tensor]:
    return {"prompt_embeds": torch.arange(3 * 2 * 2).reshape(3, 2, 2).float(),
            "pooled_prompt_embeds": torch.arange(3 * 4).reshape(3, 4).float()}


def test_builtin_adapters_registered_and_unknown_name_lists_them():
    assert {"flux", "sd"} <= set(available_adapters())
    with pytest.raises(ValueError, match="flux.*sd"):
        build_adapter(ModelConfig(name="nope", tiny=True), "cpu")


def test_register_adapter_refuses_a_second_factory_under_one_name(monkeypatch):
    import fastvideo.models.registry as models

    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # leave the real registry untouched

    def factory(cfg, device):
        return None

    register_adapter("dummy-test", factory)
    register_adapter("dummy-test", factory)  # the same factory again is fine
    assert "dummy-test" in available_adapters()
    with pytest.raises(ValueError, match="already registered"):
        register_adapter("dummy-test", lambda cfg, device: None)


def test_select_cond_by_tensor_list_slice_and_int():
    cond = make_cond()
    picked = select_cond(cond, torch.tensor([2, 0]))
    assert torch.equal(picked["prompt_embeds"], cond["prompt_embeds"][[2, 0]])
    assert torch.equal(select_cond(cond, [1])["pooled_prompt_embeds"], cond["pooled_prompt_embeds"][1:2])
    assert select_cond(cond, 2)["prompt_embeds"].shape == (1, 2, 2)
    assert torch.equal(select_cond(cond, slice(1, 3))["pooled_prompt_embeds"], cond["pooled_prompt_embeds"][1:])


def test_cat_and_repeat_cond():
    cond = make_cond()
    joined = cat_cond([select_cond(cond, [0]), select_cond(cond, [1, 2])])
    assert all(torch.equal(joined[k], cond[k]) for k in cond)
    repeated = repeat_cond(cond, 2)
    # each prompt's row repeated consecutively: the G samples of a group are adjacent
    assert torch.equal(repeated["pooled_prompt_embeds"][:, 0], torch.tensor([0.0, 0.0, 4.0, 4.0, 8.0, 8.0]))
    with pytest.raises(ValueError, match="different keys"):
        cat_cond([cond, {"prompt_embeds": cond["prompt_embeds"]}])


def test_resolve_dtype():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))
