"""Taskonomy networks as Keras 3 functional models.

Layer names mirror the TF-slim checkpoint scopes (``/`` -> ``__``) so that
:mod:`tl_keras.weights` loads checkpoints by name.
"""
from tl_keras.models.decoder import build_decoder
from tl_keras.models.discriminator import build_discriminator
from tl_keras.models.encoder import build_encoder
from tl_keras.models.factory import TASKS, TaskModels, build_task_models
from tl_keras.models.head import build_classification_head

__all__ = [
    "TASKS", "TaskModels", "build_classification_head", "build_decoder",
    "build_discriminator", "build_encoder", "build_task_models",
]
