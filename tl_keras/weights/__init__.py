"""Pre-trained weights for the Taskonomy encoder and its task parts.

* :func:`load_taskonomy` - Taskonomy task-bank TF1 checkpoints, by name, with a report;
* :func:`load_slim_resnet50`, :func:`load_keras_resnet50` - ImageNet ResNet-50;
* :func:`save_encoder`, :func:`load_encoder`, :func:`read_encoder_meta` - our format;
* :func:`init_encoder` - one entry point for ``scratch | PATH | taskonomy:PATH | imagenet:PATH``.

CLIs: ``python -m tl_keras.weights.inspect CKPT`` and ``python -m tl_keras.weights.convert``.
"""
from tl_keras.weights.encoder_io import load_encoder, read_encoder_meta, save_encoder
from tl_keras.weights.imagenet import load_keras_resnet50, load_slim_resnet50
from tl_keras.weights.init import SPEC_HELP, init_encoder
from tl_keras.weights.mapping import weight_map
from tl_keras.weights.report import LoadReport, WeightLoadError
from tl_keras.weights.taskonomy import checkpoint_layout, load_taskonomy

__all__ = [
    "LoadReport", "SPEC_HELP", "WeightLoadError", "checkpoint_layout", "init_encoder",
    "load_encoder", "load_keras_resnet50", "load_slim_resnet50", "load_taskonomy",
    "read_encoder_meta", "save_encoder", "weight_map",
]
