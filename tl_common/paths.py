"""Output folders that can never replace, contain or sit inside an input.

Every CLI checks its output path against its inputs before it writes anything
(docs/reliability.md, "Nothing lost"): an output folder equal to an input
folder, inside one, or holding one would let ``--overwrite`` (or a rerun that
reads its folder) destroy or mix up the data. Paths are compared after
resolving symbolic links, so a link to the data folder counts as the folder.
"""
from __future__ import annotations

import os
from typing import Iterable


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def relation(output: str, given: str) -> str | None:
    """How folder ``output`` relates to path ``given``: ``"is"``, ``"is inside"``,
    ``"contains"`` or None (separate)."""
    out, inp = _real(output), _real(given)
    if out == inp:
        return "is"
    if inp.startswith(out.rstrip(os.sep) + os.sep):
        return "contains"
    if out.startswith(inp.rstrip(os.sep) + os.sep):
        return "is inside"
    return None


def refuse_overlap(output_flag: str, output: str, inputs: Iterable[tuple[str, str]],
                   error: type[Exception]) -> None:
    """Raise ``error`` when folder ``output`` is, contains or is inside an input.

    Args:
      output_flag: how the message names the output (e.g. ``--model_dir``).
      output: the output folder.
      inputs: (how to name it, path) of every input file or folder; empty paths are
        skipped.
      error: the exception class raised (a ``tl_common.cli.UserError`` subclass).
    """
    for name, path in inputs:
        if not path:
            continue
        how = relation(output, path)
        if how:
            raise error(f"{output}: {output_flag} {how} {name} {path}; an output folder may "
                        "not be, contain or sit inside an input (its data could be "
                        "overwritten or read back as input); choose another folder")


def check_output_folder(path: str, flag: str, error: type[Exception]) -> None:
    """Refuse an output folder path that is a file or a dangling symbolic link."""
    if os.path.islink(path) and not os.path.exists(path):
        raise error(f"{path}: {flag} is a symbolic link to {os.readlink(path)}, which does "
                    "not exist; create the target or choose another folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise error(f"{path}: {flag} is an existing file, not a folder")
