"""Pre-train an encoder on a source task.

Usage: ``python -m tl_keras.pretrain --flagfile experiments/pretrain_t1_segmentation.flags``
(see docs/training.md). Flags mirror :class:`tl_keras.training.PretrainConfig` and the
source tasks' options classes (``TaskSpec.options``).
"""
import sys

from absl import flags

from tl_common import cli, console
from tl_keras.training import run_pretrain
from tl_keras.training.flags import define_pretrain_flags, pretrain_config_from_flags
from tl_keras.training.validation import validate_pretrain

FLAGS = flags.FlagValues()
define_pretrain_flags(flag_values=FLAGS)


def run(flag_values: flags.FlagValues, args) -> None:
    """Validate the config before TensorFlow loads (bad flags fail in a second), train."""
    config = pretrain_config_from_flags(flag_values)
    validate_pretrain(config)
    console.load_tensorflow()
    print(f"done: {run_pretrain(config)}")


main = cli.make_main("tl_keras.pretrain", FLAGS, __doc__, run)

if __name__ == "__main__":
    sys.exit(main())
