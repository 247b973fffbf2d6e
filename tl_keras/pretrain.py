"""Pre-train an encoder on a source task.

Usage: ``python -m tl_keras.pretrain --flagfile experiments/pretrain_t1_segmentation.flags``
(see docs/training.md). Flags mirror :class:`tl_keras.training.PretrainConfig`.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app  # noqa: E402

from tl_keras.training.config import PretrainConfig, validate_pretrain  # noqa: E402
from tl_keras.training.flags import config_from_flags, define_config_flags, run_cli  # noqa: E402

define_config_flags(PretrainConfig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    def run():
        config = config_from_flags(PretrainConfig)
        validate_pretrain(config)  # one-line failure before TensorFlow loads
        from tl_keras.training import run_pretrain
        logs = run_pretrain(config)
        print(f"done: {logs}")
    run_cli(run)


if __name__ == "__main__":
    app.run(main)
