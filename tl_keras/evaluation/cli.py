"""Shared CLI plumbing of evaluate / report / predict: expected errors become one line."""
from __future__ import annotations

import sys


def fail_cleanly(prog: str, fn, *args, **kwargs):
    """Call ``fn``; turn an expected error into ``prog: error: ...`` and exit code 1.

    Expected errors are bad inputs (missing files, wrong shapes, unknown
    options): the message names the file and the problem, so a traceback
    would only hide it.
    """
    from tfrecords_tools.errors import InputError
    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, InputError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(1)


def floats(values) -> tuple[float, ...]:
    """absl list flag (strings) -> tuple of floats, with a clear error."""
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ValueError(f"expected numbers, got {list(values)}") from None
