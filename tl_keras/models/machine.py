"""What this machine trains on, and the speed measurements made on it (the speed cache).

Speed choices that depend on the hardware (the training precision of ``--mixed_precision
auto``, the kernel gradient of each convolution shape in :mod:`tl_keras.models.conv`) are
measured on the machine at hand, once, and kept in a JSON file per user: by default
``~/.cache/tl_keras/speed.json`` (``$XDG_CACHE_HOME`` if set), or the file named by the
environment variable ``TL_KERAS_SPEED_CACHE``. Entries are filed under a machine key
(:func:`machine_key`: the CPU model and its relevant flags, the cores TensorFlow may use, the
GPUs' names and compute capabilities, the TensorFlow version), then by section and key;
deleting the file (or an entry) makes the next run measure again. docs/training.md,
"Speed choices measured on the machine".
"""
from __future__ import annotations

import json
import os
import sys

from tl_common.io import write_json_atomic

__all__ = ["CACHE_ENV", "cache_path", "cached", "cpu_info", "device_types", "gpus",
           "machine_key", "native_bfloat16", "store", "trains_on_cpu"]

CACHE_ENV = "TL_KERAS_SPEED_CACHE"
#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic (AVX-512 BF16, AMX).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: CPU flags that change which kernels oneDNN runs; they are part of the machine key.
KEY_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                 "amx_bf16", "amx_fp16")
#: Variables that set TensorFlow's thread pools (part of the machine key: a measurement
#: with one thread says nothing about two).
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")

_warned = []


def device_types() -> set[str]:
    """Types of the logical devices TensorFlow trains on (``CPU``, ``GPU``, ...)."""
    import tensorflow as tf
    return {d.device_type for d in tf.config.list_logical_devices()}


def trains_on_cpu() -> bool:
    """True when TensorFlow has no accelerator (GPU, TPU...) to place the training on.

    The CPU-specific speed choices (the matrix-product kernel gradient, thread settings)
    apply only then: they were measured on CPUs, and on an accelerator TensorFlow places
    the training there.
    """
    return device_types() <= {"CPU"}


def gpus() -> list[tuple[str, tuple]]:
    """(name, compute capability) of every GPU TensorFlow sees (physical devices)."""
    import tensorflow as tf
    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append((str(details.get("device_name", gpu.name)),
                    tuple(details.get("compute_capability", (0, 0)))))
    return out


def cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """(model name, flags) of the CPU from ``/proc/cpuinfo`` (("unknown CPU", set()) where
    it cannot be read, e.g. outside Linux)."""
    model, words = "", set()
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and not model:
                    model = value.strip()
                elif name.strip() == "flags":
                    words |= set(value.split())
    except OSError:
        pass
    return model or "unknown CPU", words


def native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True if the devices TensorFlow trains on compute bfloat16 natively.

    With GPUs: all of compute capability 8.0 or more (Ampere and later). Without: the
    CPU has AVX-512 BF16 or AMX (elsewhere bfloat16 is emulated: not worth measuring).
    """
    found = gpus()
    if found:
        return all(cc >= (8, 0) for _, cc in found)
    return any(flag in cpu_info(cpuinfo)[1] for flag in BF16_CPU_FLAGS)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_key() -> str:
    """What the speed cache files measurements under: the devices and what sets their
    speed, e.g. ``cpu AMD EPYC [avx2 avx512_bf16 avx512f avx512_vnni] 2 cores |
    tensorflow 2.21.0``."""
    import tensorflow as tf
    found = gpus()
    if found:
        devices = "gpu " + ", ".join(f"{name} (compute {cc[0]}.{cc[1]})" for name, cc in found)
    else:
        model, words = cpu_info()
        flags = " ".join(sorted(f for f in KEY_CPU_FLAGS if f in words))
        threads = "".join(f" {v}={os.environ[v]}" for v in THREAD_VARIABLES if v in os.environ)
        devices = f"cpu {model} [{flags}] {_cores()} cores{threads}"
    return f"{devices} | tensorflow {tf.__version__}"


def cache_path() -> str:
    """The speed cache file (``$TL_KERAS_SPEED_CACHE``, else ``~/.cache/tl_keras/speed.json``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tl_keras", "speed.json")


def _read() -> dict:
    try:
        with open(cache_path()) as f:
            data = json.load(f)
    except (OSError, ValueError):  # absent, unreadable or damaged: measure again
        return {}
    return data if isinstance(data, dict) else {}


def cached(section: str, key: str, machine: str | None = None):
    """The entry ``key`` of ``section`` measured on this machine, or None."""
    entry = _read().get(machine or machine_key(), {})
    value = entry.get(section, {}).get(key) if isinstance(entry, dict) else None
    return value


def store(section: str, key: str, value, machine: str | None = None) -> None:
    """File ``value`` under this machine, ``section`` and ``key`` (written atomically; a
    cache that cannot be written costs a new measurement next time, never the run)."""
    data = _read()
    entry = data.setdefault(machine or machine_key(), {})
    entry.setdefault(section, {})[key] = value
    try:
        write_json_atomic(cache_path(), data)
    except OSError as e:
        if not _warned:
            _warned.append(True)
            print(f"warning: cannot write the speed cache {cache_path()} ({e.strerror or e}); "
                  f"set {CACHE_ENV} to a writable file", file=sys.stderr, flush=True)
