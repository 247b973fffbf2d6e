"""``init_encoder``: initialise an encoder from a spec string (what ``--init_from`` takes).

The grammar and its one parser live in :mod:`tl_keras.weights.spec`.
"""
from __future__ import annotations

from tl_keras.weights.load_report import LoadReport
from tl_keras.weights.spec import InitSpec


def init_encoder(encoder, spec: str, strict: bool = True) -> LoadReport:
    """Initialise ``encoder`` in place according to ``spec``.

    Args:
      encoder: from :func:`tl_keras.models.build_encoder`.
      spec: an :class:`~tl_keras.weights.spec.InitSpec` string: ``scratch``, an encoder
        directory, ``taskonomy:CKPT[@TASK]``, ``imagenet:CKPT``, ``imagenet:FILE.h5`` or
        ``keras_hub:PRESET``.
      strict: raise on missing / unexpected / mis-shaped tensors.

    Returns:
      The :class:`LoadReport` (log ``report.summary()``).

    Raises:
      WeightLoadError: unknown spec, unreadable source, or a strict-mode problem.
    """
    return InitSpec.parse(spec).load(encoder, strict=strict)
