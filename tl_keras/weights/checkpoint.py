"""Reading TF1 (TF-slim) checkpoints and sorting their tensors.

Taskonomy task-bank files are TF1 V2 checkpoints ``model.permanent-ckpt.{index,data-*}``;
TF-slim's ImageNet ``resnet_v1_50.ckpt`` is a V1 checkpoint (one file). TF2's
``tf.train.load_checkpoint`` reads both without building the TF1 graph.
"""
from __future__ import annotations

import glob
import os
import re

from tl_keras.weights.load_report import WeightLoadError

#: Root scopes of Taskonomy graphs that wrap the encoder (StandardFeedforward, Siamese).
ROOT_PREFIXES = ("feedforward/", "siamese/")
#: First scope component -> part of the network.
PART_OF_SCOPE = {"encoder": "encoder", "compress1": "encoder", "decoder": "decoder",
                 "discriminator": "discriminator", "three_layer_fc_network": "head"}
PARTS = ("encoder", "decoder", "discriminator", "head")
_SLOT = re.compile(r"/(Adam(_\d+)?|Momentum|RMSProp(_\d+)?|Adagrad|Ftrl(_\d+)?|"
                   r"ExponentialMovingAverage)$")
_OPTIMIZER_SCALARS = re.compile(r"^(beta1_power|beta2_power)(_\d+)?$")
_DATA_SUFFIX = re.compile(r"\.data-\d+-of-(\d+)$")
#: Last 8 bytes of a TF table file (V1 checkpoints, V2 ``.index``): kTableMagicNumber.
_TABLE_MAGIC = (0xdb4775248b80fb57).to_bytes(8, "little")


def checkpoint_prefix(path: str) -> str:
    """Resolve a checkpoint from a V2 prefix, one of its files, a directory, or a V1 file.

    TF1 ``Saver`` wrote two formats: V2 (``PREFIX.index`` + ``PREFIX.data-*-of-*``, the
    Taskonomy task bank) and V1 (one table file, e.g. TF-slim's ``resnet_v1_50.ckpt``).
    ``tf.train.load_checkpoint`` reads both given the prefix, which for V1 is the file.

    Raises:
      WeightLoadError: if neither format is found.
    """
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    path = _DATA_SUFFIX.sub("", path)
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "*.index")))
        if not found:  # a folder holding one V1 file
            found = [f for f in sorted(glob.glob(os.path.join(path, "*"))) if _is_v1_file(f)]
        if len(found) == 1:
            return _DATA_SUFFIX.sub("", found[0].removesuffix(".index"))
        if len(found) > 1:
            raise WeightLoadError(f"{path}: several checkpoints ({_names(found)}); "
                                  "pass the prefix of one")
    elif os.path.isfile(path):
        if _is_v1_file(path):
            return path
        raise WeightLoadError(f"{path}: not a TF checkpoint (a V1 checkpoint such as "
                              "resnet_v1_50.ckpt ends in a table footer; this file does not: "
                              "truncated, or another format)")
    raise WeightLoadError(f"{path}: no TF checkpoint here (expected PREFIX.index and "
                          "PREFIX.data-00000-of-00001, e.g. model.permanent-ckpt, or a V1 "
                          "file such as resnet_v1_50.ckpt)")


def _is_v1_file(path: str) -> bool:
    """True for a V1 checkpoint: a regular file ending in the table magic number.

    V2 ``.index`` files are tables too; they are not V1 checkpoints on their own.
    """
    if (not os.path.isfile(path) or path.endswith((".index", ".meta", ".h5", ".json"))
            or _DATA_SUFFIX.search(path) or os.path.getsize(path) < len(_TABLE_MAGIC)):
        return False
    with open(path, "rb") as f:
        f.seek(-len(_TABLE_MAGIC), os.SEEK_END)
        return f.read() == _TABLE_MAGIC


def _names(paths):
    return ", ".join(os.path.basename(p) for p in paths)


def is_checkpoint(path: str) -> bool:
    """True if ``path`` resolves to a TF checkpoint prefix."""
    try:
        checkpoint_prefix(path)
    except WeightLoadError:
        return False
    return True


def data_files(prefix: str) -> list[str]:
    """The files holding the tensor values of a resolved checkpoint ``prefix``.

    Raises:
      WeightLoadError: a V2 data shard is missing (TF itself would only notice when the
        first tensor is read, with a traceback).
    """
    if not os.path.isfile(prefix + ".index"):
        return [prefix]  # V1: values and index in one file
    found = sorted(glob.glob(glob.escape(prefix) + ".data-*-of-*"))
    counts = {int(m.group(1)) for m in map(_DATA_SUFFIX.search, found) if m}
    total = max(counts) if counts else 1
    expected = [f"{prefix}.data-{i:05d}-of-{total:05d}" for i in range(total)]
    missing = [f for f in expected if f not in found]
    if missing:
        raise WeightLoadError(f"{missing[0]}: missing (the data file of {prefix}.index; "
                              "copy or download it again)")
    return expected


def check_checkpoint(path: str) -> str:
    """Resolve ``path`` and check that its data files are present; returns the prefix.

    Reads no tensor and does not import TensorFlow (configuration checks run first).
    """
    prefix = checkpoint_prefix(path)
    data_files(prefix)
    return prefix


def read_shapes(path: str) -> tuple[str, dict]:
    """Return ``(prefix, {tensor name: shape})`` of a checkpoint."""
    import tensorflow as tf
    prefix = check_checkpoint(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:  # corrupt or truncated files
        raise WeightLoadError(f"{prefix}: cannot read checkpoint: {str(e).splitlines()[0]}") from e
    return prefix, {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}


def read_tensors(prefix: str, names) -> dict:
    """Read the named tensors of a checkpoint as numpy arrays.

    Raises:
      WeightLoadError: a data file is truncated or unreadable (naming it).
    """
    import tensorflow as tf
    files = data_files(prefix)
    reader = tf.train.load_checkpoint(prefix)
    out = {}
    for name in names:
        try:
            out[name] = reader.get_tensor(name)
        except (IndexError, ValueError, tf.errors.OpError) as e:  # TF's own: IndexError
            # "Read less bytes than requested" for a truncated file, OpError if missing
            where = files[0] if len(files) == 1 else f"{prefix}.data-*"
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise WeightLoadError(f"{where}: cannot read tensor {name} ({detail}); the file "
                                  "is truncated or damaged: copy or download it again") from e
    return out


def skip_reason(name: str) -> str | None:
    """Why a tensor is never part of a forward pass, or None if it may be."""
    if name == "global_step" or name.endswith("/global_step"):
        return "training step counter"
    leaf = name.rsplit("/", 1)[-1]
    if _OPTIMIZER_SCALARS.match(leaf):
        return "optimizer state (Adam beta powers)"
    if _SLOT.search(name):
        return "optimizer slot"
    return None


def canonical(name: str, renames=()) -> str:
    """Strip a Taskonomy root prefix (``feedforward/``) or apply ``(old, new)`` prefix renames."""
    for old, new in renames:
        if name.startswith(old):
            return new + name[len(old):]
    for prefix in ROOT_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def part_of(canonical_name: str) -> str | None:
    """The network part (encoder, decoder, discriminator, head) a tensor belongs to."""
    return PART_OF_SCOPE.get(canonical_name.split("/", 1)[0])
