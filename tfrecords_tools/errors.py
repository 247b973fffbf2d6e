"""The exception types for bad input scans, label files and converted data sets (CLI
convention: tl_common.cli)."""
from __future__ import annotations

from tl_common.cli import UserError


class DataSetError(UserError, ValueError):
    """A converted data set (shards, ``dataset.json``) that cannot be used as asked: damaged
    or replaced files, a missing split, data that does not fit the model (one line)."""


class InputError(UserError):
    """A scan or label file that cannot be used, with the subject and file it concerns.

    ``str(error)`` is a single line, ``subject S: FILE: problem``, so a CLI can
    print it as is (no traceback) and ``--on_error skip`` can log it to a CSV.

    Args:
      subject: subject identifier (from the manifest or derived from the file name).
      file: path of the offending file.
      problem: what is wrong, ideally with what to do about it.
    """

    def __init__(self, subject: str, file: str, problem: str):
        self.subject = str(subject)
        self.file = str(file)
        self.problem = " ".join(str(problem).split())  # keep it on one line
        super().__init__(self.subject, self.file, self.problem)

    def __str__(self) -> str:
        return f"subject {self.subject}: {self.file}: {self.problem}"


def itk_reason(error: Exception) -> str:
    """The human part of a SimpleITK exception: its ``ITK ERROR`` line without the
    source path, instead of the multi-line report."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for line in lines:
        if "ITK ERROR" in line:
            return line.split("):", 1)[-1].strip() if "):" in line else line
    return lines[-1] if lines else type(error).__name__
