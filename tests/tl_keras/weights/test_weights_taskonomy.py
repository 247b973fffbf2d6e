"""Taskonomy TF1 checkpoints -> Keras models, checked against plain tf.nn forward passes."""
import re

import numpy as np
import pytest

from tests import taskonomy_reference as ts

TOL = 1e-4


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """TF1 checkpoints written with Saver from one graph, under Taskonomy/slim names.

    ``ae``: autoencoder layout (root encoder, compress1, decoder K=3, discriminator 6 ch,
    Adam slots, beta powers, global_step); ``ff``: class_1000 layout (``feedforward/``
    prefix, head for 64 px, 10 classes); ``slim``: ``resnet_v1_50/`` + logits, also as the
    V1 file ``slim_v1/resnet_v1_50.ckpt`` (TF-slim's download format); ``grey``: an
    encoder-only file with a 1-channel conv1; ``disc_missing`` / ``disc_extra``:
    discriminator-only files for strict-mode errors.
    """
    rng = np.random.default_rng(0)
    enc = ts.encoder_tensors(rng)
    dec = ts.decoder_tensors(rng, 3)
    disc = ts.discriminator_tensors(rng, 6)
    head = ts.head_tensors(rng, 4 * 4 * 8, 10)
    extra = {"resnet_v1_50/logits/weights": rng.standard_normal((1, 1, 2048, 1000), np.float32),
             "resnet_v1_50/logits/biases": np.zeros(1000, np.float32),
             "discriminator/conv6/weights": np.ones((4, 4, 1, 1), np.float32)}
    grey_conv1 = enc["encoder/conv1/weights"].sum(2, keepdims=True)
    tensors = {**enc, **dec, **disc, **head, **extra, "grey/conv1": grey_conv1}
    slots = ["encoder/conv1/weights", "compress1/weights", "decoder/decoder_output/weights",
             "discriminator/conv2/BatchNorm/gamma"]
    ident = {k: k for k in {**enc, **dec, **disc}}
    ident.update({f"{k}/Adam{s}": f"{k}/Adam{s}" for k in slots for s in ("", "_1")})
    ident.update(beta1_power="beta1_power", beta2_power="beta2_power", global_step="global_step")
    disc_only = {k: k for k in disc}
    slim = {**{"resnet_v1_50/" + k[len("encoder/"):]: k for k in enc if k.startswith("encoder/")},
            "resnet_v1_50/logits/weights": "resnet_v1_50/logits/weights",
            "resnet_v1_50/logits/biases": "resnet_v1_50/logits/biases",
            "global_step": "global_step"}
    layouts = {
        "ae": ident,
        "ff": {**{f"feedforward/{k}": k for k in enc}, **{k: k for k in head},
               "global_step": "global_step"},
        "slim": slim,
        "slim_v1/resnet_v1_50.ckpt": slim,
        "grey": {**{k: k for k in enc}, "encoder/conv1/weights": "grey/conv1"},
        "disc_missing": {k: k for k in disc_only if k != "discriminator/conv4/BatchNorm/gamma"},
        "disc_extra": {**disc_only, "discriminator/conv6/weights": "discriminator/conv6/weights"},
    }
    root = tmp_path_factory.mktemp("ckpt")
    paths = ts.write_tf1_checkpoints(root, tensors, layouts, slots_for=slots)
    return {"paths": paths, "enc": enc, "dec": dec, "disc": disc, "head": head}


@pytest.fixture(scope="module")
def enc64(ckpts):
    """A 64 px RGB encoder loaded from the autoencoder checkpoint (shared: building is slow)."""
    return _loaded_encoder(ckpts, 64)[0]


def _loaded_encoder(ckpts, size, channels=3):
    from tl_keras.models import build_encoder
    from tl_keras.weights import load_taskonomy
    enc = build_encoder(size, channels)
    report = load_taskonomy(ckpts["paths"]["ae"], {"encoder": enc})
    return enc, report


def test_full_size_encoder_matches_tf_reference(ckpts):
    enc, report = _loaded_encoder(ckpts, 256)
    assert report.ok and len(report.matched) == 270
    reasons = report.skipped
    assert reasons["global_step"] == "training step counter"
    assert reasons["beta1_power"].startswith("optimizer state")
    assert reasons["encoder/conv1/weights/Adam_1"] == "optimizer slot"
    assert reasons["decoder/conv2/weights"] == "part 'decoder' not requested"
    assert "270 matched" in report.summary()
    x = np.random.default_rng(1).uniform(-1, 1, (1, 256, 256, 3)).astype("float32")
    out = enc(x, training=False)
    assert out.shape == (1, 16, 16, 8)
    assert ts.rel_err(out, ts.reference_encoder(ckpts["enc"], x)) <= TOL


def test_same_padding_instead_of_explicit_padding_fails(ckpts, enc64, monkeypatch):
    import tl_keras.models.encoder as encoder_module
    from tl_keras.models.layers import conv_bn
    x = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    ref = ts.reference_encoder(ckpts["enc"], x)
    assert ts.rel_err(enc64(x, training=False), ref) <= TOL
    monkeypatch.setattr(encoder_module, "conv_bn_explicit_pad",
                        lambda x, scope, f, k, s, activation="relu":
                        conv_bn(x, scope, f, k, stride=s, activation=activation))
    same, _ = _loaded_encoder(ckpts, 64)
    assert ts.rel_err(same(x, training=False), ref) > 1e-2


def test_decoder_and_discriminator_match_tf_reference(ckpts):
    from tl_keras.models import build_decoder, build_discriminator
    from tl_keras.weights import load_taskonomy
    dec = build_decoder((4, 4, 8), 3, output_activation="tanh")
    disc = build_discriminator(64, 6)
    report = load_taskonomy(ckpts["paths"]["ae"], {"decoder": dec, "discriminator": disc})
    assert len(report.matched) == 67 + 19
    assert report.skipped["encoder/conv1/weights"] == "part 'encoder' not requested"
    rng = np.random.default_rng(3)
    z = rng.uniform(0, 2, (2, 4, 4, 8)).astype("float32")
    assert ts.rel_err(dec(z, training=False), ts.reference_decoder(ckpts["dec"], z)) <= TOL
    y = rng.uniform(-1, 1, (2, 64, 64, 6)).astype("float32")
    assert ts.rel_err(disc(y, training=False), ts.reference_discriminator(ckpts["disc"], y)) <= TOL


def test_classification_checkpoint_with_feedforward_prefix(ckpts, enc64):
    from tl_keras.models import build_task_models
    from tl_keras.weights import load_taskonomy
    tm = build_task_models("classification", enc64, num_classes=10)
    report = load_taskonomy(ckpts["paths"]["ff"], {"encoder": tm.encoder, "head": tm.head})
    assert report.ok and len(report.matched) == 270 + 7
    x = np.random.default_rng(4).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    ref = ts.reference_head(ckpts["head"], ts.reference_encoder(ckpts["enc"], x))
    assert ts.rel_err(tm.model(x, training=False), ref) <= TOL


def test_grey_encoder_equals_rgb_encoder_on_repeated_input(ckpts, enc64):
    grey, report = _loaded_encoder(ckpts, 64, 1)
    assert any("summed over channels" in n for n in report.notes)
    x = np.random.default_rng(5).uniform(-1, 1, (2, 64, 64, 1)).astype("float32")
    a, b = grey(x, training=False), enc64(np.repeat(x, 3, axis=-1), training=False)
    assert ts.rel_err(a, b) <= 1e-5


def test_strict_mode_names_missing_extra_and_misshaped(ckpts):
    from tl_keras.models import build_discriminator
    from tl_keras.weights import WeightLoadError, load_taskonomy
    disc = build_discriminator(32, 6)
    before = [w.numpy().copy() for w in disc.weights]
    with pytest.raises(WeightLoadError, match="missing.*discriminator/conv4/BatchNorm/gamma"):
        load_taskonomy(ckpts["paths"]["disc_missing"], {"discriminator": disc})
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, disc.weights))  # nothing half-loaded
    with pytest.raises(WeightLoadError, match="unexpected.*discriminator/conv6/weights"):
        load_taskonomy(ckpts["paths"]["disc_extra"], {"discriminator": disc})
    with pytest.raises(WeightLoadError, match=r"discriminator/conv1/weights \(5, 5, 6, 64\) vs \(5, 5, 4, 64\)"):
        load_taskonomy(ckpts["paths"]["ae"], {"discriminator": build_discriminator(32, 4)})
    report = load_taskonomy(ckpts["paths"]["disc_missing"], {"discriminator": disc}, strict=False)
    assert not report.ok and report.missing == ["discriminator/conv4/BatchNorm/gamma"]
    assert len(report.matched) == 18


def test_slim_resnet_v1_50_imagenet_checkpoint(ckpts, enc64):
    """slim and autoencoder files hold the same encoder values; compress1 must stay as is."""
    from tl_keras.weights import init_encoder, weight_map
    enc = enc64
    compress_before = enc.get_layer("compress1").kernel.numpy().copy()
    report = init_encoder(enc, "imagenet:" + ckpts["paths"]["slim"])
    assert report.ok and len(report.matched) == 265
    assert sorted(report.left_random) == sorted(n for n in ckpts["enc"] if n.startswith("compress1"))
    assert report.skipped["resnet_v1_50/logits/weights"].startswith("ImageNet classifier")
    for name, var in weight_map(enc).items():
        if name.startswith("encoder/"):
            np.testing.assert_array_equal(var.numpy(), ckpts["enc"][name])
    np.testing.assert_array_equal(enc.get_layer("compress1").kernel.numpy(), compress_before)


def test_inspect_cli_lists_each_tensor_and_its_target(ckpts, capsys):
    import re

    from tl_keras.weights import inspect_checkpoint as inspect
    assert inspect.main(["inspect", ckpts["paths"]["ae"], "--parts", "encoder,discriminator"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^encoder/conv1/weights +\[7, 7, 3, 64\] +-> encoder__conv1/kernel$", out, re.M)
    assert re.search(r"^compress1/BatchNorm/moving_variance +\[8\] +"
                     r"-> compress1__BatchNorm/moving_variance$", out, re.M)
    assert re.search(r"^encoder/conv1/weights/Adam +\S.* skip: optimizer slot$", out, re.M)
    assert re.search(r"^decoder/conv2/weights .* skip: part 'decoder' not requested$", out, re.M)
    assert "all tensors map cleanly" in out
    assert inspect.main(["inspect", ckpts["paths"]["disc_missing"]]) == 3
    assert re.search(r"^discriminator/conv4/BatchNorm/gamma +MISSING", capsys.readouterr().out, re.M)
    assert inspect.main(["inspect", ckpts["paths"]["slim"]]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^resnet_v1_50/conv1/weights +\[7, 7, 3, 64\] +-> encoder__conv1/kernel$", out, re.M)
    assert re.search(r"^resnet_v1_50/logits/biases .* skip: ImageNet classifier", out, re.M)
    assert re.search(r"^compress1/weights +not in source", out, re.M)


def test_convert_cli_writes_encoder_format(ckpts, tmp_path, capsys):
    from tl_keras.weights import convert, load_encoder, load_part, read_encoder_meta
    out = tmp_path / "ae_grey"
    argv = ["convert", "--taskonomy", ckpts["paths"]["ae"], "--out", str(out),
            "--parts", "encoder,discriminator", "--input_channels", "1", "--image_size", "64"]
    assert convert.main(argv) == 0
    meta = read_encoder_meta(str(out))
    assert (meta.input_channels, meta.latent_channels, meta.image_size) == (1, 8, (64, 64))
    assert meta.source_task == "taskonomy:ae"
    assert meta.parts["discriminator"] == {"in_channels": 6}
    assert (out / "discriminator.weights.h5").is_file()
    enc = load_encoder(str(out))
    np.testing.assert_allclose(enc.get_layer("encoder__conv1").kernel.numpy(),
                               ckpts["enc"]["encoder/conv1/weights"].sum(2, keepdims=True), rtol=1e-6)
    disc = load_part(str(out), "discriminator")
    y = np.random.default_rng(6).uniform(-1, 1, (2, 64, 64, 6)).astype("float32")
    assert ts.rel_err(disc(y, training=False), ts.reference_discriminator(ckpts["disc"], y)) <= TOL
    capsys.readouterr()
    assert convert.main(argv) == 0 and "already converted" in capsys.readouterr().out
    missing = tmp_path / "nope" / "model.permanent-ckpt"
    assert convert.main(["convert", "--taskonomy", str(missing), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convert: error:") and str(missing) in err


def test_slim_v1_checkpoint_file_loads_exactly(ckpts, enc64, tmp_path, capsys):
    """TF-slim's resnet_v1_50.ckpt is a V1 checkpoint (one file, no .index); on main it fell
    through to the Keras .h5 loader."""
    import os

    from tl_keras.weights import convert, init_encoder, weight_map
    from tl_keras.weights import inspect_checkpoint as inspect
    v1 = ckpts["paths"]["slim_v1/resnet_v1_50.ckpt"]
    assert sorted(os.listdir(os.path.dirname(v1))) == ["resnet_v1_50.ckpt"]
    report = init_encoder(enc64, "imagenet:" + os.path.dirname(v1))  # the folder holding it
    assert report.ok and len(report.matched) == 265 and report.source == v1
    for name, var in weight_map(enc64).items():
        if name.startswith("encoder/"):
            np.testing.assert_array_equal(var.numpy(), ckpts["enc"][name])
    assert inspect.main(["inspect", v1, "--image_size", "64"]) == 0
    assert re.search(r"^resnet_v1_50/conv1/weights +\[7, 7, 3, 64\] +-> encoder__conv1/kernel$",
                     capsys.readouterr().out, re.M)
    cut = tmp_path / "cut" / "resnet_v1_50.ckpt"
    cut.parent.mkdir()
    cut.write_bytes(open(v1, "rb").read()[: os.path.getsize(v1) // 2])
    capsys.readouterr()
    assert convert.main(["convert", "--imagenet", str(cut), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{cut}: not a TF checkpoint" in err


def test_each_taskonomy_form_loads_the_same_weights(ckpts, enc64):
    import os

    from tl_keras.weights import InitSpec
    prefix = ckpts["paths"]["ae"]
    for form in (prefix, os.path.dirname(prefix), prefix + ".index",
                 prefix + ".data-00000-of-00001"):
        spec = InitSpec.parse(f"taskonomy:{form}")
        report = spec.load(enc64)
        assert report.ok and len(report.matched) == 270 and report.source == prefix
        assert spec.label() == "Taskonomy ae"
    np.testing.assert_array_equal(enc64.get_layer("compress1").kernel.numpy(),
                                  ckpts["enc"]["compress1/weights"])


def test_convert_follows_the_checkpoint_channels_and_refuses_changed_options(ckpts, tmp_path,
                                                                              capsys):
    from tl_keras.weights import convert, read_encoder_meta
    out = str(tmp_path / "grey")
    base = ["convert", "--taskonomy", ckpts["paths"]["grey"], "--out", out, "--image_size", "64"]
    assert convert.main(base) == 0
    meta = read_encoder_meta(out)
    assert (meta.input_channels, meta.source_task, meta.domain) == \
        (1, "taskonomy:grey", "natural")
    capsys.readouterr()
    for extra, change in ((["--image_size", "32"], "image_size [64, 64] -> [32, 32]"),
                          (["--domain", "indoor"], "domain natural -> indoor"),
                          (["--source_task", "taskonomy:x"], "source_task taskonomy:grey -> "
                                                             "taskonomy:x")):
        argv = base[:-2] + extra if extra[0] == "--image_size" else base + extra
        assert convert.main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and change in err and "--overwrite" in err
    assert read_encoder_meta(out).image_size == (64, 64)  # untouched
