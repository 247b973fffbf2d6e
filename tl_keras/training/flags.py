"""absl flag definitions for the training CLIs, generated from the config dataclasses.

Every dataclass field becomes a flag of the same name, default, type and help (the
field's ``metadata["help"]``, the one place a training flag's help is written; see
:mod:`tl_keras.training.config`); :func:`config_from_flags` turns parsed flags back
into the frozen dataclass. Only the CLI modules call these.
"""
from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

from tl_keras.utils import console

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
                from tl_keras.training.config import ConfigError
                raise ConfigError(f"--{field.name}={','.join(value)}: not a list of numbers")
        values[field.name] = value
    return config_cls(**values, **extra)


class FlagfileError(ValueError):
    """A ``--flagfile`` that cannot be read (message: one line)."""


def _is_flagfile(arg: str) -> bool:
    return arg.startswith(("--flagfile=", "-flagfile="))


def _flagfile_lines(path: str, stack: tuple) -> list[str]:
    """The flag lines of ``path`` with its includes expanded in place (absl's syntax)."""
    if os.path.abspath(path) in stack:
        raise FlagfileError(f"{path}: includes itself (via {' -> '.join(stack)})")
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as e:
        where = f" (included from {stack[-1]})" if stack else ""
        raise FlagfileError(f"--flagfile={path}{where}: {e.strerror}") from None
    out = []
    for line in lines:
        if line.isspace() or line.startswith(("#", "//")):
            continue
        if _is_flagfile(line):
            include = os.path.expanduser(line.split("=", 1)[1].strip())
            beside = os.path.join(os.path.dirname(path), include)
            # Relative to the including file, so experiments run from any folder; a path
            # that only exists relative to the working folder (absl's rule) still works.
            if not os.path.isabs(include) and (os.path.exists(beside)
                                               or not os.path.exists(include)):
                include = beside
            out += _flagfile_lines(include, stack + (os.path.abspath(path),))
        else:
            out.append(line.strip())
    return out


def expand_flagfiles(argv: list[str]) -> list[str]:
    """Replace each ``--flagfile`` of ``argv`` by the flags it holds, includes resolved
    relative to the including file (absl resolves them relative to the working folder).

    Raises:
      FlagfileError: a flagfile is missing or includes itself.
    """
    out, rest = list(argv[:1]), list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            return out + [arg] + rest
        if arg in ("--flagfile", "-flagfile") and rest:
            arg = "--flagfile=" + rest.pop(0)
        if _is_flagfile(arg):
            out += _flagfile_lines(os.path.expanduser(arg.split("=", 1)[1]), ())
        else:
            out.append(arg)
    return out


def run_app(main) -> None:
    """``absl.app.run(main)`` with the flagfiles expanded first (see :func:`expand_flagfiles`)."""
    from absl import app
    try:
        argv = expand_flagfiles(sys.argv)
    except FlagfileError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    app.run(main, argv=argv)


def run_cli(fn, prog: str) -> None:
    """Run ``fn``; expected errors (bad flags or data, OS and TensorFlow errors) become
    one line ``prog: error: ...`` naming the file and the problem, exit status 1
    (see :func:`tfrecords_tools.errors.run_cli`)."""
    from tfrecords_tools.errors import run_cli as run_one_line
    run_one_line(prog, fn)


def config_main(config_cls, validate, runner: str):
    """``main(argv)`` of a CLI that runs one frozen config (pretrain, finetune).

    Args:
      config_cls: the config dataclass whose flags the CLI defined.
      validate: ``config -> meta``, run before TensorFlow loads (one-line failures).
      runner: name in ``tl_keras.training`` of ``config -> result`` (imported late,
        because importing it loads TensorFlow).
    """
    from absl import app

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        verbosity = console.set_verbosity(tensorflow=False)

        def run():
            config = config_from_flags(config_cls)
            validate(config)
            console.load_tensorflow(verbosity)
            import tl_keras.training
            print(f"done: {getattr(tl_keras.training, runner)(config)}")
        run_cli(run, "tl_keras." + runner.removeprefix("run_"))
    return main
