"""Convert Taskonomy or ImageNet weights into the tl_keras encoder format (the CLI).

Usage:
  python -m tl_keras.weights.convert --taskonomy CKPT --out DIR [--parts encoder,decoder]
      [--input_channels 1|3] [--strict|--nostrict] [--source_task T] [--domain D]
  python -m tl_keras.weights.convert --imagenet CKPT|FILE.h5 --out DIR [--input_channels 1|3]

Writes ``DIR/encoder.weights.h5`` + ``DIR/encoder.json`` (read by ``finetune --init_from
DIR`` and ``tl_keras.weights.load_encoder``); other ``--parts`` of a Taskonomy checkpoint
are checked and written as ``DIR/<part>.weights.h5`` (their build arguments are in
``encoder.json`` under ``provenance.parts``). A finished conversion with the same options is
not redone; one with other options is refused unless ``--overwrite``.
"""

from __future__ import annotations

import sys

from absl import flags

from tl_common import cli
from tl_keras.weights.conversion import ConvertConfig, convert
from tl_keras.weights.spec import NATURAL

FV = flags.FlagValues()
flags.DEFINE_string("taskonomy", None, "Taskonomy task-bank checkpoint (prefix such as "
                    ".../autoencoder/model.permanent-ckpt, one of its files, or its dir).",
                    flag_values=FV)
flags.DEFINE_string("imagenet", None, "ImageNet ResNet-50: TF-slim resnet_v1_50 checkpoint "
                    "(V1 file or V2 prefix) or Keras Applications ResNet50 .h5 weights.",
                    flag_values=FV)
flags.DEFINE_string("out", None, "Output directory of the encoder.", flag_values=FV)
flags.DEFINE_list("parts", ["encoder"], "Taskonomy parts to load and check; the encoder is "
                  "always written, others as <part>.weights.h5.", flag_values=FV)
flags.DEFINE_enum("input_channels", "0", ["0", "1", "3"], "Encoder input channels; 0: as in "
                  "the checkpoint; 1 sums the RGB conv1 kernels (grey images).", flag_values=FV)
flags.DEFINE_integer("image_size", 256, "Image size recorded for the encoder (weights are "
                     "size-independent; any multiple of 16).", flag_values=FV)
flags.DEFINE_boolean("strict", True, "Fail on any missing, unexpected or mis-shaped tensor.",
                     flag_values=FV)
flags.DEFINE_string("source_task", None, "Recorded source task (default: taskonomy:<dir "
                    "name of the checkpoint> or imagenet).", flag_values=FV)
flags.DEFINE_string("domain", NATURAL, "Recorded source domain.", flag_values=FV)
flags.DEFINE_boolean("overwrite", False, "Redo a finished conversion.", flag_values=FV)


def run(f: flags.FlagValues, args) -> None:
    """Convert the checkpoint the flags name."""
    if not f.out:
        raise cli.UsageError("--out is required")
    convert(ConvertConfig(out=f.out, taskonomy=f.taskonomy, imagenet=f.imagenet,
                          parts=tuple(f.parts), input_channels=int(f.input_channels),
                          image_size=f.image_size, strict=f.strict,
                          source_task=f.source_task, domain=f.domain, overwrite=f.overwrite))


main = cli.make_main("convert", FV, __doc__, run, tensorflow=True)

if __name__ == "__main__":
    sys.exit(main())
