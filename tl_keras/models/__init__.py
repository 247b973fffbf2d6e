"""Taskonomy networks as Keras 3 functional models.

Layer names mirror the TF-slim checkpoint scopes (``/`` -> ``__``) so that
:mod:`tl_keras.weights` loads checkpoints by name.

The builders are imported on first use, so ``tl_keras.models.export`` and other light
modules can be imported without loading Keras / TensorFlow.
"""
from tl_keras.models.lazy import exported_names, lazy_exports

_EXPORTS = {"tl_keras.models.encoder": ("build_encoder",),
            "tl_keras.models.decoder": ("build_decoder",),
            "tl_keras.models.discriminator": ("build_discriminator",),
            "tl_keras.models.head": ("build_classification_head",),
            "tl_keras.models.factory": ("build_task_models", "TaskModels", "TASKS")}
__all__ = sorted(exported_names(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
