"""PEP 562 lazy package exports: names are imported from their module on first access."""
from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict):
    """Return ``(__getattr__, __dir__)`` for a package exporting ``{name: module}`` lazily.

    Importing the package stays cheap (no Keras / TensorFlow) until a name is used.
    """

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
