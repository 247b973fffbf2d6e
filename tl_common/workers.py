"""Worker processes that never outlive their parent, and clean stops on signals (the
conversion's workers and the quickstart's training jobs, ``tl_keras.studies.parallel``).

A worker is spawned (TensorFlow is not fork-safe) and watches its parent: on
Linux the kernel sends it SIGKILL when the parent dies (``PR_SET_PDEATHSIG``),
elsewhere, and as a second guard, a thread exits the worker within a second of
its parent's pid changing. So a ``kill -9`` of the parent leaves no orphan that
keeps writing into the output folder. SIGTERM and SIGINT of the parent raise
``Stopped`` in it; ``stop_pool`` then kills the workers at once instead of
waiting for their jobs to finish.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time

from tl_common import console

_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 1.0


class Stopped(KeyboardInterrupt):
    """The parent process received SIGTERM or SIGINT (``signum``)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)


def _die_with_parent_linux() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)  # no cleanup wanted: the parent's rerun removes temp debris
        time.sleep(WATCH_SECONDS)


def init_worker(parent_pid: int) -> None:
    """Runs first in every worker: die with the parent; leave Ctrl-C to the parent; with
    the parent's console quiet (``TF_CPP_MIN_LOG_LEVEL`` set above 0, inherited), load
    TensorFlow silently now, since the notices it prints while loading come before any
    log setting applies (tl_common.console)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent_linux()
    if os.getppid() != parent_pid:  # the parent died before the guard was set
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="watch-parent").start()
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") != "0":
        console.import_tensorflow_silently()


def make_pool(workers: int) -> cf.ProcessPoolExecutor | None:
    """A pool of ``workers`` spawned processes bound to this one (None when <= 1)."""
    if workers <= 1:
        return None
    return cf.ProcessPoolExecutor(max_workers=workers,
                                  mp_context=multiprocessing.get_context("spawn"),
                                  initializer=init_worker, initargs=(os.getpid(),))


def stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Kill the workers now and drop pending work (after a signal or a failure)."""
    # The executor offers no public way to kill running workers before Python 3.14
    # (terminate_workers); its process table is the only handle on them.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    for process in processes:  # gone before the caller removes their temporary files
        with contextlib.suppress(Exception):
            process.join(timeout=5)
    pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def stop_on_signals():
    """Within the block SIGTERM (like SIGINT) raises ``Stopped`` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Stopped(signum)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
