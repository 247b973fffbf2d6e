"""Distribution strategy, mixed precision and determinism set-up.

These act on process-global state and must run before any model is built.
"""
from __future__ import annotations

import os

import keras
import tensorflow as tf

POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic (AVX-512 BF16, AMX).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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


def native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True if the devices TensorFlow trains on compute bfloat16 natively.

    With GPUs: all of compute capability 8.0 or more (Ampere and later). Without: the
    CPU has AVX-512 BF16 or AMX (on other CPUs bfloat16 is emulated, and slower
    than float32; docs/training.md, "Speed").
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(tf.config.experimental.get_device_details(g).get("compute_capability",
                                                                    (0, 0)) >= (8, 0)
                   for g in gpus)
    try:
        with open(cpuinfo) as f:
            words = set(f.read().split())
    except OSError:
        return False
    return any(flag in words for flag in BF16_CPU_FLAGS)


def resolve_precision(mixed_precision: str) -> str:
    """``auto`` -> ``bfloat16`` where it is native (:func:`native_bfloat16`), else ``none``."""
    if mixed_precision != "auto":
        return mixed_precision
    return "bfloat16" if native_bfloat16() else "none"


def set_precision(mixed_precision: str) -> str:
    """Set the global Keras dtype policy (``auto`` | ``none`` | ``bfloat16`` | ``float16``);
    return it."""
    policy = POLICIES[resolve_precision(mixed_precision)]
    keras.mixed_precision.set_global_policy(policy)
    return policy


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
