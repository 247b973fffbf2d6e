"""Pre-training, fine-tuning and sweeps: losses, optimizer, class weights,
pure train steps, the loop, checkpointing and distribution helpers.

Entry points: :func:`run_pretrain`, :func:`run_finetune`, :func:`run_sweep`
(imported lazily so that ``import tl_keras.training.losses`` stays light).
"""
from tl_keras.training.config import (ConfigError, FinetuneConfig, PretrainConfig,
                                      TrainConfig)


def run_pretrain(config, build_models=None):
    """See :func:`tl_keras.training.pretraining.run_pretrain`."""
    from tl_keras.training.pretraining import run_pretrain as run
    return run(config, build_models)


def run_finetune(config, build_models=None):
    """See :func:`tl_keras.training.finetuning.run_finetune`."""
    from tl_keras.training.finetuning import run_finetune as run
    return run(config, build_models)


__all__ = ["ConfigError", "FinetuneConfig", "PretrainConfig", "TrainConfig",
           "run_finetune", "run_pretrain"]
