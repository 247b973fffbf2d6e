"""Fine-tune a segmentation network on a target task from a (pre-trained) encoder.

Usage: ``python -m tl_keras.finetune --flagfile experiments/finetune_stroke.flags
--init_from runs/t1_seg/encoder_best --train_subjects 50 --subset_seed 3``
(see docs/training.md). Flags mirror :class:`tl_keras.training.FinetuneConfig`.
"""

from tl_keras.training.config import FinetuneConfig, validate_finetune
from tl_keras.training.flags import config_main, define_config_flags, run_app

define_config_flags(FinetuneConfig)
# Training, then (with --evaluate) the evaluation of the export: tl_keras.studies.
main = config_main(FinetuneConfig, validate_finetune, "tl_keras.studies:finetune_and_evaluate",
                   prog="tl_keras.finetune")


if __name__ == "__main__":
    run_app(main)
