import numpy as np


def test_export_round_trip(tmp_path):
    import keras

    from tl_keras.models.export import load_exported, save_exported
    inp = keras.Input((32, 32, 3))
    out = keras.layers.Conv2D(2, 3, padding="same", name="c")(inp)
    model = keras.Model(inp, out)
    save_exported(model, str(tmp_path), {"image_size": 32, "input_channels": 3, "num_classes": 2})
    loaded, meta = load_exported(str(tmp_path))
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert meta.num_classes == 2
    assert not [p for p in (tmp_path / "export").iterdir() if p.name.startswith(".tmp")]


def test_model_json_that_disagrees_with_the_model_is_named(tmp_path):
    import json
    import pytest
    from tests.helpers import export_threshold_model
    from tl_common.records import RecordError
    from tl_keras.models.export import load_exported
    export_threshold_model(tmp_path, size=32)
    path = tmp_path / "export" / "model.json"
    meta = json.loads(path.read_text())
    meta["image_size"] = [64, 64]
    path.write_text(json.dumps(meta))
    with pytest.raises(RecordError, match=r"model.json does not describe .*segmentation.keras "
                                          r"\(height 64 in model.json, 32 in the model; width "
                                          r"64 in model.json, 32 in the model\)"):
        load_exported(str(tmp_path))
