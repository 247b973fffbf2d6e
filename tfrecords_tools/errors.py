"""The one exception type for bad input scans and label files."""
from __future__ import annotations


class InputError(Exception):
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
