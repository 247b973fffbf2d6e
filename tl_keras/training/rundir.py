"""Claiming a run directory: one training run at a time, and only with its own flags.

``claim_run_dir`` takes the exclusive lock of ``--model_dir``
(``tl_common.lock``; a lock left by a dead process is taken over with a
message) and compares the flags recorded in ``flags.json`` with the new ones:
a run with other flags is refused unless ``--overwrite``. Flags that may
legitimately change between a run and its resume (``RESUME_FLAGS``: logging and
checkpoint cadence, the length of the run, the folder's own path) are not
compared. See docs/training.md, "Reliability".

``--overwrite`` deletes only what a run of ours wrote: the folder holds a marker
(``MARKER``) with the entries that were there before the first run
(``foreign``, never deleted) and those the runs wrote (``written``). The run
folder may not be, contain or sit inside an input (``--data_dir``, the
``--init_from`` files), and a refused run leaves nothing behind: a folder it
created is removed again, the marker of a run that wrote nothing too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import os
import shutil

from tl_keras.training.config import ConfigError, TrainConfig
from tl_keras.training.validation import resolve
from tl_keras.weights.spec import InitSpec
from tl_common import lock, paths
from tl_common.io import write_json_atomic

FLAGS_JSON = "flags.json"
#: The kernel gradient each convolution shape of the run took (runs.record_kernel_gradients).
KERNEL_GRADIENTS_FILE = "kernel_gradients.json"
# A resume may change these: logging, checkpoint cadence and console output do not
# change what is computed, and --max_steps / --epochs extend (or finish) a run.
RESUME_FLAGS = frozenset({"model_dir", "overwrite", "log_every", "checkpoint_every",
                          "keep_checkpoints", "keep_checkpoints_after_done", "progress",
                          "verbose", "quiet", "max_steps", "epochs"})
MARKER = ".tl_keras_run.json"
MARKER_FORMAT = "tl_keras.run"
# The top-level entries a run of ours writes (names and fnmatch patterns): how the
# entries of a run killed before it recorded them, or of a run older than the
# marker, are recognised.
RUN_OUTPUTS = (FLAGS_JSON, "result.json", "class_weights.json", KERNEL_GRADIENTS_FILE,
               "checkpoints", "tensorboard",
               ".workers", "export", "encoder_last", "encoder_best", "eval_*", ".tmp-*")


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


def _is_run_output(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_OUTPUTS)


def _entries(folder: str) -> set[str]:
    return set(os.listdir(folder)) - {lock.LOCK_NAME, MARKER}


def read_marker(folder: str) -> dict | None:
    """The folder's run marker, or None when it has none (or an unreadable one)."""
    try:
        with open(os.path.join(folder, MARKER)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return None
    return {"format": MARKER_FORMAT, "foreign": sorted(marker.get("foreign") or []),
            "written": sorted(marker.get("written") or [])}


def _marker_for(folder: str) -> dict:
    """The marker, or a new one: what is there now is foreign, except the outputs of a
    run older than the marker (a folder with ``flags.json``)."""
    marker = read_marker(folder)
    if marker is not None:
        return marker
    present = _entries(folder)
    ours = {n for n in present if _is_run_output(n)} if FLAGS_JSON in present else set()
    return {"format": MARKER_FORMAT, "foreign": sorted(present - ours), "written": sorted(ours)}


def _written(folder: str, marker: dict) -> list[str]:
    """What the runs of this folder wrote: the recorded entries and the run outputs that
    appeared since the first run (a killed run could not record them)."""
    foreign = set(marker["foreign"])
    new = {n for n in _entries(folder) - foreign if _is_run_output(n)}
    return sorted(set(marker["written"]) | new)


def _remove_run(folder: str, marker: dict) -> list[str]:
    """Delete what runs of ours wrote; return the entries kept (not ours)."""
    for name in _written(folder, marker):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    marker["written"] = []
    return sorted(_entries(folder))


def check_flags(config, overwrite: bool, marker: dict | None = None) -> None:
    """Refuse (or with ``overwrite`` remove) a run in the folder with other flags (a
    training config compared as it runs: :func:`tl_keras.training.validation.resolve`).

    ``overwrite`` removes only what runs of ours wrote (``marker``, see the module
    docstring); anything else in the folder stays and is named.
    """
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
        kept = _remove_run(config.model_dir, marker or _marker_for(config.model_dir))
        if kept:
            print(f"{config.model_dir}: kept {len(kept)} entr{'y' if len(kept) == 1 else 'ies'} "
                  f"not written by a run: {', '.join(kept[:10])}", flush=True)


def _inputs(config) -> list[tuple[str, str]]:
    """(flag, path) of the inputs a run folder must keep away from."""
    out = [("--data_dir", getattr(config, "data_dir", ""))]
    init_from = getattr(config, "init_from", "") or ""
    try:
        spec = InitSpec.parse(init_from) if init_from else None
    except ValueError:  # refused with its own message by the validation
        spec = None
    if spec is not None and spec.path and spec.kind in ("dir", "taskonomy", "imagenet"):
        path = spec.path
        if not os.path.exists(path):  # a checkpoint prefix: its folder
            path = os.path.dirname(os.path.abspath(path))
        out.append(("--init_from", path))
    elif spec is not None and spec.kind == "keras_hub" and os.path.isdir(spec.path):
        out.append(("--init_from", spec.path))  # a local preset folder (not a preset name)
    return out


def refuse_input_overlap(flag: str, folder: str, config) -> None:
    """ConfigError when output ``folder`` is, contains or sits inside an input of
    ``config`` (its ``--data_dir`` or ``--init_from`` files)."""
    paths.refuse_overlap(flag, folder, _inputs(config), ConfigError)


def _leave(folder: str, marker: dict, created: bool) -> None:
    """Record what this run wrote; a run that wrote nothing leaves nothing behind."""
    written = _written(folder, marker)
    if written:
        marker["written"] = written
        write_json_atomic(os.path.join(folder, MARKER), marker)
        return
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, MARKER))
    if created and not _entries(folder):
        shutil.rmtree(folder, ignore_errors=True)  # only the lock, released just after


#: Run directories this process holds (real paths): a nested claim of one is a no-op, so
#: a caller may hold a run directory around ``run_finetune`` (which claims it too).
_HELD: set[str] = set()


@contextlib.contextmanager
def claim_run_dir(config):
    """Hold ``config.model_dir`` for the block: lock it, check its flags. Reentrant within
    a process (an inner claim of a directory this process holds does nothing).

    Raises:
      ConfigError: another live process holds the folder; it is a file, a dangling
        link or not writable; it is, contains or sits inside an input; or it holds
        a run with other flags and ``config.overwrite`` is off.
    """
    folder = config.model_dir
    key = os.path.realpath(folder)
    if not is_chief_from_env() or key in _HELD:  # the chief holds it for the cluster
        yield
        return
    paths.check_output_folder(folder, "--model_dir", ConfigError)
    refuse_input_overlap("--model_dir", folder, config)
    created = not os.path.exists(folder)
    try:
        held = lock.acquire(folder, what=folder)
    except lock.LockError as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"{folder}: cannot write the run directory "
                          f"({e.strerror or e})") from None
    with held:
        marker = _marker_for(folder)
        _HELD.add(key)
        try:
            check_flags(config, getattr(config, "overwrite", False), marker)
            yield
        finally:
            _HELD.discard(key)
            _leave(folder, marker, created)
