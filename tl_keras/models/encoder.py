"""The Taskonomy encoder: TF-slim ResNet-50 v1 to 1/16 resolution, then ``compress1``.

Mirrors ``resnet_v1_50_16x16`` + ``resnet_encoder_fully_convolutional_16x16x8`` of
StanfordVL/taskonomy (docs/models_weights.md, "Encoder"):

* conv1 7x7/2 with explicit symmetric padding 3, max-pool 3x3/2 'SAME';
* bottleneck units (1x1, 3x3, 1x1) with 3/4/6/3 units; the stride-2 3x3 sits in the
  LAST unit of blocks 1 and 2 (slim convention), blocks 3 and 4 keep 1/16 resolution;
* identity shortcuts are subsampled by a 1x1 max-pool of the unit's stride;
* ``compress1``: 3x3 conv to ``latent_channels`` + BN + ReLU, at the checkpoint root scope.
"""
from __future__ import annotations

import keras

from tl_keras.models.layers import conv_bn, conv_bn_explicit_pad, layer_name

#: (scope, units, depth, bottleneck depth, stride of the last unit).
RESNET50_BLOCKS = (
    ("block1", 3, 256, 64, 2),
    ("block2", 4, 512, 128, 2),
    ("block3", 6, 1024, 256, 1),
    ("block4", 3, 2048, 512, 1),
)
#: The encoder output is 1/16 of the input size.
DOWNSAMPLING = 16


def bottleneck(x, scope: str, depth: int, bottleneck_depth: int, stride: int):
    """slim ``bottleneck`` unit (v1): ReLU(shortcut + conv3(conv2(conv1(x))))."""
    in_depth = x.shape[-1]
    if in_depth == depth:
        shortcut = x
        if stride > 1:  # slim subsample(): 1x1 max-pool with the unit's stride
            shortcut = keras.layers.MaxPooling2D(
                1, stride, name=layer_name(scope + "/subsample"))(x)
    else:
        shortcut = conv_bn(x, scope + "/shortcut", depth, 1, stride=stride, activation=None)
        if stride > 1:  # never happens in ResNet-50 (projections are in stride-1 units)
            raise ValueError(f"{scope}: strided projection shortcut is not slim's layout")
    r = conv_bn(x, scope + "/conv1", bottleneck_depth, 1)
    if stride == 1:
        r = conv_bn(r, scope + "/conv2", bottleneck_depth, 3)
    else:
        r = conv_bn_explicit_pad(r, scope + "/conv2", bottleneck_depth, 3, stride)
    r = conv_bn(r, scope + "/conv3", depth, 1, activation=None)
    out = keras.layers.Add(name=layer_name(scope + "/add"))([shortcut, r])
    return keras.layers.ReLU(name=layer_name(scope + "/relu"))(out)


def build_encoder(image_size=256, input_channels: int = 3, latent_channels: int = 8,
                  name: str = "encoder") -> keras.Model:
    """Build the Taskonomy encoder as a Keras functional model.

    Args:
      image_size: side length (int) or ``(height, width)``; each a multiple of 16.
      input_channels: 3 (RGB, as Taskonomy/ImageNet) or 1 (grey; RGB conv1 kernels are
        summed over channels when loading RGB weights).
      latent_channels: channels of ``compress1`` (Taskonomy: 8; the paper says 4).
      name: model name.

    Returns:
      ``keras.Model`` mapping images in [-1, 1], (N, H, W, C), to the non-negative
      representation (N, H/16, W/16, latent_channels).

    Raises:
      ValueError: on a size that is not a multiple of 16 or unsupported channels.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if h % DOWNSAMPLING or w % DOWNSAMPLING or h <= 0 or w <= 0:
        raise ValueError(f"encoder image_size {image_size} must be a positive multiple of 16")
    if input_channels not in (1, 3):
        raise ValueError(f"encoder input_channels must be 1 or 3, got {input_channels}")
    if latent_channels < 1:
        raise ValueError(f"latent_channels must be >= 1, got {latent_channels}")
    inputs = keras.Input((h, w, input_channels), name="image")
    x = conv_bn_explicit_pad(inputs, "encoder/conv1", 64, 7, 2)
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name=layer_name("encoder/pool1"))(x)
    for block, units, depth, bdepth, last_stride in RESNET50_BLOCKS:
        for i in range(1, units + 1):
            stride = last_stride if i == units else 1
            x = bottleneck(x, f"encoder/{block}/unit_{i}/bottleneck_v1", depth, bdepth, stride)
    x = conv_bn(x, "compress1", latent_channels, 3)
    return keras.Model(inputs, x, name=name)
