"""Fine-tune a segmentation network on a target task from a (pre-trained) encoder.

Usage: ``python -m tl_keras.finetune --flagfile experiments/finetune_stroke.flags
--init_from runs/t1_seg/encoder_best --train_subjects 50 --subset_seed 3``
(see docs/training.md). Flags mirror :class:`tl_keras.training.FinetuneConfig`.
"""
import sys

from absl import flags

from tl_common import cli, console
from tl_keras.studies import finetune_and_evaluate
from tl_keras.training.config import FinetuneConfig
from tl_keras.training.validation import validate_finetune
from tl_keras.training.flags import config_from_flags, define_config_flags

FLAGS = flags.FlagValues()
define_config_flags(FinetuneConfig, flag_values=FLAGS)


def run(flag_values: flags.FlagValues, args) -> None:
    """Validate the config before TensorFlow loads (bad flags fail in a second), train, then
    (with ``--evaluate``) evaluate the export (tl_keras.studies: training never evaluates)."""
    config = config_from_flags(FinetuneConfig, flag_values)
    validate_finetune(config)
    console.load_tensorflow()
    print(f"done: {finetune_and_evaluate(config)}")


main = cli.make_main("tl_keras.finetune", FLAGS, __doc__, run)

if __name__ == "__main__":
    sys.exit(main())
