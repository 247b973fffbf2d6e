"""Shared CLI plumbing of evaluate / report / predict.

Each CLI owns a private ``absl.flags.FlagValues`` (so the modules, and those of
other packages, can be imported into one process, e.g. the test run, without
clashing on the global ``FLAGS``); expected errors become one line on stderr.
"""
from __future__ import annotations

import sys

from absl import flags

from tl_common import console


def parse_flags(flag_values: flags.FlagValues, argv, usage: str,
                allow_positional: bool = False, tensorflow: bool = False):
    """Parse ``argv`` into ``flag_values`` (with ``--verbosity``, and apply it).

    ``tensorflow``: the CLI uses TensorFlow (loaded quietly, ``tl_common.console``).

    Returns:
      The positional arguments, or an exit code: 0 after printing help,
      2 after a one-line flag error.
    """
    argv = list(sys.argv if argv is None else argv)
    console.define_verbosity(flag_values)
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
        print(usage.strip() + "\n\nflags:\n" + flag_values.get_help())
        return 0
    flag_values.unparse_flags()  # defaults again: main() may run twice in one process
    try:
        rest = flag_values(argv)[1:]
    except flags.Error as e:
        print(f"{argv[0]}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if rest and not allow_positional:
        print(f"{argv[0]}: error: unexpected arguments {rest}", file=sys.stderr)
        return 2
    console.set_verbosity(flag_values, tensorflow)
    return rest


def run_cli(prog: str, fn) -> int:
    """Call ``fn``; an expected error becomes ``prog: error: ...`` and exit code 1.

    Expected errors are bad inputs (missing files, wrong shapes, unknown
    options) and OS / TensorFlow / SimpleITK errors (read-only or full disk):
    the message names the file and the problem, so a traceback would only hide
    it (:func:`tl_common.cli.run_cli`).
    """
    from tl_common.cli import run_cli as run_one_line

    def run():
        try:
            fn()
        except KeyError as e:  # a field missing from a JSON or CSV input
            raise ValueError(str(e)) from None
    try:
        run_one_line(prog, run)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def floats(values) -> tuple[float, ...]:
    """absl list flag (strings) -> tuple of floats, with a clear error."""
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ValueError(f"expected numbers, got {list(values)}") from None
