"""PEP 562 lazy package exports: names are imported from their module on first access."""
from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports_by_module: dict):
    """Return ``(__getattr__, __dir__)`` for a package exporting names lazily.

    ``exports_by_module`` is ``{module: (name, ...)}`` (a literal ``_EXPORTS`` in the
    package, which ``tests/test_layers.py`` follows). Importing the package stays cheap
    (no Keras / TensorFlow) until a name is used.
    """
    exports = exported_names(exports_by_module)

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


def exported_names(exports_by_module: dict) -> dict:
    """``{name: module}`` of ``{module: (name, ...)}``."""
    return {name: module for module, names in exports_by_module.items() for name in names}
