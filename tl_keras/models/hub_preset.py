"""keras-hub presets named by ``keras_hub:PRESET``, checked without TensorFlow or network.

PRESET is a local preset directory (``config.json`` + ``model.weights.h5`` +
``metadata.json``, as ``Backbone.save_to_preset`` writes and
``keras_hub.models.Backbone.from_preset`` reads) or a keras-hub preset name
(``resnet_50_imagenet``). A name is used from the keras-hub (kagglehub) download cache
when it is there; otherwise it is downloaded at load time, which needs the network.

Everything here reads files only (keras-hub itself is not imported), so configuration
checks stay fast; :mod:`tl_keras.models.hub` builds and loads the networks.
See docs/sources.md, "keras-hub backbones".
"""
from __future__ import annotations

import ast
import dataclasses
import glob
import importlib.util
import json
import os
import socket

from tl_common.cli import UserError

PREFIX = "keras_hub:"
INSTALL_HINT = "pip install -e .[hub]"
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILES = ("model.weights.h5", "model.weights.json")  # single file or sharded
IMAGE_CONVERTER_FILE = "image_converter.json"
#: Where kagglehub keeps downloads (``KAGGLEHUB_CACHE`` overrides it).
DEFAULT_CACHE = os.path.join("~", ".cache", "kagglehub")
#: The host keras-hub downloads preset names from (probed by :func:`network_available`).
DOWNLOAD_HOST = ("www.kaggle.com", 443)


class HubPresetError(UserError, ValueError):
    """A ``keras_hub:`` spec that cannot be used (one line naming the flag)."""


@dataclasses.dataclass(frozen=True)
class HubPreset:
    """A resolved ``keras_hub:PRESET``.

    Attributes:
      name: the preset as given after ``keras_hub:`` (a name or a directory).
      path: the local preset directory (given, or found in the download cache), or None
        when the preset is downloaded by name at load time.
    """

    name: str
    path: str | None

    @property
    def handle(self) -> str:
        """What ``Backbone.from_preset`` is given."""
        return self.path or self.name


def preset_name(preset: str) -> str:
    """A preset's short name (what labels show): a directory's base name, else the name."""
    return os.path.basename(os.path.normpath(preset)) if os.path.isdir(preset) else preset


def keras_hub_installed() -> bool:
    """True when the optional keras-hub package can be imported (not importing it)."""
    return importlib.util.find_spec("keras_hub") is not None


def _fail(flag: str, preset: str, problem: str):
    raise HubPresetError(f"{flag} {PREFIX}{preset}: {problem}")


def require_keras_hub(subject: str) -> None:
    """Raise one line (``subject: ...``) naming the extra when keras-hub is not installed."""
    if not keras_hub_installed():
        raise HubPresetError(f"{subject}: keras-hub is not installed; install the extra: "
                             f"{INSTALL_HINT}")


def read_json(path: str) -> object:
    with open(path) as f:
        return json.load(f)


def preset_problem(path: str) -> str | None:
    """Why directory ``path`` is not a keras-hub backbone preset (None when it is one)."""
    missing = [f for f in (CONFIG_FILE, METADATA_FILE) if not os.path.isfile(
        os.path.join(path, f))]
    if not any(os.path.isfile(os.path.join(path, f)) for f in WEIGHTS_FILES):
        missing.append(WEIGHTS_FILES[0])
    if missing:
        return (f"not a keras-hub preset directory (no {', '.join(missing)}; write one with "
                "Backbone.save_to_preset)")
    try:
        config = read_json(os.path.join(path, CONFIG_FILE))
    except (OSError, ValueError) as e:
        return f"unreadable {CONFIG_FILE}: {e}"
    name = config.get("registered_name", "") if isinstance(config, dict) else ""
    if not (name.startswith("keras_hub>") and name.endswith("Backbone")):
        return (f"{CONFIG_FILE} does not describe a keras-hub backbone (registered_name "
                f"{name or 'missing'!r})")
    return None


def cache_root() -> str:
    return os.path.expanduser(os.environ.get("KAGGLEHUB_CACHE") or DEFAULT_CACHE)


def cached_preset(name: str) -> str | None:
    """The newest complete download of preset ``name`` in the kagglehub cache, if any.

    keras-hub's presets live at ``kaggle://keras/<model>/keras/<name>/<version>``, which
    kagglehub stores as ``<cache>/models/keras/<model>/keras/<name>/<version>/``.
    """
    if not name or "/" in name or os.sep in name:
        return None
    found = [os.path.dirname(p) for p in glob.glob(os.path.join(
        glob.escape(cache_root()), "models", "*", "*", "keras", glob.escape(name), "*",
        CONFIG_FILE))]
    complete = [d for d in found if preset_problem(d) is None]
    versions = sorted(complete, key=lambda d: int(os.path.basename(d))
                      if os.path.basename(d).isdigit() else -1)
    return versions[-1] if versions else None


def network_available(timeout: float = 3.0) -> bool:
    """True when the keras-hub download host answers (a TCP connect, nothing sent)."""
    try:
        socket.create_connection(DOWNLOAD_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def resolve(flag: str, preset: str) -> HubPreset:
    """Resolve ``keras_hub:PRESET`` to a directory (or a name to download) with checks.

    Raises:
      HubPresetError: keras-hub not installed; an empty preset; a directory that is not a
        keras-hub backbone preset; a name neither cached nor downloadable (no network).
    """
    if not preset:
        _fail(flag, preset, "empty preset; expected a keras-hub preset name or a preset "
                            "directory")
    require_keras_hub(f"{flag} {PREFIX}{preset}")
    if os.path.isdir(preset):
        problem = preset_problem(preset)
        if problem:
            _fail(flag, preset, problem)
        return HubPreset(preset, os.path.abspath(preset))
    if os.path.exists(preset):
        _fail(flag, preset, "a file, not a preset directory (config.json + "
                            "model.weights.h5 + metadata.json)")
    cached = cached_preset(preset)
    if cached:
        return HubPreset(preset, cached)
    if os.sep in preset or preset.startswith("."):
        _fail(flag, preset, "no such preset directory")
    if not network_available():
        _fail(flag, preset, f"not a local preset directory and not in the keras-hub download "
                            f"cache ({cache_root()}), and there is no network to download it; "
                            "pass a preset directory saved on a machine with access")
    return HubPreset(preset, None)


def backbone_config(preset: HubPreset) -> dict | None:
    """The preset's ``config.json`` (None for a name still to be downloaded)."""
    if preset.path is None:
        return None
    return read_json(os.path.join(preset.path, CONFIG_FILE))


def has_pyramid_outputs(config: dict) -> bool:
    """Whether the backbone class of ``config`` derives from keras-hub's
    ``FeaturePyramidBackbone`` (has ``pyramid_outputs``), read from its source file.

    The class's module is located without importing it (``importlib.util.find_spec``)
    and its ``class`` statement is parsed, so this check does not load TensorFlow.
    """
    module, name = config.get("module"), config.get("class_name")
    try:
        spec = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return False
    with open(spec.origin) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            bases = [ast.unparse(b) for b in node.bases]
            return any(b.split(".")[-1] == "FeaturePyramidBackbone" for b in bases)
    return False


def check(flag: str, preset: str, *, decoder_variant: str | None = None) -> HubPreset:
    """:func:`resolve` plus the decoder check: ``unet`` needs ``pyramid_outputs``.

    Raises:
      HubPresetError: see :func:`resolve`; a backbone without pyramid outputs for ``unet``.
    """
    resolved = resolve(flag, preset)
    config = backbone_config(resolved)
    if decoder_variant == "unet" and config is not None and not has_pyramid_outputs(config):
        _fail(flag, preset, f"--decoder_variant=unet needs a backbone with pyramid_outputs; "
                            f"{config.get('class_name')} has none (use --decoder_variant "
                            "paper or taskonomy)")
    return resolved
