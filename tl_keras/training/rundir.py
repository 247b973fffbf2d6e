"""Claiming a run directory: one training run at a time, and only with its own flags.

``claim_run_dir`` takes the exclusive lock of ``--model_dir``
(``tl_common.lock``; a lock left by a dead process is taken over with a
message) and compares the flags recorded in ``flags.json`` with the new ones:
a run with other flags is refused unless ``--overwrite``, which empties the
folder first. Flags that may legitimately change between a run and its resume
(``RESUME_FLAGS``: logging and checkpoint cadence, the length of the run, the
folder's own path) are not compared. See
docs/training.md, "Reliability".
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil

from tl_keras.training.config import ConfigError, TrainConfig
from tl_keras.training.validation import resolve
from tl_common import lock

FLAGS_JSON = "flags.json"
# A resume may change these: logging, checkpoint cadence and console output do not
# change what is computed, and --max_steps / --epochs extend (or finish) a run.
RESUME_FLAGS = frozenset({"model_dir", "overwrite", "log_every", "checkpoint_every",
                          "keep_checkpoints", "keep_checkpoints_after_done", "progress",
                          "verbose", "quiet", "max_steps", "epochs"})


def is_chief_from_env() -> bool:
    """The chief of a multi-worker run per ``TF_CONFIG`` (True outside one); mirrors
    ``strategy.is_chief`` without loading TensorFlow. Only the chief owns the folder."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        return True
    task = tf_config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if not kind:
        return True
    has_chief = "chief" in (tf_config.get("cluster") or {})
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def _normal(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _flat(flags_: dict) -> dict:
    """The flags with a task's options (``task_options``) as flags of their own."""
    flags_ = dict(flags_)
    options = flags_.pop("task_options", None)
    return {**flags_, **options} if isinstance(options, dict) else flags_


def flag_differences(recorded: dict, config) -> list[str]:
    """``--name: old -> new`` for each flag recorded in both and not in ``RESUME_FLAGS``
    (a task's options count as flags)."""
    new = _flat(_normal(dataclasses.asdict(config)))
    old = _flat(_normal(recorded))
    out = []
    for name in sorted(set(old) & set(new) - RESUME_FLAGS):
        a, b = old[name], new[name]
        if name == "data_dir" and a and b:
            a, b = os.path.realpath(a), os.path.realpath(b)
        if a != b:
            out.append(f"--{name}: {old[name]} -> {new[name]}")
    return out


def _empty(folder: str, keep: str) -> None:
    for name in os.listdir(folder):
        if name == keep:
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def check_flags(config, overwrite: bool) -> None:
    """Refuse (or with ``overwrite`` empty) a run directory holding other flags (a
    training config compared as it runs: :func:`tl_keras.training.validation.resolve`)."""
    if isinstance(config, TrainConfig):
        config = resolve(config)
    path = os.path.join(config.model_dir, FLAGS_JSON)
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            recorded = json.load(f)["flags"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    diff = ["flags.json unreadable"] if recorded is None else flag_differences(recorded, config)
    if diff and not overwrite:
        raise ConfigError(f"{config.model_dir} holds a run with other flags "
                          f"({'; '.join(diff)}); use a new --model_dir, or --overwrite to "
                          "replace it")
    if diff:
        print(f"{config.model_dir}: --overwrite: removing the previous run "
              f"({'; '.join(diff)})", flush=True)
        _empty(config.model_dir, keep=lock.LOCK_NAME)


#: Run directories this process holds (real paths): a nested claim of one is a no-op, so
#: a caller may hold a run directory around ``run_finetune`` (which claims it too).
_HELD: set[str] = set()


@contextlib.contextmanager
def claim_run_dir(config):
    """Hold ``config.model_dir`` for the block: lock it, check its flags. Reentrant within
    a process (an inner claim of a directory this process holds does nothing).

    Raises:
      ConfigError: another live process holds the folder; it is a file or not
        writable; or it holds a run with other flags and ``config.overwrite`` is off.
    """
    folder = config.model_dir
    key = os.path.realpath(folder)
    if not is_chief_from_env() or key in _HELD:  # the chief holds it for the cluster
        yield
        return
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"{folder}: --model_dir is an existing file, not a folder")
    try:
        held = lock.acquire(folder, what=folder)
    except lock.LockError as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"{folder}: cannot write the run directory "
                          f"({e.strerror or e})") from None
    with held:
        check_flags(config, getattr(config, "overwrite", False))
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
