"""Layer names, TF-slim conventions, full-size shapes and task composition of the model
builders (exact sizes, serialisation, mixed precision: tests/tl_keras/models/test_networks.py)."""
import numpy as np
import pytest


def _values(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.fixture(scope="module")
def full_encoder():
    from tl_keras.models import build_encoder
    return build_encoder(256)


def test_full_size_encoder_counts(full_encoder):
    enc = [w for w in full_encoder.weights if w.path.startswith("encoder__")]
    comp = [w for w in full_encoder.weights if w.path.startswith("compress1")]
    assert full_encoder.output_shape == (None, 16, 16, 8)
    assert (len(enc), _values(enc)) == (265, 23_561_152)  # 23.56 M incl. BN moving stats
    assert (len(comp), _values(comp)) == (5, 147_488)  # 0.147 M
    names = {layer.name for layer in full_encoder.layers}
    assert "encoder__block2__unit_4__bottleneck_v1__conv2__BatchNorm" in names
    assert "encoder__block4__unit_1__bottleneck_v1__shortcut" in names
    assert "encoder__block4__unit_2__bottleneck_v1__shortcut" not in names


def test_encoder_slim_conventions(full_encoder):
    import keras
    layers = full_encoder.layers
    bns = [l for l in layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 54 and all((l.momentum, l.epsilon) == (0.9, 1e-5) for l in bns)
    strided = [l for l in layers if isinstance(l, keras.layers.Conv2D) and l.strides != (1, 1)]
    # downsampling in the 3x3 of the LAST unit of blocks 1 and 2, explicit padding + VALID
    assert [l.name for l in strided] == ["encoder__conv1",
                                         "encoder__block1__unit_3__bottleneck_v1__conv2",
                                         "encoder__block2__unit_4__bottleneck_v1__conv2"]
    for conv in strided:
        pad = full_encoder.get_layer(conv.name + "__pad")
        k = conv.kernel_size[0]
        assert conv.padding == "valid" and pad.padding == (((k - 1) // 2,) * 2,) * 2


def test_full_size_decoder_output_shape():
    # Counts, variables and the discriminators: tests/tl_keras/models/test_networks.py (the harness).
    from tl_keras.models import build_decoder
    assert build_decoder((16, 16, 8), 3).output_shape == (None, 256, 256, 3)


@pytest.mark.parametrize("size,channels", [(32, 1), ((48, 64), 3)])
def test_task_models_shapes(size, channels):
    from tl_keras.models import TASKS, build_encoder, build_task_models
    enc = build_encoder(size, channels, latent_channels=4)
    h, w = (size, size) if isinstance(size, int) else size
    x = np.random.default_rng(0).uniform(-1, 1, (2, h, w, channels)).astype("float32")
    assert enc(x).shape == (2, h // 16, w // 16, 4)
    expected = {"segmentation": (2, h, w, 5), "target": (2, h, w, 5),
                "autoencoding": (2, h, w, channels), "reconstruction": (2, h, w, channels),
                "classification": (2, 5)}
    for task in TASKS:
        tm = build_task_models(task, enc, num_classes=5)
        out = tm.model(x, training=False)
        if task == "simsiam":  # projections z and predictions p, one vector per image
            z, p = out
            assert z.shape == p.shape and z.shape[0] == 2 and len(z.shape) == 2, task
            continue
        assert tuple(out.shape) == expected[task], task
        if task == "autoencoding":
            assert float(np.abs(out).max()) <= 1.0
            d = tm.discriminator(np.concatenate([x, x], -1))
            assert d.shape[0] == 2 and d.shape[-1] == 1
        assert tm.encoder is enc


def test_paper_decoder_has_ten_layers():
    # Output shapes and counts of both paper variants: tests/tl_keras/models/test_networks.py.
    from tl_keras.models import build_decoder
    dec = build_decoder((2, 2, 8), 2, variant="paper")
    assert len([l for l in dec.layers if l.weights]) == 19  # 9 conv+BN pairs + output conv


def test_bad_arguments():
    from tl_keras.models import build_decoder, build_encoder, build_task_models
    with pytest.raises(ValueError, match="multiple of 16"):
        build_encoder(40)
    with pytest.raises(ValueError, match="variant"):
        build_decoder((2, 2, 8), 2, variant="unet")
    with pytest.raises(ValueError, match="task"):
        build_task_models("depth", build_encoder(32), num_classes=2)
