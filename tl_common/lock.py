"""Exclusive locks on output folders, shared by conversion and training.

One process at a time may write into a conversion ``--out_dir`` or a training
``--model_dir`` (see docs/conversion.md and docs/training.md, "Reliability").
The lock is a small file in the folder holding the owner's pid, host, start
time and command line. Mutual exclusion comes from ``fcntl.flock`` on that
file: the kernel releases it when the owner dies, however it dies (kill -9
included), so a lock left behind by a dead process is simply taken over, with
a message naming the dead owner. Where ``flock`` is unavailable (Windows,
some network file systems) the file's existence is the lock and a dead owner
is recognised by its pid on the same host.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys

try:
    import fcntl
except ImportError:  # Windows: existence of the lock file is the lock
    fcntl = None

from tl_common.cli import UserError

LOCK_NAME = ".lock"


class LockError(UserError, RuntimeError):
    """The folder is locked by another live process (message: one line)."""


def _owner_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "argv": " ".join(sys.argv)}


def _describe(owner: dict) -> str:
    if not owner:
        return "an unknown process"
    return (f"pid {owner.get('pid')} on {owner.get('host')} (started {owner.get('started')}: "
            f"{owner.get('argv', '')[:120]})")


def _read_owner(fd_or_path) -> dict:
    try:
        if isinstance(fd_or_path, int):
            os.lseek(fd_or_path, 0, os.SEEK_SET)
            text = os.read(fd_or_path, 65536).decode("utf-8", "replace")
        else:
            with open(fd_or_path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):
        return True  # exists but not ours, or unreadable: assume alive
    return True


def _try_flock(fd: int) -> bool:
    """True if the exclusive lock was taken, False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _acquire_flock(path: str, what: str) -> int:
    """Open and flock ``path``; the file must still be the one at ``path`` afterwards
    (a previous owner unlinks it on release, so a stale descriptor would lock nothing)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_flock(fd):
            owner = _read_owner(fd)
            os.close(fd)
            raise LockError(f"{what} is in use by {_describe(owner)}; wait for it to finish "
                            f"or stop it (lock file {path})")
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _acquire_exclusive_file(path: str, what: str) -> int:
    """Fallback without flock: create the file exclusively; a dead owner on this host
    is detected by its pid."""
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner.get("host") == socket.gethostname() and not _pid_alive(owner.get("pid")):
                print(f"{what}: taking over the lock left by {_describe(owner)}, which is no "
                      "longer running", file=sys.stderr, flush=True)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            raise LockError(f"{what} is in use by {_describe(owner)}; if that process is gone, "
                            f"delete {path}") from None


def acquire(folder: str, *, name: str = LOCK_NAME, what: str | None = None,
            quiet: bool = False) -> "FolderLock":
    """Take the exclusive lock ``folder/name`` (the folder is created if needed).

    Args:
      folder: the output folder to protect.
      name: lock file name (several independent locks may share a folder).
      what: how messages name the folder (default: the folder path).
      quiet: do not print the message when a stale lock is taken over.

    Returns:
      A ``FolderLock``; release it with ``release()`` or use it as a context manager.

    Raises:
      LockError: another live process holds the lock.
      OSError: the folder cannot be created or written (e.g. read-only, or a file).
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    what = what or folder
    fd = _acquire_flock(path, what) if fcntl is not None else \
        _acquire_exclusive_file(path, what)
    previous = _read_owner(fd)
    if previous and not quiet:
        print(f"{what}: taking over the lock left by {_describe(previous)}, "
              "which is no longer running", file=sys.stderr, flush=True)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(_owner_record()) + "\n").encode())
    os.fsync(fd)
    return FolderLock(path, fd)


def is_locked(folder: str, name: str = LOCK_NAME) -> bool:
    """True if a live process holds ``folder/name`` right now."""
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return False
    if fcntl is None:
        owner = _read_owner(path)
        return owner.get("host") != socket.gethostname() or _pid_alive(owner.get("pid"))
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if _try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)


class FolderLock:
    """A held lock; ``release()`` removes the file, then drops the lock."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding it: a process that opened the old file
        # afterwards notices (inode check) and retries on a fresh file.
        with contextlib.suppress(OSError):
            os.remove(self.path)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
