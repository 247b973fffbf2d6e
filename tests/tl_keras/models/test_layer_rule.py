"""One rule for convolutions and batch norm (tl_keras/models/layers.py): every builder of
tl_keras.models uses our Conv2D / BatchNormalization, never keras.layers' own."""
import ast
import glob
import os

from tests.helpers import ROOT

OWN = {"conv.py", "batchnorm.py"}  # where our two classes subclass Keras'


def _keras_layer_uses(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("Conv2D", "BatchNormalization")
                and ast.unparse(node.func.value) in ("keras.layers", "layers", "tf.keras.layers")):
            yield f"{os.path.relpath(path, ROOT)}:{node.lineno} {ast.unparse(node.func)}"


def test_builders_use_our_conv_and_batch_norm():
    paths = [p for p in glob.glob(os.path.join(ROOT, "tl_keras", "models", "*.py"))
             if os.path.basename(p) not in OWN]
    assert len(paths) > 10
    bad = [use for path in paths for use in _keras_layer_uses(path)]
    assert not bad, f"use tl_keras.models.layers.Conv2D / BatchNormalization: {bad}"


def test_the_small_and_discriminator_networks_hold_our_layers():
    from tl_keras.models.batchnorm import BatchNormalization
    from tl_keras.models.conv import Conv2D
    from tl_keras.models.discriminator import build_discriminator
    from tl_keras.models.small import tiny_task_models
    tm = tiny_task_models("autoencoding", 32, 1)
    layers = [layer for m in (tm.encoder, tm.decoder, tm.discriminator) for layer in m.layers]
    convs = [layer for layer in layers if type(layer).__name__ == "Conv2D"]
    norms = [layer for layer in layers if type(layer).__name__ == "BatchNormalization"]
    assert convs and norms
    assert all(isinstance(layer, Conv2D) for layer in convs)
    assert all(isinstance(layer, BatchNormalization) for layer in norms)
    disc = build_discriminator(64, 2)
    assert all(isinstance(layer, Conv2D) for layer in disc.layers
               if type(layer).__name__ == "Conv2D")
