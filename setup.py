"""Install tl_keras: transfer learning for medical image segmentation (TF 2 / Keras 3)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'TOOL_VERSION = "([^"]+)"',
                    (HERE / "tl_common" / "runinfo.py").read_text()).group(1)

setup(
    name="tl_keras",
    version=VERSION,
    description=("Domain- and task-specific transfer learning for medical image "
                 "segmentation with TensorFlow 2 / Keras 3"),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tl_common", "tl_common.*", "tl_keras", "tl_keras.*",
                                    "tfrecords_tools", "tfrecords_tools.*"]),
    # Label mappings the presets use by default (releases.MICCAI2012_6CLASS).
    package_data={"tfrecords_tools": ["label_maps/*.csv"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "absl-py>=2.1",
        "nibabel>=5.2",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-image>=0.22",
        "pandas>=2.1",
        "SimpleITK>=2.3",
        "nilearn>=0.10.3",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "h5py>=3.10",
    ],
    extras_require={
        # keras-hub backbones as encoders (--network / --init_from keras_hub:PRESET,
        # docs/sources.md); tested against 0.32.
        "hub": ["keras-hub>=0.32,<0.33"],
        "test": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.2", "pytest-xdist>=3.5",
                 "keras-hub>=0.32,<0.33"],
        # benchmarks/bench_vs_torch.py only: the toolkit itself never imports torch.
        "bench": ["torch>=2.13,<2.14"],
    },
    license="Apache-2.0",
)
