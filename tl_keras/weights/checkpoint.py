"""Reading TF1 (TF-slim) checkpoints and sorting their tensors.

Taskonomy task-bank files are TF1 V2 checkpoints ``model.permanent-ckpt.{index,data-*}``;
TF2's ``tf.train.load_checkpoint`` reads them without building the TF1 graph.
"""
from __future__ import annotations

import glob
import os
import re

from tl_keras.weights.report import WeightLoadError

#: Root scopes of Taskonomy graphs that wrap the encoder (StandardFeedforward, Siamese).
ROOT_PREFIXES = ("feedforward/", "siamese/")
#: First scope component -> part of the network.
PART_OF_SCOPE = {"encoder": "encoder", "compress1": "encoder", "decoder": "decoder",
                 "discriminator": "discriminator", "three_layer_fc_network": "head"}
PARTS = ("encoder", "decoder", "discriminator", "head")
_SLOT = re.compile(r"/(Adam(_\d+)?|Momentum|RMSProp(_\d+)?|Adagrad|Ftrl(_\d+)?|"
                   r"ExponentialMovingAverage)$")
_OPTIMIZER_SCALARS = re.compile(r"^(beta1_power|beta2_power)(_\d+)?$")


def checkpoint_prefix(path: str) -> str:
    """Resolve a checkpoint prefix from a prefix, one of its files, or a directory.

    Raises:
      WeightLoadError: if no ``.index`` file is found.
    """
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    path = re.sub(r"\.data-\d+-of-\d+$", "", path)
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "*.index")))
        if len(found) == 1:
            return found[0][: -len(".index")]
        if len(found) > 1:
            raise WeightLoadError(f"{path}: several checkpoints ({_names(found)}); "
                                  "pass the prefix of one")
    raise WeightLoadError(f"{path}: no TF checkpoint here (expected PREFIX.index and "
                          "PREFIX.data-00000-of-00001, e.g. model.permanent-ckpt)")


def _names(paths):
    return ", ".join(os.path.basename(p) for p in paths)


def is_checkpoint(path: str) -> bool:
    """True if ``path`` resolves to a TF checkpoint prefix."""
    try:
        checkpoint_prefix(path)
    except WeightLoadError:
        return False
    return True


def read_shapes(path: str) -> tuple[str, dict]:
    """Return ``(prefix, {tensor name: shape})`` of a checkpoint."""
    import tensorflow as tf
    prefix = checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:  # corrupt or truncated files
        raise WeightLoadError(f"{prefix}: cannot read checkpoint: {str(e).splitlines()[0]}") from e
    return prefix, {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}


def read_tensors(prefix: str, names) -> dict:
    """Read the named tensors of a checkpoint as numpy arrays."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(prefix)
    return {n: reader.get_tensor(n) for n in names}


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
