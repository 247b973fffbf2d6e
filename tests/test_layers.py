"""The layer rules of docs/architecture.md, read from the source with ``ast`` (nothing is
imported, so this runs in well under a second).

* ``tl_common`` imports neither ``tfrecords_tools`` nor ``tl_keras``; ``tfrecords_tools``
  imports no ``tl_keras``.
* Inside ``tl_keras``: ``data`` / ``models`` / ``weights`` < ``training`` < ``evaluation``
  < ``studies`` < the top-level CLI modules; evaluation uses data / models / weights, never
  training; a fine-tuning run with its evaluation, and the sweeps, are studies.
* No import cycle between files (function-local imports count, and so do a registry's
  ``importlib.import_module(f"{__name__}.{name}")`` imports of its package's modules).
* A function-local import only defers a heavy library: one of ``HEAVY``, or a module of
  ours whose import loads one (its own top-level imports, its parent packages' and those
  of the modules it imports, transitively).
"""
from __future__ import annotations

import ast
import functools
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tl_common", "tfrecords_tools", "tl_keras")
# Libraries whose import costs from ~0.2 s (pandas, scipy, nibabel, scikit-image, h5py:
# they would slow every light CLI path such as --help or a flag error) to seconds
# (TensorFlow, Keras, SimpleITK, matplotlib, nilearn; keras_hub, the optional extra, loads
# Keras).
HEAVY = frozenset({"tensorflow", "keras", "SimpleITK", "matplotlib", "nilearn", "scipy",
                   "skimage", "pandas", "nibabel", "h5py", "keras_hub"})
# tl_keras sub-packages by layer; a module may import its own layer or lower ones.
LAYERS = {"data": 0, "models": 0, "weights": 0, "training": 1, "evaluation": 2, "studies": 3}
CLI_LAYER = 4  # tl_keras/*.py: the command-line modules
# Edges that break a rule and are being removed elsewhere; empty this list, never grow it.
KNOWN_EXCEPTIONS: set = set()


def _modules() -> dict[str, str]:
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[module.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].endswith("__init__.py")


@functools.lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    with open(MODULES[module]) as f:
        return ast.parse(f.read(), MODULES[module])


@functools.lru_cache(maxsize=None)
def _lazy_exports(package: str) -> dict[str, str]:
    """``{name: module}`` of a package that exports names lazily (``_EXPORTS``)."""
    for node in _tree(package).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "_EXPORTS"):
            return ast.literal_eval(node.value)
    return {}


def _targets(node, module: str) -> list[str]:
    """Full names an import statement loads (``from P import m`` -> ``P.m`` if a module,
    a lazily exported name -> the module exporting it)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module if _is_package(module) else module.rpartition(".")[0]
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
    out = []
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:
            out.append(f"{base}.{alias.name}")
        elif base in MODULES and alias.name in _lazy_exports(base):
            out.append(_lazy_exports(base)[alias.name])
        else:
            out.append(base)
    return out


def _registry_targets(node, module: str) -> list[str]:
    """The modules a registry imports by name: ``importlib.import_module(f"{__name__}.{m}")``
    in a package loads every module of that package (the task registry does)."""
    func = node.func
    if not (isinstance(func, ast.Attribute) and func.attr == "import_module"
            and getattr(func.value, "id", None) == "importlib" and node.args
            and isinstance(node.args[0], ast.JoinedStr) and _is_package(module)):
        return []
    first = node.args[0].values[0]
    if not (isinstance(first, ast.FormattedValue) and getattr(first.value, "id", None)
            == "__name__"):
        return []
    return [m for m in MODULES if m.rpartition(".")[0] == module]


@functools.lru_cache(maxsize=None)
def _imports(module: str) -> tuple[tuple[str, bool, int], ...]:
    """(imported name, inside a function, line) for every import of ``module``, registry
    imports (:func:`_registry_targets`) included: a registry filled when the package is
    imported counts as top-level imports."""
    out = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.extend((t, inner, child.lineno) for t in _targets(child, module))
            elif isinstance(child, ast.Call):
                out.extend((t, False, child.lineno) for t in _registry_targets(child, module))
            visit(child, inner)
    visit(_tree(module), False)
    return tuple(out)


def _ours(name: str) -> str | None:
    """The module of ours that importing ``name`` names (longest prefix), else None."""
    parts = name.split(".")
    while parts and parts[0] in PACKAGES:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _edges(local_too: bool = True) -> dict[str, set[str]]:
    edges = {}
    for module in MODULES:
        for name, local, _ in _imports(module):
            target = _ours(name)
            if target and target != module and (local_too or not local):
                edges.setdefault(module, set()).add(target)
    return edges


@functools.lru_cache(maxsize=None)
def _heavy_modules() -> frozenset[str]:
    """Our modules whose import loads a HEAVY library."""
    top = _edges(local_too=False)
    for module in MODULES:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = module.split(".")
        top.setdefault(module, set()).update(
            ".".join(parts[:k]) for k in range(1, len(parts)) if ".".join(parts[:k]) in MODULES)
    heavy = {m for m in MODULES
             if any(not local and name.split(".")[0] in HEAVY
                    for name, local, _ in _imports(m))}
    grown = True
    while grown:
        before = len(heavy)
        heavy |= {m for m in MODULES if top.get(m, set()) & heavy}
        grown = len(heavy) > before
    return frozenset(heavy)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "tl_keras" or len(parts) == 1:
        return None
    return LAYERS.get(parts[1], CLI_LAYER)


def test_the_source_is_found():
    assert {"tl_common.cli", "tfrecords_tools.schema", "tl_keras.training.steps",
            "tl_keras.pretrain"} <= set(MODULES)
    assert "tl_keras.training.finetuning" in _heavy_modules()  # TensorFlow at its top
    assert "tl_common.io" not in _heavy_modules()


def test_registry_imports_are_edges():
    """The task registry's ``importlib`` imports count, so a cycle through it is seen."""
    edges = _edges()
    assert {"tl_keras.training.tasks.segmentation", "tl_keras.training.tasks.target",
            "tl_keras.training.tasks.autoencoding"} <= edges["tl_keras.training.tasks"]
    assert "tl_keras.training.tasks.spec" in edges["tl_keras.training.tasks"]


def test_training_config_is_the_bottom_of_training():
    """``training/config.py`` imports nothing of ``training``, so no arrow runs back up."""
    assert not {t for t in _edges().get("tl_keras.training.config", ())
                if t.startswith("tl_keras.training")}


def test_packages_import_only_downwards():
    bad = []
    for module, targets in _edges().items():
        for target in targets:
            if (module, target) in KNOWN_EXCEPTIONS:
                continue
            if module.startswith("tl_common") and not target.startswith("tl_common"):
                bad.append((module, target))
            elif module.startswith("tfrecords_tools") and target.startswith("tl_keras"):
                bad.append((module, target))
            elif _layer(module) is not None and _layer(target) is not None:
                low, high = _layer(target), _layer(module)
                sideways = (module.split(".")[1] == "evaluation"
                            and target.split(".")[1] == "training")
                if low > high or sideways:
                    bad.append((module, target))
    assert not bad, f"imports against the layer order (docs/architecture.md): {sorted(bad)}"


def test_known_exceptions_still_exist():
    """An exception whose edge is gone must be deleted from the list."""
    edges = _edges()
    gone = [e for e in KNOWN_EXCEPTIONS if e[1] not in edges.get(e[0], ())]
    assert not gone, f"delete from KNOWN_EXCEPTIONS: {gone}"


def test_no_import_cycles_between_files():
    edges, index, low, stack, on_stack, cycles = _edges(), {}, {}, [], set(), []

    def connect(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(MODULES):
        if module not in index:
            connect(module)
    assert not cycles, f"import cycles: {cycles}"


def test_function_local_imports_only_defer_heavy_libraries():
    heavy = _heavy_modules()
    bad = []
    for module in sorted(MODULES):
        for name, local, line in _imports(module):
            if not local or name.split(".")[0] in HEAVY:
                continue
            if _ours(name) in heavy:
                continue
            bad.append(f"{os.path.relpath(MODULES[module], ROOT)}:{line} {name}")
    assert not bad, "function-local imports of light modules (move them to the top):\n" + \
        "\n".join(bad)
