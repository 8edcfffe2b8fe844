"""The dry run's fake world: fake tensors, a fake process group of N ranks, and weightless components.

- ``fake_world(world_size)``: ``torch.distributed`` is a ``fake`` process group of ``world_size`` ranks of
  which this process is rank 0 (collectives are no-ops), so FSDP2 shards exactly as on N GPUs.
- ``fake_tensors()``: inside, every new tensor is a ``FakeTensor`` (shapes, dtypes and strides are
  propagated through the real kernels' meta functions; nothing is allocated).
- ``build_component``: the ``component_builder`` of ``fastvideo.models.sources``: a diffusers or
  transformers model is built from its directory's ``config.json`` (on fake tensors inside the world),
  a scheduler is the real one, a tokenizer is a ``StandInTokenizer`` with the directory's
  ``model_max_length`` (tokenizer files are large and tokenization does not change any shape that
  matters: sequences are padded to a fixed length).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@contextlib.contextmanager
def fake_world(world_size: int) -> Iterator[Any]:
    """A fake ``world_size``-rank process group (this process is rank 0); yields its 1-D device mesh."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore  # registers the "fake" backend

    if dist.is_initialized():
        raise RuntimeError("the dry run builds its own (fake) process group: run it without torchrun")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield init_device_mesh("cpu", (world_size,))  # outside fake mode: the mesh holds real rank lists
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def fake_tensors() -> Iterator[None]:
    """Inside, every new tensor is a ``FakeTensor``; real tensors (schedule tables) may mix in.

    ``Module.to``/``_apply`` swaps fake parameters in place, which fails on them (weak references of the
    fake mode); inside, an ``_apply`` that changes nothing (``.to`` the device and dtype a module already
    has, as the adapters and peft do) returns the module untouched.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    original = nn.Module._apply

    def apply_unless_no_op(module: nn.Module, fn, recurse: bool = True):
        tensors = [*module.parameters(), *module.buffers()]
        if all(fn(t) is t for t in tensors):
            return module
        return original(module, fn, recurse)

    nn.Module._apply = apply_unless_no_op
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), _values_free_init():
            yield
    finally:
        nn.Module._apply = original


@contextlib.contextmanager
def _values_free_init() -> Iterator[None]:
    """Truncated-normal initialisation reads values back (not possible on fake tensors, and values do not
    matter there): a no-op inside the dry run."""
    import transformers.initialization as hf_init

    def keep(tensor, *args, **kwargs):
        return tensor

    saved = torch.nn.init.trunc_normal_, hf_init.TORCH_INIT_FUNCTIONS.get("trunc_normal_")
    torch.nn.init.trunc_normal_ = keep
    hf_init.TORCH_INIT_FUNCTIONS["trunc_normal_"] = keep
    try:
        yield
    finally:
        torch.nn.init.trunc_normal_ = saved[0]
        hf_init.TORCH_INIT_FUNCTIONS["trunc_normal_"] = saved[1]


def real_tensors():
    """Inside ``fake_tensors()``: real tensors again (integer bookkeeping such as the trained-step subsets)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    return unset_fake_temporarily()


class StandInTokenizer:
    """What the adapters call of a tokenizer, with the real ``model_max_length``: a token per word or symbol.

    Padding to ``max_length`` (as every adapter encodes) gives the real sequence shapes; the token ids
    themselves (1 for a word, 0 for padding) carry no meaning.
    """

    def __init__(self, model_max_length: int):
        self.model_max_length = int(model_max_length)
        self.pad_token_id = 0

    def __call__(self, texts: str | list[str], padding: Any = False, max_length: int | None = None,
                 truncation: bool = False, return_tensors: str | None = None, **_: Any) -> SimpleNamespace:
        single = isinstance(texts, str)
        rows = [[1] * len(re.findall(r"\w+|[^\w\s]", text)) for text in ([texts] if single else list(texts))]
        if truncation and max_length is not None:
            rows = [row[:max_length] for row in rows]
        width = max_length if padding == "max_length" and max_length else max(map(len, rows), default=0)
        masks = [[1] * len(row) + [0] * (width - len(row)) for row in rows]
        rows = [row + [0] * (width - len(row)) for row in rows]
        if return_tensors == "pt":  # real tensors: pipelines index with the mask's lengths (Wan, Qwen-Image)
            from transformers import BatchEncoding

            with real_tensors():
                return BatchEncoding({"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks)})
        return SimpleNamespace(input_ids=rows[0] if single else rows, attention_mask=masks[0] if single else masks)

    def batch_decode(self, ids: Any, **_: Any) -> list[str]:
        return ["" for _ in ids]


def build_probe_component(cls: Any, root: str, subfolder: str, dtype: torch.dtype | None) -> Any:
    """``build_component`` on real tensors with text encoders cut to one layer and a 64-token vocabulary (same
    output widths): encodes prompts for real where a pipeline's encoding depends on the data (Wan and
    Qwen-Image index by the prompt lengths the mask holds, which fake tensors do not know)."""
    from transformers import AutoConfig, PreTrainedModel

    if not (isinstance(cls, type) and issubclass(cls, PreTrainedModel)):
        return build_component(cls, root, subfolder, dtype)
    config = AutoConfig.from_pretrained(str(Path(root) / subfolder))
    for sub in (config, getattr(config, "text_config", None), getattr(config, "vision_config", None)):
        for key in ("num_layers", "num_hidden_layers", "depth", "num_decoder_layers"):
            if sub is not None and getattr(sub, key, None):
                setattr(sub, key, 1)
        if sub is not None and getattr(sub, "vocab_size", None):
            sub.vocab_size = 64
        if sub is not None and getattr(sub, "fullatt_block_indexes", None):
            sub.fullatt_block_indexes = [0]
    config._attn_implementation = "sdpa"
    with default_dtype(dtype or torch.float32):
        return cls(config)


def build_component(cls: Any, root: str, subfolder: str, dtype: torch.dtype | None) -> Any:
    """A component of the pipeline directory ``root`` built from its config only (see the module docstring)."""
    from diffusers import ModelMixin
    from diffusers.schedulers.scheduling_utils import SchedulerMixin
    from transformers import AutoConfig, PreTrainedModel

    folder = Path(root) / subfolder
    if isinstance(cls, type) and issubclass(cls, SchedulerMixin):
        with real_tensors():  # real tables: adapters read numbers from them
            return cls.from_pretrained(root, subfolder=subfolder)
    if not (isinstance(cls, type) and issubclass(cls, ModelMixin | PreTrainedModel)):  # a tokenizer class
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        return StandInTokenizer(settings.get("model_max_length", 77))
    with default_dtype(dtype or torch.float32):  # built in the wanted dtype: fake parameters cannot be cast
        if issubclass(cls, ModelMixin):
            return cls.from_config(cls.load_config(root, subfolder=subfolder))
        config = AutoConfig.from_pretrained(str(folder))
        config._attn_implementation = "sdpa"
        return cls(config)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def local_bytes(tensors: Any) -> int:
    """Bytes this rank holds of ``tensors`` (a module's parameters/buffers, or tensors; DTensor: its shard)."""
    if isinstance(tensors, nn.Module):
        tensors = [*tensors.parameters(), *tensors.buffers()]
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        total += local.numel() * local.element_size()
    return total
