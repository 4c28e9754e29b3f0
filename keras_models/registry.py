"""One registry of model builders by name (as timm / keras-hub do).

Builders are plain functions returning an (uncompiled) `keras.Model`; they never touch files or the CLI.
Register with `@register_model("name", task="age"|"tw3_stage"|"orientation", description="...")`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

_BUILDER_MODULES = ("keras_models.mobilenet", "keras_models.resnext", "keras_models.efficientnet_lite",
                    "keras_models.orientation")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable
    task: str  # "age" (image[, sex] -> age months) or "tw3_stage" (bone crop[, bone id] -> stage probabilities)
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, task: str, description: str = ""):
    def deco(fn):
        if name in _REGISTRY and _REGISTRY[name].builder is not fn:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, fn, task, description or (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return deco


def _load_all() -> None:
    for mod in _BUILDER_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a builder module not written yet
            if exc.name != mod:
                raise


def list_models(task: str | None = None) -> list[ModelEntry]:
    _load_all()
    return [e for _, e in sorted(_REGISTRY.items()) if task is None or e.task == task]


def get_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise KeyError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[name]


def build_model(name: str, **kwargs):
    """Build a registered model by name; kwargs are the builder's knobs (input_size, width, ...)."""
    return get_entry(name).builder(**kwargs)
