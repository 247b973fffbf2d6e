"""The registry of training tasks: one module per task in this package.

Each module defines ``TASK``, a :class:`TaskSpec`; every module here is registered
on import, so adding a task is one file (docs/extending.md). Every list of task
names (``--task`` choices and help, config validation) comes from here. Tasks can
also be registered from Python with :func:`register` (as the tests do).
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil

from tl_keras.training.config import PretrainConfig
from tl_keras.training.tasks.spec import (ENCODER_BEST, ENCODER_LAST, ExtraNetwork,
                                          StepContext, TaskSpec, export_encoder, no_check,
                                          plain_loss, refuse_unet, supervised)

_REGISTRY: dict[str, TaskSpec] = {}


def _option_names(task: TaskSpec) -> set[str]:
    return {f.name for f in dataclasses.fields(task.options)} if task.options else set()


def register(task: TaskSpec) -> TaskSpec:
    """Add ``task`` to the registry (its name and its option names must be new); return it.

    Raises:
      ValueError: the name is taken, or an option field has the name of a config field
        or of another task's option (each option is one ``pretrain`` flag).
    """
    if task.name in _REGISTRY:
        raise ValueError(f"task {task.name!r} is already registered")
    if task.options is not None and not dataclasses.is_dataclass(task.options):
        raise ValueError(f"task {task.name!r}: options must be a dataclass, got "
                         f"{task.options!r}")
    taken = {f.name: "PretrainConfig" for f in dataclasses.fields(PretrainConfig)}
    for other in _REGISTRY.values():
        taken.update(dict.fromkeys(_option_names(other), f"task {other.name!r}"))
    clash = sorted(_option_names(task) & set(taken))
    if clash:
        raise ValueError(f"task {task.name!r}: option {clash[0]!r} is already a flag of "
                         f"{taken[clash[0]]}")
    _REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove the task ``name`` (a KeyError names the registered ones)."""
    get(name)
    del _REGISTRY[name]


def get(name: str) -> TaskSpec:
    """The task ``name``; a KeyError naming the registered ones when there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; registered: {', '.join(_REGISTRY)}") from None


def source_tasks() -> tuple[str, ...]:
    """Names of the source tasks (the choices of ``pretrain --task``)."""
    return tuple(name for name, task in _REGISTRY.items() if task.source)


def weighted_tasks() -> tuple[str, ...]:
    """Names of the source tasks whose loss takes ``--class_weights``."""
    return tuple(name for name, task in _REGISTRY.items()
                 if task.source and task.class_weights is not None)


def options_classes() -> dict[str, type]:
    """Source task name -> its options class, for the tasks that have one (the
    ``pretrain`` CLI defines a flag per field)."""
    return {name: task.options for name, task in _REGISTRY.items()
            if task.source and task.options is not None}


def _register_modules() -> None:
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module != "spec":
            register(importlib.import_module(f"{__name__}.{module}").TASK)


_register_modules()

__all__ = ["ENCODER_BEST", "ENCODER_LAST", "ExtraNetwork", "StepContext", "TaskSpec",
           "export_encoder", "get", "no_check", "options_classes", "plain_loss", "refuse_unet",
           "register", "source_tasks", "supervised", "unregister", "weighted_tasks"]
