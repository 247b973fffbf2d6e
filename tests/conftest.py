import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest.ini runs the suite in one process per core (pytest-xdist): one TensorFlow
    # thread each keeps them from competing for the cores (tests are small ops).
    for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

# Speed choices never depend on timing in tests, and never touch the user's speed cache:
# also in session- and module-scoped fixtures and in subprocesses (CLIs, xdist workers),
# which the per-test fixture below does not reach. `--mixed_precision auto` is float32.
os.environ["TL_KERAS_AUTO_PRECISIONS"] = "none"
os.environ["TL_KERAS_KERNEL_GRADIENT"] = "rule"
_speed_dir = tempfile.mkdtemp(prefix="tl_keras_tests_speed_")
atexit.register(shutil.rmtree, _speed_dir, True)
os.environ["TL_KERAS_SPEED_CACHE"] = os.path.join(_speed_dir, "speed.json")

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
def _speed_cache_per_test(monkeypatch, tmp_path):
    """Each test's speed measurements in its own cache file (tests of the measurement
    allow the bfloat16 candidate themselves)."""
    monkeypatch.setenv("TL_KERAS_SPEED_CACHE", str(tmp_path / "speed_cache.json"))


@pytest.fixture(scope="session")
def hub_presets(tmp_path_factory):
    """keras-hub presets saved from tiny, randomly initialised backbones (no network):
    ``resnet`` (with an ImageNet-style image converter), ``efficientnet``, ``vgg`` (no
    pyramid outputs); ``{name: directory}``."""
    from tests.helpers import save_hub_presets
    return save_hub_presets(str(tmp_path_factory.mktemp("hub_presets")))
