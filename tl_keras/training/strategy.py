"""Distribution strategy, mixed precision and determinism set-up.

These act on process-global state and must run before any model is built.
"""
from __future__ import annotations

import os

import keras
import tensorflow as tf

from tl_keras.training.precision import POLICIES


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local devices) or ``multi_worker``
    (``MultiWorkerMirroredStrategy`` configured from the ``TF_CONFIG`` variable)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes exports and records (always, outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def work_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this worker writes checkpoints and events: ``model_dir`` on the chief, a
    private temporary directory on the other workers (every worker must save, as
    ``MultiWorkerMirroredStrategy`` requires, but only the chief's copy is kept)."""
    if is_chief(strategy):
        return model_dir
    resolver = strategy.cluster_resolver
    return os.path.join(model_dir, ".workers", f"{resolver.task_type}_{resolver.task_id}")


def set_precision(precision: str) -> str:
    """Set the global Keras dtype policy of ``none`` | ``bfloat16`` | ``float16``; return it.

    ``auto`` is not a policy: :func:`tl_keras.training.precision.choose` resolves it.
    """
    if precision not in POLICIES:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(POLICIES)} "
                         "(auto is resolved by tl_keras.training.precision.choose)")
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    return POLICIES[precision]


def loss_scaling() -> bool:
    """Whether optimizers need dynamic loss scaling: the global policy is float16."""
    return keras.mixed_precision.global_policy().name == "mixed_float16"


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy, TF and Keras; with ``deterministic`` also force
    deterministic TF kernels (slower, but reruns and resumes are bit-identical)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def split_logical_cpus(n: int) -> None:
    """Expose ``n`` logical CPU devices (for MirroredStrategy tests and demos).

    Must be called before TensorFlow initialises its devices.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
