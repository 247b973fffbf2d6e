"""Reproducibility records for a run directory: resolved flags, seed, versions."""
from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import sys

from tl_common.io import write_json_atomic

#: The version of tl_keras and tfrecords_tools (one distribution, setup.py reads it here).
TOOL_VERSION = "0.1.0"

_PACKAGES = ("tensorflow", "keras", "numpy", "scipy", "nibabel", "SimpleITK", "nilearn",
             "scikit-image", "pandas", "absl-py", "matplotlib", "tl_keras")


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def record_run(run_dir: str, config, seed: int | None = None, name: str = "flags.json",
               **extra) -> dict:
    """Write ``flags.json`` (resolved config, seed, versions, time, and ``extra`` keys such as
    the chosen precision) into ``run_dir``.

    ``config`` is a dataclass or a mapping.
    """
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    record = {"flags": dict(config), "seed": seed, "versions": package_versions(),
              "written": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "argv": sys.argv, **extra}
    write_json_atomic(os.path.join(run_dir, name), record)
    return record
