"""What the training benchmarks share: the benchmark network and tl_keras' own step.

Imported by the scripts beside it (``python benchmarks/bench_*.py`` puts this folder on
the module path).
"""
from __future__ import annotations

LEARNING_RATE = 1e-4
#: tl_keras' decoupled decay per step (w <- w - wd * w).
WEIGHT_DECAY = 2e-6


def taskonomy_model(image_size: int, precision: str, num_classes: int = 2):
    """The Taskonomy encoder + 15-layer decoder (target segmentation) under ``precision``
    (``float32`` | ``bfloat16`` | ``float16``), in a fresh Keras session, seed 0."""
    import keras
    from tl_keras.models import build_encoder, build_task_models
    from tl_keras.training.strategy import set_precision
    keras.backend.clear_session()
    set_precision("none" if precision == "float32" else precision)
    keras.utils.set_random_seed(0)
    encoder = build_encoder(image_size=image_size)
    return build_task_models("target", encoder, num_classes=num_classes).model


def custom_step(model, batch_size: int, jit_compile: bool = False):
    """tl_keras' own training step (the one ``tl_keras.finetune`` runs): weighted
    cross-entropy, AdamW with decoupled decay (loss scaling under float16)."""
    import tensorflow as tf
    from tl_keras.training import losses, steps
    from tl_keras.training.optimizers import make_generator_optimizer
    from tl_keras.training.strategy import loss_scaling
    opt = make_generator_optimizer(LEARNING_RATE, WEIGHT_DECAY, loss_scale=loss_scaling())
    opt.build(model.trainable_variables)
    return steps.distribute(steps.make_supervised_step(
        model, opt, losses.weighted_cross_entropy, batch_size, jit_compile),
        tf.distribute.get_strategy())
