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

from tl_keras.training.config import ConfigError


def define_config_flags(config_cls, overrides: dict | None = None, skip=(),
                        flag_values=flags.FLAGS, module_name: str | None = None) -> None:
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

    Raises:
      ValueError: a field has no help text.
    """
    overrides = overrides or {}
    if module_name is None:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        module_name = sys.argv[0] if caller == "__main__" else caller  # as absl names it
    fv = dict(flag_values=flag_values, module_name=module_name)
    for field in dataclasses.fields(config_cls):
        if field.name in skip or field.name in flag_values:
            continue
        default = overrides.get(field.name, field.default)
        help_ = field.metadata.get("help")
        if not help_:
            raise ValueError(f"{config_cls.__name__}.{field.name} has no help text "
                             "(dataclasses.field(metadata={'help': ...}))")
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
    for field in dataclasses.fields(config_cls):
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
