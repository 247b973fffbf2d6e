"""Pre-train an encoder on a source task.

Usage: ``python -m tl_keras.pretrain --flagfile experiments/pretrain_t1_segmentation.flags``
(see docs/training.md). Flags mirror :class:`tl_keras.training.PretrainConfig` and the
source tasks' options classes (``TaskSpec.options``).
"""
import sys

from absl import flags

from tl_keras.training.flags import (define_pretrain_flags, make_training_main,
                                     pretrain_config_from_flags)
from tl_keras.training.validation import validate_pretrain

FLAGS = flags.FlagValues()
define_pretrain_flags(flag_values=FLAGS)


def _pretrain(config) -> dict:
    from tl_keras.training.pretraining import run_pretrain  # loads TensorFlow
    return run_pretrain(config)


main = make_training_main("tl_keras.pretrain", FLAGS, __doc__, pretrain_config_from_flags,
                          validate_pretrain, _pretrain)

if __name__ == "__main__":
    sys.exit(main())
