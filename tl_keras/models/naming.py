"""Naming rules and slim constants of the Taskonomy Keras models (no Keras import).

Every layer that owns weights is named after the TF-slim variable scope of the original
checkpoint with ``/`` replaced by ``__`` (``encoder/conv1/BatchNorm`` ->
``encoder__conv1__BatchNorm``), so loading a checkpoint is a name map, never an index.
"""

#: Separator that stands for ``/`` of a TF scope inside a Keras layer name.
SCOPE_SEP = "__"
#: slim batch_norm decay 0.9 (the Taskonomy encoder/decoder default) and epsilon 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
LEAKY_SLOPE = 0.2


def layer_name(scope: str) -> str:
    """Keras layer name of a TF variable scope (``a/b`` -> ``a__b``)."""
    return scope.replace("/", SCOPE_SEP)


def scope_of(name: str) -> str:
    """TF variable scope of a Keras layer name (inverse of :func:`layer_name`)."""
    return name.replace(SCOPE_SEP, "/")
