"""Pre-training and fine-tuning: the task registry (``tasks``), the one
training path (``train``), losses, optimizer, class weights, pure train steps, the
loop, checkpointing and distribution helpers (docs/extending.md).

Entry points: :func:`run_pretrain`, :func:`run_finetune` (holding the run directory:
training, export and ``result.json``; the functions of ``pretraining`` / ``finetuning``,
imported lazily so that ``import tl_keras.training.losses`` stays light). Evaluating a
fine-tuned run and the sweeps are ``tl_keras.studies``.
"""
from tl_keras.models.lazy import lazy_exports
from tl_keras.training.config import (ConfigError, FinetuneConfig, PretrainConfig,
                                      TrainConfig)

# The one run_pretrain / run_finetune (each holds its run directory), imported on first use.
_EXPORTS = {"tl_keras.training.pretraining": ("run_pretrain",),
            "tl_keras.training.finetuning": ("run_finetune",)}
_lazy_getattr, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name):
    if name == "sweeps":  # moved when training stopped calling evaluation
        raise ImportError("tl_keras.training.sweeps moved to tl_keras.studies.sweeps")
    return _lazy_getattr(name)


__all__ = ["ConfigError", "FinetuneConfig", "PretrainConfig", "TrainConfig",
           "run_finetune", "run_pretrain"]
