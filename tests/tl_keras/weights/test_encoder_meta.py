"""encoder.json as the typed record EncoderMeta: round trip, files of earlier versions,
one-line WeightLoadError naming the file and the key (no Keras needed)."""
import json

import pytest

from tl_keras.weights.encoder_meta import EncoderMeta
from tl_keras.weights.encoder_io import read_encoder_meta
from tl_keras.weights.load_report import WeightLoadError

# encoder.json of a converted Taskonomy encoder as the first versions wrote it: no
# architecture (a Taskonomy ResNet-50), no network, no format_version.
OLD_ENCODER_JSON = {"format": "tl_keras.encoder", "input_channels": 1, "latent_channels": 8,
                    "image_size": [64, 64], "source_task": "taskonomy:autoencoder",
                    "domain": "natural", "provenance": {"source": "/ckpt"}}

KERAS_JSON = {**OLD_ENCODER_JSON, "format_version": 1, "architecture": "keras_json",
              "keras_config": "{}", "network": "tiny", "tl_keras_version": "0.1",
              "created": "2026-01-01T00:00:00+00:00"}


def _encoder_dir(tmp_path, data):
    (tmp_path / "encoder.json").write_text(json.dumps(data))
    (tmp_path / "encoder.weights.h5").write_text("")
    return str(tmp_path)


def test_round_trip_keeps_the_file():
    meta = EncoderMeta.from_dict(KERAS_JSON)
    assert meta.image_size == (64, 64) and meta.network == "tiny"
    assert meta.to_dict() == KERAS_JSON
    assert EncoderMeta.from_dict(meta.to_dict()) == meta


def test_an_old_file_is_read_with_defaults(tmp_path):
    meta = read_encoder_meta(_encoder_dir(tmp_path, OLD_ENCODER_JSON))
    assert meta.architecture == "taskonomy_resnet50_v1" and meta.format_version == 1
    assert meta.network is None and meta.implied_network == "taskonomy"
    assert meta.tl_keras_version is None and meta.parts == {}
    assert EncoderMeta.from_dict(KERAS_JSON).implied_network == "tiny"
    no_network = {k: v for k, v in KERAS_JSON.items() if k != "network"}
    assert EncoderMeta.from_dict(no_network).implied_network is None


@pytest.mark.parametrize("change, message", [
    ({"input_channels": None}, "missing key 'input_channels'"),
    ({"colour": "red"}, "unknown key(s) ['colour']"),
    ({"input_channels": "three"}, "key 'input_channels' = 'three'"),
    ({"latent_channels": 0}, "key 'latent_channels' = 0: expected a positive integer"),
    ({"image_size": [64]}, "key 'image_size' = [64]"),
    ({"architecture": "vgg"}, "key 'architecture' = 'vgg': unknown architecture"),
    ({"format_version": 2}, "key 'format_version' = 2"),
    ({"architecture": "keras_json"}, "missing key 'keras_config'"),
    ({"architecture": "keras_hub", "backbone_config": {}}, "missing key 'input_mapping'"),
    ({"format": "keras"}, "not a tl_keras.encoder file (format 'keras'"),
])
def test_a_bad_file_is_one_line_naming_file_and_key(tmp_path, change, message):
    data = {k: v for k, v in {**OLD_ENCODER_JSON, **change}.items() if v is not None}
    path = _encoder_dir(tmp_path, data)
    with pytest.raises(WeightLoadError) as info:
        read_encoder_meta(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(tmp_path / "encoder.json"))
    assert message in text


def test_save_encoder_refuses_a_provenance_that_is_not_an_object(tmp_path):
    from tl_keras.models.small import tiny_encoder
    from tl_keras.weights import save_encoder
    with pytest.raises(WeightLoadError, match="key 'provenance'"):
        save_encoder(tiny_encoder(32, 1), str(tmp_path / "enc"), source_task="x", domain="t1",
                     provenance=["not", "a", "dict"])
    assert not (tmp_path / "enc").exists()
