"""absl flag definitions for the training CLIs, generated from the config dataclasses.

Every dataclass field becomes a flag of the same name, default, type and help (the
field's ``metadata["help"]``, the one place a training flag's help is written; see
:mod:`tl_keras.training.config`); :func:`config_from_flags` turns parsed flags back
into the frozen dataclass. Only the CLI modules call these.
"""
from __future__ import annotations

import dataclasses
import sys

from absl import flags

from tl_keras.training import tasks
from tl_keras.training.config import ConfigError, PretrainConfig, flag_fields


def _caller() -> str:
    """The module calling our caller, as absl names it (``sys.argv[0]`` for ``__main__``)."""
    caller = sys._getframe(2).f_globals.get("__name__", "")
    return sys.argv[0] if caller == "__main__" else caller


def define_config_flags(config_cls, overrides: dict | None = None, skip=(),
                        flag_values=flags.FLAGS, module_name: str | None = None,
                        extra_help: dict | None = None) -> None:
    """Define one flag per field of ``config_cls`` (default from the dataclass, help from
    the field's ``metadata["help"]``).

    Args:
      config_cls: a config dataclass whose every field has help text.
      overrides: defaults that differ from the dataclass's, by field name.
      skip: field names to leave out; fields already defined are left as they are.
      flag_values: where to define them (tests use a fresh ``absl.flags.FlagValues``).
      module_name: module the flags belong to, whose ``--help`` lists them (default: the
        caller; absl would otherwise file them under this module and ``--help`` of the
        CLI would list none).
      extra_help: text appended to a field's help, by field name (the CLI's choices).

    Raises:
      ValueError: a field has no help text.
    """
    overrides, extra_help = overrides or {}, extra_help or {}
    fv = dict(flag_values=flag_values, module_name=module_name or _caller())
    for field in flag_fields(config_cls):
        if field.name in skip or field.name in flag_values:
            continue
        default = overrides.get(field.name, field.default)
        help_ = field.metadata.get("help")
        if not help_:
            raise ValueError(f"{config_cls.__name__}.{field.name} has no help text "
                             "(dataclasses.field(metadata={'help': ...}))")
        help_ += extra_help.get(field.name, "")
        if field.type in ("bool", bool):
            flags.DEFINE_bool(field.name, default, help_, **fv)
        elif field.type in ("int", int):
            flags.DEFINE_integer(field.name, default, help_, **fv)
        elif field.type in ("float", float):
            flags.DEFINE_float(field.name, default, help_, **fv)
        elif field.type in ("tuple", tuple):
            flags.DEFINE_list(field.name, list(default), help_, **fv)
        else:
            flags.DEFINE_string(field.name, default, help_, **fv)


def config_from_flags(config_cls, flag_values=flags.FLAGS, **extra):
    """The frozen ``config_cls`` from the parsed flags (lists -> tuples of numbers)."""
    values = {}
    for field in flag_fields(config_cls):
        if field.name in extra or field.name not in flag_values:
            continue
        value = flag_values[field.name].value
        if field.type in ("tuple", tuple):
            cast = int if field.name == "lr_boundaries" else float
            try:
                value = tuple(cast(v) for v in value)
            except ValueError:
                raise ConfigError(f"--{field.name}={','.join(value)}: not a list of numbers")
        values[field.name] = value
    return config_cls(**values, **extra)


def define_pretrain_flags(flag_values=flags.FLAGS, module_name: str | None = None) -> None:
    """The flags of ``pretrain``: :class:`PretrainConfig`'s, ``--task`` listing the source
    tasks, and one per field of every source task's options class."""
    module_name = module_name or _caller()
    define_config_flags(PretrainConfig, flag_values=flag_values, module_name=module_name,
                        extra_help={"task": ": " + " | ".join(tasks.source_tasks())})
    for options in tasks.options_classes().values():
        define_config_flags(options, flag_values=flag_values, module_name=module_name)


def pretrain_config_from_flags(flag_values=flags.FLAGS) -> PretrainConfig:
    """The :class:`PretrainConfig` of the parsed ``pretrain`` flags, ``task_options``
    built from the selected task's flags.

    Raises:
      ConfigError: ``--task`` is not a source task, or a flag of another task's options
        was given a value other than its default.
    """
    config = config_from_flags(PretrainConfig, flag_values)
    if config.task not in tasks.source_tasks():
        raise ConfigError(f"--task={config.task!r} is not one of "
                          f"{', '.join(tasks.source_tasks())}")
    for name, options in tasks.options_classes().items():
        if name == config.task:
            continue
        for field in flag_fields(options):
            if field.name in flag_values and flag_values[field.name].value != field.default:
                raise ConfigError(f"--{field.name} applies only to --task={name}")
    options = tasks.get(config.task).options
    if options is None:
        return config
    return dataclasses.replace(config, task_options=config_from_flags(options, flag_values))
