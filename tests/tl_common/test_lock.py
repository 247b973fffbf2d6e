"""tl_common.lock: exclusive folder locks (the flock path and the pid fallback)."""
import json
import os
import socket
import subprocess
import sys

import pytest

from tl_common import lock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_released(tmp_path):
    with lock.acquire(str(tmp_path)) as held:
        assert lock.is_locked(str(tmp_path))
        owner = json.load(open(held.path))
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(lock.LockError, match=f"in use by pid {os.getpid()} on"):
            lock.acquire(str(tmp_path))
    assert not lock.is_locked(str(tmp_path)) and not os.listdir(tmp_path)


@pytest.mark.parametrize("use_flock", [True, False])
def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys, monkeypatch, use_flock):
    if not use_flock:
        monkeypatch.setattr(lock, "fcntl", None)
    dead = _dead_pid()
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps(
        {"pid": dead, "host": socket.gethostname(), "started": "then", "argv": "convert"}))
    with lock.acquire(str(tmp_path), what="D"):
        pass
    assert f"D: taking over the lock left by pid {dead} on" in capsys.readouterr().err


def test_fallback_refuses_a_live_owner(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "fcntl", None)
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps(
        {"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(lock.LockError, match=f"pid {os.getppid()}.*delete"):
        lock.acquire(str(tmp_path))
