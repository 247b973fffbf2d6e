"""``--init_from keras_hub:PRESET``: the spec's grammar, checks, labels and loading from
presets saved locally from tiny random backbones (no network): the encoder reproduces the
keras-hub backbone on the mapped input, and the one grey rule (RGB first-conv kernels
summed) makes a one-channel encoder equal the RGB one on the grey slice repeated."""
import numpy as np
import pytest

pytest.importorskip("keras_hub")


def _backbone(path):
    import keras_hub
    return keras_hub.models.Backbone.from_preset(path)


def test_spec_grammar_source_and_label(hub_presets):
    from tl_keras.weights.spec import InitSpec, source_label
    spec = InitSpec.parse("keras_hub:" + hub_presets["resnet"])
    assert (spec.kind, spec.path) == ("keras_hub", hub_presets["resnet"])
    spec.check()
    assert spec.source() == ("keras_hub:resnet", "natural")
    assert spec.label() == "keras-hub resnet"
    assert source_label("keras_hub:resnet_50_imagenet", "natural") == "keras-hub resnet_50_imagenet"
    assert InitSpec.parse("keras_hub:resnet_50_imagenet").label() == \
        "keras-hub resnet_50_imagenet"


@pytest.mark.parametrize("family", ["resnet", "efficientnet"])
def test_loaded_encoder_reproduces_the_backbone(hub_presets, family):
    from tl_keras.models.hub import build_hub_models
    from tl_keras.weights.spec import InitSpec
    path = hub_presets[family]
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    rgb = build_hub_models(path, "target", 64, 3, 2, decoder_variant="unet").encoder
    before = np.asarray(rgb(x))
    report = InitSpec.parse("keras_hub:" + path).load(rgb)
    assert report.ok and len(report.matched) == len(rgb.weights)
    reference = _backbone(path)
    a, b = (127.5 / 255 / 0.2260, 127.5 / 255 / 0.2260 - 0.449 / 0.2260) \
        if family == "resnet" else (1.0, 0.0)
    expected = np.asarray(reference(a * x + b))
    np.testing.assert_allclose(rgb(x), expected, rtol=1e-3, atol=1e-4)
    assert not np.allclose(before, expected, atol=1e-2)  # the load changed the outputs
    # The grey rule: one channel, stem kernels summed, equals RGB on the repeated slice.
    grey = build_hub_models(path, "target", 64, 1, 2, decoder_variant="unet").encoder
    report = InitSpec.parse("keras_hub:" + path).load(grey)
    stem = "conv1_conv" if family == "resnet" else "stem_conv"
    assert f"{stem}/weights: RGB kernel summed over channels for a 1-channel input" in \
        report.notes
    g = x[..., :1]
    np.testing.assert_allclose(grey(g), rgb(np.repeat(g, 3, -1)), rtol=1e-4, atol=1e-4)


def test_bad_specs_are_one_line(hub_presets, tmp_path, monkeypatch):
    from tl_keras.models import hub_preset
    from tl_keras.models.presets import build_models
    from tl_keras.weights.spec import InitSpec, WeightLoadError
    (tmp_path / "not_a_preset").mkdir()
    (tmp_path / "not_a_preset" / "weights.h5").write_text("")
    cases = {
        str(tmp_path / "not_a_preset"): "not a keras-hub preset directory",
        "resnet_50_imagenet": "no network to download it",
        "": "empty",
    }
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr(hub_preset, "network_available", lambda *a: False)
    for preset, problem in cases.items():
        with pytest.raises(WeightLoadError) as e:
            InitSpec.parse("keras_hub:" + preset).check()
        line = str(e.value)
        assert line.startswith("--init_from keras_hub:") and problem in line, line
        assert "\n" not in line
    # Loading into an encoder that is not a keras-hub backbone.
    tm = build_models("tiny", "target", 64, 1, 2)
    with pytest.raises(WeightLoadError, match="not a keras-hub backbone; use --network"):
        InitSpec.parse("keras_hub:" + hub_presets["resnet"]).load(tm.encoder)
    # Another architecture: strict mode refuses before assigning anything.
    from tl_keras.models.hub import build_hub_models
    eff = build_hub_models(hub_presets["efficientnet"], "target", 64, 1, 2,
                           decoder_variant="unet").encoder
    before = [w.numpy().copy() for w in eff.weights]
    with pytest.raises(WeightLoadError, match="missing in source"):
        InitSpec.parse("keras_hub:" + hub_presets["resnet"]).load(eff)
    assert all(np.array_equal(w.numpy(), v) for w, v in zip(eff.weights, before))


def test_finetune_from_a_preset(hub_presets, tiny_data_dir, tmp_path, capfd):
    """A short fine-tuning run (Python API) initialised from a keras-hub preset directory:
    1-channel input, unet skips, the source label and the grey rule in the log."""
    from tl_keras.models.hub import hub_models_hook
    from tl_keras.training import run_finetune
    from tl_keras.training.config import FinetuneConfig
    from tl_keras.models.export import load_exported
    path = hub_presets["resnet"]
    config = FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "ft"),
                            batch_size=2, max_steps=2, input_channels=1,
                            decoder_variant="unet", init_from="keras_hub:" + path)
    result = run_finetune(config, hub_models_hook(path))
    assert result["source_label"] == "keras-hub resnet" and result["steps"] == 2
    assert np.isfinite(result["final_loss"])
    log = capfd.readouterr().out
    assert "conv1_conv/weights: RGB kernel summed over channels" in log
    assert "60 matched, 0 skipped, 0 missing" in log
    model, meta = load_exported(str(tmp_path / "ft"))
    assert model.input_shape == (None, 32, 32, 1) and meta.source_label == "keras-hub resnet"
