"""The command-line convention of every tool: expected errors are one line, never a traceback.

``prog: error: ...`` and exit status 1 for a user error (bad input, bad flags or data, a
full or read-only disk), 128 + the signal number when stopped (docs/reliability.md).
"""
from __future__ import annotations

import signal
import sys


class UserError(Exception):
    """Base of the errors a user can fix: a CLI prints ``prog: error: <message>``, exit 1.

    The message names the file or flag and the problem, on one line.
    """


def one_line(error: BaseException) -> str:
    """A CLI's one-line text for an expected error.

    ``OSError`` becomes ``FILE: problem`` (e.g. ``/out: Read-only file system``),
    a TensorFlow ``OpError`` its class and message without the op trace, the
    rest ``str(error)``; whitespace is collapsed to single spaces.
    """
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    elif hasattr(error, "op") and hasattr(error, "message"):  # tf.errors.OpError
        text = f"{type(error).__name__}: {error.message}"
    else:
        text = str(error)
    return " ".join(text.split())


def _expected(error: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, tf.errors.OpError):
        return True
    # RuntimeError: lock held, SimpleITK failures; ValueError: bad flags or data.
    return isinstance(error, (UserError, OSError, ValueError, RuntimeError))


def run_cli(prog: str, fn):
    """Call ``fn()``; expected errors become ``prog: error: ...`` and exit status 1.

    SIGTERM / SIGINT (KeyboardInterrupt, ``workers.Stopped``) print one line and
    exit with 128 + the signal number; unexpected errors keep their traceback.
    """
    try:
        return fn()
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", signal.SIGINT))
        print(f"{prog}: stopped by {signal.Signals(signum).name}; temporary files removed, "
              "rerun the same command to resume", file=sys.stderr)
        sys.exit(128 + signum)
    except Exception as e:  # noqa: BLE001 - filtered by _expected
        if not _expected(e):
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        sys.exit(1)
