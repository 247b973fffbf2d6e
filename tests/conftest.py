import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest.ini runs the suite in one process per core (pytest-xdist): one TensorFlow
    # thread each keeps them from competing for the cores (tests are small ops).
    for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """A 32 px, 1-channel synthetic shard data set (train/val/test)."""
    from tests.helpers import make_tiny_dataset
    d = tmp_path_factory.mktemp("tiny_data")
    make_tiny_dataset(str(d))
    return str(d)


@pytest.fixture(scope="session", autouse=True)
def _kernel_gradient_rule_in_every_scope(tmp_path_factory):
    """The per-test settings below, for module- and session-scoped fixtures too (they train
    the reference runs that tests compare bit for bit): the fixed kernel-gradient rule of
    our Conv2D, which every builder uses, and a private speed cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TL_KERAS_KERNEL_GRADIENT", "rule")
    patch.setenv("TL_KERAS_SPEED_CACHE", str(tmp_path_factory.mktemp("speed") / "cache.json"))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _auto_precision_is_float32(monkeypatch, tmp_path):
    """``--mixed_precision auto`` means float32 in tests on every machine (results must not
    depend on whether the CPU has native bfloat16, and nothing is timed); tests of bfloat16
    ask for it, tests of the measurement put the candidates back. Speed measurements go to
    a per-test cache file, never the user's; kernel gradients follow the fixed rule."""
    from tl_keras.training import precision
    monkeypatch.setattr(precision, "candidates", lambda *a, **k: ("none",))
    monkeypatch.setenv("TL_KERAS_SPEED_CACHE", str(tmp_path / "speed_cache.json"))
    monkeypatch.setenv("TL_KERAS_KERNEL_GRADIENT", "rule")


@pytest.fixture(scope="session")
def hub_presets(tmp_path_factory):
    """keras-hub presets saved from tiny, randomly initialised backbones (no network):
    ``resnet`` (with an ImageNet-style image converter), ``efficientnet``, ``vgg`` (no
    pyramid outputs); ``{name: directory}``."""
    from tests.helpers import save_hub_presets
    return save_hub_presets(str(tmp_path_factory.mktemp("hub_presets")))
