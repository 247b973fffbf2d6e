"""Pre-train an encoder on a source task.

Usage: ``python -m tl_keras.pretrain --flagfile experiments/pretrain_t1_segmentation.flags``
(see docs/training.md). Flags mirror :class:`tl_keras.training.PretrainConfig`.
"""

from tl_keras.training.config import PretrainConfig, validate_pretrain
from tl_keras.training.flags import config_main, define_config_flags, run_app

define_config_flags(PretrainConfig)
main = config_main(PretrainConfig, validate_pretrain, "run_pretrain")


if __name__ == "__main__":
    run_app(main)
