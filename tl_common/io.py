"""Atomic file output: write to a temporary name, rename when complete."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile

# Temporary names of atomic writes; reruns remove leftovers (remove_temp_debris).
TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched; an
    ``OSError`` about the temporary file (disk full, read-only) is re-raised
    naming ``path``.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + ".", dir=directory)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):  # mkstemp makes 0600 files; give the usual umask mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):
            # Name the file the user asked for, not the temporary one.
            raise OSError(e.errno, e.strerror or str(e), path) from None
        raise


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json_atomic(path: str, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv_atomic(path: str, frame, **kwargs) -> None:
    """Write a pandas DataFrame to CSV atomically (index off by default)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's content (read in 4 MB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def remove_temp_debris(folders) -> list[str]:
    """Delete ``.tmp-*`` files that interrupted atomic writes left in ``folders``.

    Only safe while the caller holds the folder's lock (tl_common.lock):
    otherwise another run's temporary file could be in use.
    """
    removed = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(TEMP_PREFIX) and os.path.isfile(path):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed.append(path)
    return removed
