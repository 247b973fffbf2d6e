"""Run independent training jobs in worker processes, each with one TensorFlow thread.

A small network (the quickstart's 64 px compact one) leaves much of a 2-core CPU idle
when one process runs it with two threads: its ops are too small to split well, and the
Python, tracing, input and evaluation work between them is serial. Two processes with one
thread each keep both cores busy (measured in docs/decoders.md). That is a CPU measure: on
a machine with a GPU the workers keep TensorFlow's thread defaults and let GPU memory grow
as needed (TensorFlow would otherwise give all of it to the first process). Each job's
output goes to its own log file, so the console shows one progress line instead of
interleaved epochs.
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import sys
from typing import Callable, Sequence

from tl_common import console
from tl_common import workers as worker_processes
from tl_keras.models import machine
from tl_common.cli import UserError
from tl_common.progress import Progress

#: Set to 1 in every worker on a CPU-only machine: TensorFlow's thread pools, and OpenMP's
#: should a library use it.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
#: Set in every worker on a machine with a GPU: several processes share its memory.
GPU_VARIABLES = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}
#: Seconds between polls of the finished-item count.
POLL_SECONDS = 2.0


class JobsFailed(UserError):
    """Jobs raised errors; the message names the first one and its log."""


def run_jobs(jobs: Sequence[tuple[Callable, tuple]], workers: int, log_dir: str, desc: str,
             unit: str, done: Callable[[], int], total: int | None = None) -> None:
    """Run ``fn(*args)`` for every ``(fn, args)`` in ``jobs``.

    With ``workers`` <= 1 the jobs run here, one after the other, printing as usual.
    Otherwise up to ``workers`` spawned processes run them, each TensorFlow-single-threaded
    on a CPU-only machine (:func:`worker_environment`), job ``i`` writing its stdout and stderr to ``log_dir/job<i>.log``; the console shows
    progress as counted by ``done()`` (e.g. finished runs on disk) out of ``total``.

    Args:
      jobs: picklable module-level functions with picklable arguments.
      workers: processes at once.
      log_dir: folder of the per-job logs.
      desc: what the progress line counts, e.g. ``fine-tuning``.
      unit: the counted item, e.g. ``run``.
      done: how many items are finished (read between polls).
      total: items expected (default: ``len(jobs)``).

    Raises:
      JobsFailed: a job failed; names the job's log and the error (after every job ended,
        so finished work is kept and a rerun resumes).
    """
    if workers <= 1:
        for fn, args in jobs:
            fn(*args)
        return
    os.makedirs(log_dir, exist_ok=True)
    logs = [os.path.join(log_dir, f"job{i}.log") for i in range(len(jobs))]
    print(f"{desc}: {len(jobs)} jobs in {workers} processes; logs in {log_dir}/", flush=True)
    # Spawned (no forked TensorFlow state) and bound to this process as the conversion's
    # workers are: they die with it, and SIGTERM / Ctrl-C here kills them at once (a rerun
    # resumes every run from its last checkpoint).
    pool = futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(os.getpid(),))
    try:
        with worker_processes.stop_on_signals():
            pending = {pool.submit(_logged, fn, args, log): log
                       for (fn, args), log in zip(jobs, logs)}
            errors = _watch(pending, desc, unit, done, total or len(jobs))
    except BaseException:
        worker_processes.stop_pool(pool)
        raise
    pool.shutdown()
    if errors:
        log, error = errors[0]
        raise JobsFailed(f"{desc}: {len(errors)} of {len(jobs)} jobs failed; first: "
                           f"{type(error).__name__}: {error} (log: {log})")


def _watch(pending: dict, desc: str, unit: str, done: Callable[[], int],
           total: int) -> list[tuple[str, BaseException]]:
    """Show progress until every future ended; return (log, error) of the failed ones."""
    errors, seen = [], done()
    with Progress(total, desc, unit, initial=seen) as progress:
        remaining = set(pending)
        while remaining:
            ended, remaining = futures.wait(remaining, timeout=POLL_SECONDS)
            for future in ended:
                if future.exception() is not None:
                    errors.append((pending[future], future.exception()))
            now = done()
            if now > seen:
                progress.update(now - seen)
                seen = now
    return errors


def worker_environment() -> dict[str, str]:
    """The variables a worker sets before TensorFlow starts: one intra-op and one inter-op
    thread where TensorFlow trains on the CPU, GPU memory growth where it has a GPU
    (``machine.gpus`` lists physical devices: it starts no runtime, so the thread settings
    still apply)."""
    if machine.gpus():
        return dict(GPU_VARIABLES)
    return {name: "1" for name in THREAD_VARIABLES}


def _init_worker(parent_pid: int) -> None:
    """Pool initializer: :func:`worker_environment` (read by TensorFlow's runtime when it
    starts, i.e. before the first op); die with the parent."""
    console.import_tensorflow_silently()  # its start-up notices are not the console's
    os.environ.update(worker_environment())
    worker_processes.init_worker(parent_pid)


def _logged(fn: Callable, args: tuple, log: str):
    """Run ``fn(*args)`` with this process's stdout and stderr (file descriptors included,
    so TensorFlow's C++ messages too) appended to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            return fn(*args)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
