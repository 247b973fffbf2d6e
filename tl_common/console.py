"""A quiet console by default: the tools' own output, warnings and errors only.

TensorFlow writes, from every process, C++ notices that say nothing about the run on
a CPU machine (oneDNN is on, CUDA drivers not found, ``cuInit`` failed, CPU
instructions it was not built for) and Python INFO records (``Sharding callback
duration`` at every checkpoint save). absl's ``--verbosity`` (``-v``) decides:

- below 0 (absl's default, -1): TensorFlow's C++ log is off (``TF_CPP_MIN_LOG_LEVEL=3``:
  its real errors still surface as Python exceptions) and Python loggers show warnings
  and errors;
- 0 or more: everything, as TensorFlow would print it (``TF_CPP_MIN_LOG_LEVEL=0``, INFO).

A ``TF_CPP_MIN_LOG_LEVEL`` already in the environment is kept at the default
verbosity. The C++ level is read when TensorFlow loads, so the CLIs call
:func:`set_verbosity` right after parsing flags and before importing TensorFlow;
worker processes inherit it through the environment. TensorFlow's first notices
(oneDNN, CUDA drivers) are written while it loads, before its C++ log reads any
setting, so the quiet mode loads TensorFlow with the stderr file descriptor pointed
at ``/dev/null`` (an import error still raises, and ``-v 0`` shows everything).
"""
from __future__ import annotations

import logging
import os
import sys

from absl import flags
from absl import logging as _absl_logging  # also defines --verbosity on FLAGS

#: absl's default --verbosity (WARNING).
QUIET = -1
_applied = [QUIET]  # the verbosity set_verbosity applied last (for load_tensorflow)


def set_verbosity(flag_values: flags.FlagValues = flags.FLAGS, tensorflow: bool = True) -> int:
    """Apply the parsed ``--verbosity`` to TensorFlow's C++ and Python logs (module docstring).

    absl's ``app.run`` turns an unset ``--verbosity`` into 0 (INFO); here only a value
    the user gave counts, anything else is the quiet -1.

    Args:
      flag_values: parsed flags holding ``verbosity`` (see :func:`define_verbosity`).
      tensorflow: the caller uses TensorFlow: when quiet, load it now, silently.

    Returns:
      The verbosity applied.
    """
    flag = flag_values["verbosity"]
    verbosity = flag.value if flag.present else QUIET
    if flag_values is flags.FLAGS:
        _absl_logging.set_verbosity(verbosity)  # the Python root logger's level
    if verbosity >= 0:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.INFO if verbosity >= 0
                                             else logging.WARNING)
    _applied[0] = verbosity
    if tensorflow:
        load_tensorflow(verbosity)
    return verbosity


def load_tensorflow(verbosity: int | None = None) -> None:
    """Import TensorFlow now: silently when ``verbosity`` < 0 (module docstring).

    CLIs that check their flags before loading TensorFlow call this after the checks;
    ``verbosity`` defaults to the one :func:`set_verbosity` applied.
    """
    verbosity = _applied[0] if verbosity is None else verbosity
    if verbosity < 0 and "tensorflow" not in sys.modules:
        import_tensorflow_silently()


def import_tensorflow_silently() -> None:
    """``import tensorflow`` with file descriptor 2 on ``/dev/null`` (module docstring)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def define_verbosity(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Give a private ``FlagValues`` the ``--verbosity`` (``-v``) that absl defines on
    the global ``FLAGS``."""
    if "verbosity" not in flag_values:
        flags.DEFINE_integer("verbosity", QUIET, "log level: -1 warnings and errors only, "
                             "0 also INFO records and TensorFlow's C++ notices",
                             short_name="v", flag_values=flag_values)
