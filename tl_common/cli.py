"""The command-line convention of every tool (docs/architecture.md, docs/reliability.md).

Every CLI module defines its flags on a private ``absl.flags.FlagValues`` (so CLIs can be
imported into one process, e.g. the tests, without clashing), writes a ``run(flag_values,
args)`` that builds a frozen config and calls the library, and ends with::

    main = cli.make_main("tl_keras.evaluate", FLAGS, __doc__, run, tensorflow=True)

    if __name__ == "__main__":
        sys.exit(main())

Exit status: 0 done, 1 a user error (``prog: error: <one line>``: bad input, bad flag
values or data, a full or read-only disk), 2 bad usage (unknown flag, unparsable value,
unreadable ``--flagfile``, unexpected arguments), 128 + the signal number when stopped.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import threading
from typing import Callable

from absl import flags
from absl import logging as absl_logging

from tl_common import console

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour codes (Keras errors)
_HELP = ("-h", "--help", "--helpshort", "--helpfull")


class UserError(Exception):
    """Base of the errors a user can fix: a CLI prints ``prog: error: <message>``, exit 1.

    The message names the file or flag and the problem, on one line.
    """

    exit_code = 1


class UsageError(UserError):
    """The command line itself is wrong (exit status 2)."""

    exit_code = 2


class FlagfileError(UsageError, ValueError):
    """A ``--flagfile`` that cannot be read (message: one line)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the input names is not there, or holds nothing usable (message:
    one line naming it)."""


class FlagError(UserError, ValueError):
    """A flag value or combination of flags that cannot be used, or a file a flag names
    that holds the wrong thing (message: one line naming the flag or file; exit 1)."""


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
    return " ".join(_ANSI.sub("", text).split())


# OS errors a user fixes although they name no file (a full, read-only or forbidden disk).
_USER_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM})


def expected_error(error: BaseException, more: tuple = ()) -> bool:
    """True for an error a CLI prints as one line: a :class:`UserError`, an OS error that
    names a file (or a full / read-only disk), a TensorFlow I/O error (file not found,
    permission denied, data loss), a SimpleITK read error, or one of ``more``. Anything
    else (``ValueError``, ``RuntimeError``, ... raised by a bug) keeps its traceback."""
    if isinstance(error, (UserError, *more)):
        return True
    if isinstance(error, OSError):
        return bool(error.filename) or error.errno in _USER_ERRNOS
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, (tf.errors.NotFoundError,
                                             tf.errors.PermissionDeniedError,
                                             tf.errors.DataLossError)):
        return True
    return ("SimpleITK" in sys.modules and type(error) is RuntimeError
            and str(error).startswith("Exception thrown in SimpleITK")
            and ("ReadImage" in str(error) or "ImageFileReader" in str(error)))


@contextlib.contextmanager
def _sigterm_interrupts():
    """Within the block SIGTERM raises KeyboardInterrupt (``signum`` set), so a stopped
    run cleans up (atomic writes drop their temporary files) and says so in one line."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        error = KeyboardInterrupt()
        error.signum = signum
        raise error
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_cli(prog: str, fn, expected: tuple = ()):
    """Call ``fn()``; expected errors become ``prog: error: ...`` and exit status 1
    (2 for a :class:`UsageError`); ``expected`` adds exception types to the usual ones.

    SIGTERM / SIGINT (KeyboardInterrupt, ``workers.Stopped``) print one line and
    exit with 128 + the signal number; unexpected errors keep their traceback.
    """
    try:
        with _sigterm_interrupts():
            return fn()
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", signal.SIGINT))
        print(f"{prog}: stopped by {signal.Signals(signum).name}; temporary files removed, "
              "rerun the same command to resume", file=sys.stderr)
        sys.exit(128 + signum)
    except Exception as e:  # noqa: BLE001 - filtered by expected_error
        if not expected_error(e, expected):
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 1) if isinstance(e, UserError) else 1)


def _is_flagfile(arg: str) -> bool:
    return arg.startswith(("--flagfile=", "-flagfile="))


def _flagfile_lines(path: str, stack: tuple) -> list[str]:
    """The flag lines of ``path`` with its includes expanded in place (absl's syntax)."""
    if os.path.abspath(path) in stack:
        raise FlagfileError(f"{path}: includes itself (via {' -> '.join(stack)})")
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError as e:
        where = f" (included from {stack[-1]})" if stack else ""
        raise FlagfileError(f"--flagfile={path}{where}: {e.strerror}") from None
    out = []
    for number, raw in enumerate(lines, 1):
        # UTF-8; a stray byte of another encoding (Latin-1 'é') only matters outside comments.
        line = raw.decode("utf-8", "replace")
        if line.isspace() or line.startswith(("#", "//")):
            continue
        if "\ufffd" in line and b"\xef\xbf\xbd" not in raw:
            text = raw.decode("utf-8", "backslashreplace").strip()[:60]
            raise FlagfileError(f"--flagfile={path}: line {number} is not UTF-8 text "
                                f"({text}); save the file as UTF-8")
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


def _usage_error(prog: str, message: str) -> int:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def make_main(prog: str, flag_values: flags.FlagValues, usage: str,
              run: Callable[[flags.FlagValues, list], int | None], *,
              tensorflow: bool = False, positional: bool = False,
              expected: tuple = ()) -> Callable[..., int]:
    """The ``main(argv=None) -> int`` of a CLI: parse, quiet the console, run, map errors.

    Args:
      prog: the name in error lines (``prog: error: ...``).
      flag_values: the CLI's private flags (``--verbosity`` / ``-v`` and
        ``--only_check_args`` are added here).
      usage: printed above the flags by ``--help`` (the module docstring).
      run: ``run(flag_values, args)`` builds the frozen config from the parsed flags and
        calls the library; returns the exit code (None = 0). A CLI that checks its
        flags before loading TensorFlow calls ``console.load_tensorflow()`` itself.
      tensorflow: load TensorFlow (silently unless ``-v 0``) before ``run``.
      positional: accept positional arguments (``args``); otherwise they are a usage error.
      expected: more exception types printed as one line with exit 1 (besides those of
        :func:`expected_error`: :class:`UserError`, OS and TensorFlow I/O errors naming a
        file, SimpleITK read errors).

    Returns:
      ``main``; ``argv`` defaults to ``sys.argv``. The exit code is returned, never raised,
      so CLIs can be called from Python and from tests.
    """
    console.define_verbosity(flag_values)
    if "only_check_args" not in flag_values:
        flags.DEFINE_bool("only_check_args", False, "Parse the flags (and --flagfile) and "
                          "exit.", flag_values=flag_values)

    def main(argv=None) -> int:
        argv = list(sys.argv if argv is None else argv)
        if any(a in _HELP for a in argv[1:]):
            print(usage.strip() + "\n\nflags:\n" + flag_values.get_help())
            return 0
        flag_values.unparse_flags()  # defaults again: main() may run twice in one process
        try:
            args = flag_values(expand_flagfiles(argv))[1:]
        except (flags.Error, FlagfileError) as e:
            return _usage_error(prog, str(e))
        if args and not positional:
            return _usage_error(prog, f"unexpected arguments {args}")
        if flag_values.only_check_args:
            return 0
        verbosity = console.set_verbosity(flag_values, tensorflow=False)
        absl_logging.set_verbosity(verbosity)  # the Python root logger's level
        if tensorflow:
            console.load_tensorflow(verbosity)
        try:
            code = run_cli(prog, lambda: run(flag_values, args), expected)
        except SystemExit as e:
            return int(e.code or 0)
        return int(code or 0)
    return main


def private_flags(define: Callable[[flags.FlagValues], None],
                  required: tuple = ()) -> flags.FlagValues:
    """A CLI's private ``FlagValues`` holding the flags ``define(flag_values)`` defines,
    those in ``required`` marked required."""
    flag_values = flags.FlagValues()
    define(flag_values)
    for name in required:
        flags.mark_flag_as_required(name, flag_values=flag_values)
    return flag_values


def floats(values) -> tuple[float, ...]:
    """absl list flag (strings) -> tuple of floats, with a clear error."""
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise FlagError(f"expected numbers, got {list(values)}") from None
