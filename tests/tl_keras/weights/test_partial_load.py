"""A fine-tuning run's export as a source (--init_from RUN_DIR, --init_decoder) into a model
with another class count and input channels: what matches is loaded, the first convolution
adapted 3 -> 1, the rest re-initialised, the table printed; 1 -> 3 is refused in one line.
Also the random-encoder source and the labels of each fine-tuning mode."""
import os

import numpy as np
import pytest


def _export(out_dir, *, channels=3, classes=3, seed=0):
    import keras
    from tl_keras.models.export import ExportMeta, save_exported
    from tl_keras.models.small import tiny_task_models
    keras.utils.set_random_seed(seed)
    tm = tiny_task_models("target", 32, channels, classes)
    save_exported(tm.model, str(out_dir), ExportMeta(
        image_size=(32, 32), input_channels=channels, num_classes=classes, target="anatomy",
        source_task="segmentation", source_domain="t1", source_label="t1 segmentation"))
    return {w.path: w.numpy() for w in tm.model.weights}


@pytest.fixture(scope="module")
def rgb_export(tmp_path_factory):
    run = tmp_path_factory.mktemp("ft") / "run"
    return str(run), _export(run)


def _target(channels=1, classes=2, seed=9):
    import keras
    from tl_keras.models.small import tiny_task_models
    keras.utils.set_random_seed(seed)
    tm = tiny_task_models("target", 32, channels, classes)
    return tm, {w.path: w.numpy() for w in tm.model.weights}


def test_export_with_decoder_loads_matching_adapts_conv1_reinitialises_the_rest(rgb_export):
    from tl_keras.weights import InitSpec
    run, source = rgb_export
    spec = InitSpec.parse(os.path.join(run, "export"))  # the export folder works as well
    assert spec.is_export and spec.input_channels() == 3
    assert spec.source() == ("finetuned:anatomy", "t1")
    assert spec.label() == "anatomy fine-tuned from t1 segmentation"
    tm, fresh = _target()
    report = spec.load(tm.encoder, model=tm.model, decoder=True)
    after = {w.path: w.numpy() for w in tm.model.weights}
    np.testing.assert_allclose(after["enc0/kernel"],
                               source["enc0/kernel"].sum(axis=2, keepdims=True), rtol=1e-6)
    for path in after:  # everything else by name: equal shapes loaded, others untouched
        if path == "enc0/kernel":
            continue
        if path.startswith("decoder_output/"):
            assert np.array_equal(after[path], fresh[path]), path
        else:
            assert np.array_equal(after[path], source[path]), path
    assert [n for n, _ in report.reinitialised] == ["decoder_output/weights",
                                                    "decoder_output/biases"]
    assert report.adapted == [("enc0/weights", (3, 3, 3, 8), (3, 3, 1, 8))]
    table = report.table()
    assert "adapted         enc0/weights" in table and "RGB kernels summed" in table
    assert "re-initialised  decoder_output/weights" in table and "(3, 3, 8, 3)" in table
    assert "loaded          dec0/*" in table


def test_export_encoder_only_skips_the_decoder(rgb_export):
    from tl_keras.weights import InitSpec
    run, source = rgb_export
    tm, fresh = _target(channels=3, classes=2)
    report = InitSpec.parse(run).load(tm.encoder)
    after = {w.path: w.numpy() for w in tm.model.weights}
    encoder = {w.path for w in tm.encoder.weights}
    for path in after:
        assert np.array_equal(after[path], source[path] if path in encoder else fresh[path])
    assert report.skipped and all("--init_decoder" in r for r in report.skipped.values())
    assert "skipped         dec0/weights" in report.table()


def test_one_channel_export_into_three_channels_is_one_line(tmp_path):
    from tl_keras.weights import InitSpec, WeightLoadError
    _export(tmp_path / "grey", channels=1)
    tm, fresh = _target(channels=3)
    with pytest.raises(WeightLoadError) as info:
        InitSpec.parse(str(tmp_path / "grey")).load(tm.encoder, model=tm.model, decoder=True)
    message = str(info.value)
    assert "\n" not in message and "takes 1 input channel(s), this run 3" in message
    assert "--input_channels 1" in message
    assert all(np.array_equal(w.numpy(), fresh[w.path]) for w in tm.model.weights)  # untouched


def test_random_source_and_mode_labels():
    from tl_keras.training.config import FinetuneConfig
    from tl_keras.training.finetuning import source_of
    from tl_keras.weights import InitSpec
    from tl_keras.weights.spec import source_label
    spec = InitSpec.parse("random")
    assert (spec.kind, spec.source(), spec.label()) == ("random", ("random", None),
                                                        "random encoder")
    assert source_label("random", None) == "random encoder"
    frozen = FinetuneConfig(init_from="random", freeze_encoder=True)
    assert source_of("random", frozen.mode_suffix())["source_label"] == "random encoder (frozen)"
    warm = FinetuneConfig(freeze_encoder=True, freeze_epochs=5, encoder_lr_multiplier=0.1)
    assert warm.mode_suffix() == " (frozen 5 epochs, encoder LR x0.1)"
    assert warm.freeze_steps(10, 300) == 50 and frozen.freeze_steps(10, 300) == 300
    assert FinetuneConfig().mode_suffix() == "" and FinetuneConfig().freeze_steps(10, 300) == 0
