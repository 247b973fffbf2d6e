"""keras-hub backbones as encoders: built from locally saved presets (tiny, random; no
network) at 64 px with 1 and 3 channels, the unet decoder fed by the pyramid levels, the
paper decoder on a /32 latent, export and reload, and the one-line refusals."""
import numpy as np
import pytest

pytest.importorskip("keras_hub")


def _resolved(path):
    from tl_keras.models.hub_preset import resolve
    return resolve("--network", path)


@pytest.mark.parametrize("family", ["resnet", "efficientnet"])
@pytest.mark.parametrize("channels", [1, 3])
def test_encoder_builds_with_pyramid_skips(hub_presets, family, channels):
    from tl_keras.models.hub import build_hub_models
    tm = build_hub_models(hub_presets[family], "target", 64, channels, 2,
                          decoder_variant="unet")
    assert tm.encoder.input_shape == (None, 64, 64, channels)
    assert tm.model.output_shape == (None, 64, 64, 2)
    # Skips: every pyramid level finer than the /32 latent, finest first, then the latent.
    shapes = [tuple(s[1:3]) for s in tm.decoder.input_shape]
    expected = {"resnet": [(16, 16), (8, 8), (4, 4), (2, 2)],  # P2-P4 + latent (P5)
                "efficientnet": [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]}  # P1-P4 + P5
    assert shapes == expected[family]
    assert tm.encoder.output_shape[1:3] == (2, 2)
    # The encoder's weights are the model's: training the model trains the encoder.
    ids = {id(v) for v in tm.model.weights}
    assert all(id(v) in ids for v in tm.encoder.weights)
    out = tm.model(np.zeros((2, 64, 64, channels), np.float32), training=False)
    assert np.isfinite(np.asarray(out)).all()


def test_paper_decoder_on_a_32x_latent(hub_presets):
    from tl_keras.models.hub import build_hub_models
    tm = build_hub_models(hub_presets["resnet"], "target", 64, 1, 3, decoder_variant="paper")
    assert tm.model.output_shape == (None, 64, 64, 3)
    assert tm.decoder.get_layer("decoder__up0").output.shape[1:3] == (4, 4)
    ae = build_hub_models(hub_presets["efficientnet"], "autoencoding", 64, 3, None,
                          decoder_variant="taskonomy")
    assert ae.model.output_shape == (None, 64, 64, 3) and ae.discriminator is not None


def test_input_mapping_rule(hub_presets):
    from tl_keras.models.hub import input_mapping
    a, b = input_mapping(_resolved(hub_presets["resnet"]))
    # [-1, 1] -> pixels 127.5 (x + 1) -> channel means of ImageNet's scale and offset.
    s = np.mean([1 / (255 * v) for v in (0.229, 0.224, 0.225)])
    o = np.mean([-m / v for m, v in ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))])
    assert (a, b) == pytest.approx((127.5 * s, 127.5 * s + o))
    assert a * -1 + b == pytest.approx(o) and a + b == pytest.approx(255 * s + o)
    assert input_mapping(_resolved(hub_presets["efficientnet"])) == (1.0, 0.0)


def test_export_and_reload_by_name(hub_presets, tmp_path):
    from tl_keras.models.hub import build_hub_models
    from tl_keras.weights import load_encoder, read_encoder_meta, save_encoder
    from tl_keras.weights.spec import load_encoder_dir_into
    tm = build_hub_models(hub_presets["resnet"], "target", 64, 3, 2, decoder_variant="unet")
    save_encoder(tm.encoder, str(tmp_path / "enc"), source_task="segmentation", domain="t1")
    meta = read_encoder_meta(str(tmp_path / "enc"))
    assert meta.architecture == "keras_hub" and meta.input_mapping[0] != 1.0
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    reloaded = load_encoder(str(tmp_path / "enc"))
    np.testing.assert_allclose(reloaded(x), tm.encoder(x), rtol=1e-5, atol=1e-5)
    # By name into a fresh one-channel encoder: stem kernels summed (the grey rule).
    grey = build_hub_models(hub_presets["resnet"], "target", 64, 1, 2,
                            decoder_variant="paper").encoder
    report = load_encoder_dir_into(grey, str(tmp_path / "enc"))
    assert report.ok and any("conv1_conv/weights: RGB kernel summed" in n
                             for n in report.notes)
    g = x[..., :1]
    np.testing.assert_allclose(grey(g), tm.encoder(np.repeat(g, 3, -1)), rtol=1e-4,
                               atol=1e-4)


def test_refusals_are_one_line(hub_presets, tmp_path, monkeypatch):
    from tl_keras.models import hub_preset
    from tl_keras.models.hub import build_hub_models
    from tl_keras.models.hub_preset import HubPresetError, check
    with pytest.raises(HubPresetError, match=r"^--network keras_hub:.*vgg: --decoder_variant="
                                             r"unet needs a backbone with pyramid_outputs; "
                                             r"VGGBackbone has none"):
        build_hub_models(hub_presets["vgg"], "target", 64, 1, 2, decoder_variant="unet")
    # This VGG pools twice: its /4 latent fits neither the 16x nor the 32x decoder.
    with pytest.raises(ValueError, match="upsamples the latent 16x"):
        build_hub_models(hub_presets["vgg"], "target", 64, 1, 2, decoder_variant="paper")
    (tmp_path / "notapreset").mkdir()
    (tmp_path / "notapreset" / "config.json").write_text("{}")
    with pytest.raises(HubPresetError, match="not a keras-hub preset directory"):
        check("--network", str(tmp_path / "notapreset"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub_preset, "network_available", lambda *a: False)
    with pytest.raises(HubPresetError) as e:
        check("--network", "resnet_50_imagenet")
    assert "not in the keras-hub download cache" in str(e.value)
    assert "no network" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setattr(hub_preset, "keras_hub_installed", lambda: False)
    with pytest.raises(HubPresetError, match=r"pip install -e \.\[hub\]"):
        check("--network", hub_presets["resnet"])


def test_cached_preset_name_resolves_offline(hub_presets, tmp_path, monkeypatch):
    import shutil
    from tl_keras.models import hub_preset
    cache = tmp_path / "kh"
    for version in ("1", "3"):
        shutil.copytree(hub_presets["resnet"],
                        cache / "models/keras/resnetv1/keras/my_resnet" / version)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    monkeypatch.setattr(hub_preset, "network_available", lambda *a: pytest.fail("probed"))
    resolved = hub_preset.check("--init_from", "my_resnet")
    assert resolved.path.endswith("my_resnet/3")
