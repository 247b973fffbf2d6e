"""Shared plumbing of the weight CLIs: private absl flag sets, one-line errors."""
from __future__ import annotations

import sys

from absl import flags

from tl_common import console

from tl_keras.weights.report import WeightLoadError

#: Errors that are the user's input, reported as one line without a traceback.
USER_ERRORS = (WeightLoadError, ValueError, FileNotFoundError, OSError)


def parse(flag_values: flags.FlagValues, argv, usage: str):
    """Parse ``argv`` into ``flag_values``; returns positional args, or an exit code.

    Each CLI owns a private ``FlagValues`` so the modules can be imported together (and
    called from tests) without clashing on the global ``FLAGS``.
    """
    argv = list(sys.argv if argv is None else argv)
    console.define_verbosity(flag_values)
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
        print(usage + "\n\n" + flag_values.get_help())
        return 0
    flag_values.unparse_flags()  # back to defaults: main() may run more than once per process
    try:
        rest = flag_values(argv)[1:]
    except flags.Error as e:
        print(f"{argv[0]}: error: {e}", file=sys.stderr)
        return 2
    console.set_verbosity(flag_values)
    return rest


def fail(prog: str, error: Exception) -> int:
    """Print ``error`` as a single line on stderr and return the exit code 1."""
    message = " ".join(str(error).split())
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1

