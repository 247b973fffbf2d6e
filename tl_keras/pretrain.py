"""Pre-train an encoder on a source task.

Usage: ``python -m tl_keras.pretrain --flagfile experiments/pretrain_t1_segmentation.flags``
(see docs/training.md). Flags mirror :class:`tl_keras.training.PretrainConfig`.
"""
from absl import app

from tl_keras.training.config import PretrainConfig
from tl_keras.training.flags import config_from_flags, define_config_flags, run_cli

define_config_flags(PretrainConfig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    def run():
        from tl_keras.training import run_pretrain
        logs = run_pretrain(config_from_flags(PretrainConfig))
        print(f"done: {logs}")
    run_cli(run)


if __name__ == "__main__":
    app.run(main)
