"""Where an adapter's components come from: a ``ComponentSource`` loads each one lazily, by name.

- ``directory_source``: a local diffusers pipeline directory, checked first (``check_model_dir`` names
  the missing piece and the download command), components loaded with ``from_pretrained``;
- ``in_memory_source`` / ``tiny_source``: components built in memory (the tiny models of every family);
- ``component_builder``: within it, ``directory_source`` builds components from their configs only
  (the dry run's real-size models on fake tensors).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastvideo.errors import UserError


class ModelNotFoundError(FileNotFoundError, UserError):
    """A local model directory, or a file/subfolder inside it, is missing."""



Loader = Callable[[torch.dtype | None], Any]


class ComponentSource:
    """Builds named components on demand: one loader and one config reader per component name.

    A loader takes the wanted dtype (``None`` = the stored precision; tokenizers ignore it).
    """

    def __init__(self, loaders: dict[str, Loader], configs: dict[str, Callable[[], dict[str, Any]]],
                 description: str):
        self.loaders, self.configs, self.description = loaders, configs, description

    def load(self, name: str, dtype: torch.dtype | None) -> Any:
        if name not in self.loaders:
            raise KeyError(f"{self.description} has no component {name!r}")
        return self.loaders[name](dtype)

    def load_config(self, name: str) -> dict[str, Any]:
        """A component's configuration without loading its weights."""
        return dict(self.configs[name]())


RequiredFiles = Sequence[tuple[str, Sequence[str]]]
"""(relative path, patterns): the path must exist; if patterns are given, one must match inside it."""


def check_model_dir(path: str | os.PathLike[str] | None, required: RequiredFiles, command: str) -> Path:
    """Raise ``ModelNotFoundError`` naming the first missing piece of a diffusers directory.

    ``command`` is the download command the message tells the user to run.
    """
    hint = f"Download the model with:\n  {command}\nor point model.path (--model.path) at an existing copy."
    if path is None:
        raise ModelNotFoundError(f"model.path is not set (and model.tiny is false). {hint}")
    root = Path(path)
    if not root.is_dir():
        raise ModelNotFoundError(f"model directory not found: {root}. {hint}")
    for rel, patterns in required:
        target = root / rel
        if not target.exists():
            kind = "subfolder" if rel.endswith("/") else "file"
            raise ModelNotFoundError(f"incomplete model directory {root}: missing {kind} '{rel}'. {hint}")
        if patterns and not any(any(True for _ in target.glob(pattern)) for pattern in patterns):
            raise ModelNotFoundError(f"incomplete model directory {root}: '{rel}' holds none of "
                                     f"{list(patterns)}. {hint}")
    return root


def download_command(repo_id: str, path: str | os.PathLike[str] | None, default_dir: str) -> str:
    """The exact command that fetches ``repo_id`` into the configured (or default) directory."""
    return f"huggingface-cli download {repo_id} --local-dir {path or default_dir}"


MODEL_WEIGHTS = ("*.safetensors", "*.bin")


def directory_source(path: str | os.PathLike[str] | None, components: dict[str, tuple[Any, str]],
                     required: RequiredFiles, command: str) -> ComponentSource:
    """Check a local diffusers pipeline directory, then load components with ``from_pretrained``.

    ``components`` maps a name to (class, subfolder); the class is a diffusers model, a
    transformers model or a tokenizer (the dtype goes to models only).
    """
    builder = _COMPONENT_BUILDER.get()
    if builder is not None:  # configs only: weight and tokenizer files are not needed
        required = [(rel, patterns) for rel, patterns in required
                    if not patterns or any(pattern.endswith("config.json") for pattern in patterns)]
    root = str(check_model_dir(path, required, command))

    def loader(cls: Any, subfolder: str) -> Loader:
        def load(dtype: torch.dtype | None) -> Any:
            if builder is not None:
                return builder(cls, root, subfolder, dtype)
            kwargs: dict[str, Any] = {}
            if dtype is not None and _is_diffusers_model(cls):
                kwargs["torch_dtype"] = dtype
            elif dtype is not None and _is_transformers_model(cls):
                kwargs["dtype"] = dtype
            return cls.from_pretrained(root, subfolder=subfolder, **kwargs)
        return load

    def config_reader(cls: Any, subfolder: str) -> Callable[[], dict[str, Any]]:
        return lambda: dict(cls.load_config(root, subfolder=subfolder))

    loaders = {name: loader(cls, sub) for name, (cls, sub) in components.items()}
    configs = {name: config_reader(cls, sub) for name, (cls, sub) in components.items()
               if _is_diffusers_model(cls)}
    return ComponentSource(loaders, configs, f"model directory {root}")


ComponentBuilder = Callable[[Any, str, str, "torch.dtype | None"], Any]
"""``build(cls, root, subfolder, dtype)``: a component of a pipeline directory without its weights."""
_COMPONENT_BUILDER: contextvars.ContextVar[ComponentBuilder | None] = contextvars.ContextVar(
    "component_builder", default=None)


@contextlib.contextmanager
def component_builder(build: ComponentBuilder) -> Iterator[None]:
    """Within: ``directory_source`` requires only the config files and builds components with ``build``.

    The dry run (``fastvideo.dryrun``) uses it to build real-size models from their configs on fake
    tensors through each adapter's own ``from_config``.
    """
    token = _COMPONENT_BUILDER.set(build)
    try:
        yield
    finally:
        _COMPONENT_BUILDER.reset(token)


def _is_diffusers_model(cls: Any) -> bool:
    from diffusers import ModelMixin

    return isinstance(cls, type) and issubclass(cls, ModelMixin)


def _is_transformers_model(cls: Any) -> bool:
    from transformers import PreTrainedModel

    return isinstance(cls, type) and issubclass(cls, PreTrainedModel)


def tiny_source(kind: str, seed: int = 0) -> ComponentSource:
    """Components of the tiny ``kind`` model built in memory (see ``fastvideo.models.tiny``)."""
    from fastvideo.models.tiny import tiny_builders, tiny_component_configs

    return in_memory_source(tiny_builders(kind, seed), tiny_component_configs(kind), f"tiny {kind} model")


def in_memory_source(builders: dict[str, Callable[[], Any]], configs: dict[str, dict[str, Any]],
                     description: str) -> ComponentSource:
    """Components made by ``builders`` (name -> () -> component) on each load, cast to the wanted dtype, with
    their ``configs`` (name -> config dict): the tiny models of every family."""

    def loader(build: Callable[[], Any]) -> Loader:
        def load(dtype: torch.dtype | None) -> Any:
            value = build()
            if dtype is None or not isinstance(value, nn.Module) or _module_dtype(value) == dtype:
                return value
            return value.to(dtype)
        return load

    def config_reader(config: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return lambda: dict(config)

    return ComponentSource({name: loader(build) for name, build in builders.items()},
                           {name: config_reader(config) for name, config in configs.items()}, description)


def _module_dtype(module: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in module.parameters()), None)
