"""Pre-training and fine-tuning: the task registry (``tasks``), the one
training path (``train``), losses, optimizer, class weights, pure train steps, the
loop, checkpointing and distribution helpers (docs/extending.md).

Entry points: :func:`run_pretrain`, :func:`run_finetune` (training, export and
``result.json``; imported lazily so that ``import tl_keras.training.losses`` stays
light). Evaluating a fine-tuned run and the sweeps are ``tl_keras.studies``.
"""
from tl_keras.training.config import (ConfigError, FinetuneConfig, PretrainConfig,
                                      TrainConfig)
from tl_keras.training.rundir import claim_run_dir
from tl_keras.training.validation import with_task_options


def run_pretrain(config, build_models=None):
    """:func:`tl_keras.training.pretraining.run_pretrain` holding ``model_dir``
    (lock and flags check, :func:`tl_keras.training.rundir.claim_run_dir`)."""
    from tl_keras.training.pretraining import run_pretrain as run
    config = with_task_options(config)  # flags.json records the options
    with claim_run_dir(config):
        return run(config, build_models)


def run_finetune(config, build_models=None):
    """:func:`tl_keras.training.finetuning.run_finetune` holding ``model_dir``
    (lock and flags check, :func:`tl_keras.training.rundir.claim_run_dir`)."""
    from tl_keras.training.finetuning import run_finetune as run
    with claim_run_dir(config):
        return run(config, build_models)


def __getattr__(name):
    if name == "sweeps":  # moved when training stopped calling evaluation
        raise ImportError("tl_keras.training.sweeps moved to tl_keras.studies.sweeps")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ConfigError", "FinetuneConfig", "PretrainConfig", "TrainConfig",
           "run_finetune", "run_pretrain"]
