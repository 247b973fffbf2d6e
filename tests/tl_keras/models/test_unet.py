"""The skip-connected decoder (``--decoder_variant unet``): parameter counts, that it
learns a toy set, that encoder weights load the same with either decoder, refusals."""
import numpy as np
import pytest

from tests.helpers import dice


def test_taskonomy_unet_decoder_exact_count():
    from tl_keras.models import build_encoder, build_task_models
    encoder = build_encoder(64, 1)
    tm = build_task_models("target", encoder, num_classes=2, decoder_variant="unet")
    assert tm.model.output_shape == (None, 64, 64, 2)
    assert [tuple(s[1:]) for s in tm.decoder.input_shape] == [
        (32, 32, 64), (8, 8, 256), (4, 4, 512), (4, 4, 1024), (4, 4, 8)]
    # level 16: conv (8 + 512 + 1024 -> 256); 8: up 256 -> 128, conv (128 + 256 -> 128);
    # 4: up 128 -> 64, conv 64 -> 64; 2: up 64 -> 32, conv (32 + 64 -> 32);
    # 1: up 32 -> 16, conv 16 -> 16; 3x3 kernels, BN (4 values per channel), no bias;
    # output conv 16 -> 2 with bias.
    expected = (9 * (1544 * 256 + 256 * 128 + 384 * 128 + 128 * 64 + 64 * 64 + 64 * 32
                     + 96 * 32 + 32 * 16 + 16 * 16 + 16 * 2) + 2
                + 4 * (256 + 2 * 128 + 2 * 64 + 2 * 32 + 2 * 16))
    assert tm.decoder.count_params() == expected == 4_461_474
    # The encoder is the same model as with the paper decoder (weights shared with the
    # full model, which holds nothing else but the decoder).
    assert tm.model.count_params() == encoder.count_params() + expected


def test_compact_unet_decoder_exact_count():
    from tl_keras.models.presets import tiny_task_models
    tm = tiny_task_models("target", 64, 3, 2, width=4, decoder_variant="unet")
    assert tm.model.output_shape == (None, 64, 64, 2)
    # Stages enc0-3 (32, 64, 64, 64 channels at /2, /4, /8, /16) and the 8-channel latent;
    # widths min(64, 16 * level): 64 at /16, /8, /4; 32 at /2; 16 at /1.
    expected = (9 * (72 * 64 + 64 * 64 + 128 * 64 + 64 * 64 + 128 * 64 + 64 * 32 + 64 * 32
                     + 32 * 16 + 16 * 16 + 16 * 2) + 2
                + 4 * (64 + 2 * 64 + 2 * 64 + 2 * 32 + 2 * 16))
    assert tm.decoder.count_params() == expected == 308_386


def _toy(n=4, size=32, seed=0):
    """Grey images with one or two bright squares of 2-6 px (the 'lesions')."""
    rng = np.random.default_rng(seed)
    images = 0.3 + 0.1 * rng.random((n, size, size, 1))
    masks = np.zeros((n, size, size), np.int32)
    for i in range(n):
        for _ in range(1 + i % 2):
            s = int(rng.integers(2, 7))
            y, x = rng.integers(2, size - s - 2, 2)
            masks[i, y:y + s, x:x + s] = 1
    images[..., 0] += 0.5 * masks
    return (2 * images - 1).astype(np.float32), masks


def test_unet_overfits_a_toy_set():
    import keras
    import tensorflow as tf
    from tl_keras.training import losses, steps
    from tl_keras.models.presets import tiny_task_models
    keras.utils.set_random_seed(0)
    x, y = _toy()
    tm = tiny_task_models("target", 32, 1, 2, width=2, decoder_variant="unet")
    optimizer = keras.optimizers.Adam(3e-3)
    loss = lambda t, p: losses.segmentation_loss(t, p, [1.0, 5.0], dice=True)  # noqa: E731
    step = tf.function(steps.make_supervised_step(tm.model, optimizer, loss, len(x)))
    for _ in range(150):
        step(tf.constant(x), tf.constant(y))
    pred = np.argmax(tm.model(x, training=False).numpy(), -1) == 1
    assert dice(pred, y == 1) >= 0.9


@pytest.mark.parametrize("network", ["compact", "taskonomy"])
def test_encoder_weights_load_identically_with_either_decoder(network, tmp_path):
    import keras
    from tl_keras.models import build_encoder, build_task_models
    from tl_keras.models.presets import tiny_task_models
    from tl_keras.weights import init_encoder, save_encoder

    def build(variant):
        if network == "compact":
            return tiny_task_models("target", 32, 1, 2, width=4, decoder_variant=variant)
        return build_task_models("target", build_encoder(32, 1), num_classes=2,
                                 decoder_variant=variant)
    keras.utils.set_random_seed(1)
    source = build("paper").encoder
    save_encoder(source, str(tmp_path / "enc"), source_task="segmentation", domain="t1")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    expected = source(x, training=False).numpy()
    for variant in ("paper", "unet"):
        keras.utils.set_random_seed(2)
        tm = build(variant)
        report = init_encoder(tm.encoder, str(tmp_path / "enc"))
        assert len(report.matched) == len(source.weights) and not report.missing
        for a, b in zip(source.weights, tm.encoder.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{variant} {a.path}")
        np.testing.assert_allclose(tm.encoder(x, training=False).numpy(), expected,
                                   rtol=1e-5, atol=1e-6)
        # the full model computes with these same weights (shared, not copied)
        shared = {id(v) for v in tm.model.weights}
        assert all(id(v) in shared for v in tm.encoder.weights)


def test_unet_is_refused_for_autoencoding(tiny_data_dir, tmp_path):
    from tl_keras.models import build_encoder, build_task_models
    from tl_keras.training.config import ConfigError, PretrainConfig
    from tl_keras.training.validation import validate_pretrain
    from tl_keras.models.presets import tiny_task_models
    with pytest.raises(ValueError, match="learns the identity"):
        build_task_models("autoencoding", build_encoder(32, 1), num_classes=None,
                          decoder_variant="unet")
    with pytest.raises(ValueError, match="learns the identity"):
        tiny_task_models("autoencoding", 32, 1, decoder_variant="unet")
    config = PretrainConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "m"),
                            task="autoencoding", decoder_variant="unet")
    with pytest.raises(ConfigError, match="--task=autoencoding keeps its own decoder"):
        validate_pretrain(config)


def test_finetune_evaluate_predict_with_unet(tiny_data_dir, tmp_path):
    """finetune -> export -> reload -> evaluate and sweep, with the skip decoder."""
    import json
    import os
    from tl_keras.models.export import load_exported
    from tl_keras.studies import finetune_and_evaluate
    from tl_keras.training import FinetuneConfig
    from tl_keras.studies.sweeps import SweepConfig, run_sweep
    from tl_keras.models.presets import build_tiny_models
    ft = FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "ft"), batch_size=2,
                        max_steps=2, validate=False, train_subjects=2, input_channels=1,
                        decoder_variant="unet", loss="cross_entropy_dice",
                        class_weights="foreground")
    result = finetune_and_evaluate(ft, build_tiny_models)
    assert 0 <= result["test_dice"] <= 1
    model, meta = load_exported(ft.model_dir)
    assert any(layer.name == "encoder_stages" for layer in model.layers)
    weights = json.load(open(os.path.join(ft.model_dir, "class_weights.json")))["weights"]
    assert weights == [1.0, 5.0]
    sweep = SweepConfig(out_dir=str(tmp_path / "sweep"), sources=(("scratch", "scratch"),),
                        set_sizes=(2,), repeats=1, finetune=ft)
    out = run_sweep(sweep, build_tiny_models)
    assert not out["failed"] and os.path.exists(out["csv"])
