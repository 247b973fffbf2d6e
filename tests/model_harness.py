"""One check every network builder passes (the idea of keras-hub's ``run_backbone_test``).

:func:`run_model_test` builds a network and checks, in this order: its parameter count
(exact), its output shapes (declared and computed), the serialisation round trips
(Keras JSON config, ``.weights.h5``, and the project's export format for the full
segmentation model: ``segmentation.keras`` + ``model.json``, docs/evaluation.md) and a
bfloat16 mixed-precision forward pass (float32 variables, float32 outputs where the
network promises them, values close to the float32 pass with the same weights).
``tests/tl_keras/models/test_networks.py`` runs it for every network; network-specific facts (layer
names, TF-slim conventions, refusals) stay in their own tests.
"""
from __future__ import annotations

import os

import numpy as np

# The one import of the compact / tiny presets (``width=4`` is the quickstart's compact
# network, ``width=1`` the tiny one); change this line if they move.
from tl_keras.models.small import tiny_task_models as preset_task_models  # noqa: F401

#: bfloat16 keeps 8 bits of mantissa: the relative L2 difference of a whole output to the
#: float32 pass stays well under this for every network here (ResNet-50 included).
BF16_REL_TOLERANCE = 0.05


def _inputs(input_shape, batch: int, seed: int):
    """Random inputs in [-1, 1] (images' range), one array per input of the model."""
    rng = np.random.default_rng(seed)
    shapes = input_shape if isinstance(input_shape, list) else [input_shape]
    xs = [rng.uniform(-1, 1, (batch, *s)).astype(np.float32) for s in shapes]
    return xs if isinstance(input_shape, list) else xs[0]


def _numpy(output):
    return np.asarray(output.numpy() if hasattr(output, "numpy") else output, np.float32)


def _check_export(model, x, expected, tmp_dir: str) -> None:
    """Save with :func:`save_exported`, load with :func:`load_exported`: same outputs, meta."""
    from tl_keras.models.export import ExportMeta, load_exported, save_exported
    h, w, c = model.input_shape[1:]
    meta = ExportMeta(image_size=(h, w), input_channels=c, num_classes=model.output_shape[-1])
    save_exported(model, tmp_dir, meta)
    loaded, loaded_meta = load_exported(tmp_dir)
    assert loaded_meta == meta
    np.testing.assert_array_equal(_numpy(loaded(x, training=False)), expected,
                                  err_msg="export round trip")


def _check_mixed_precision(build, model, x, expected, float32_output: bool) -> None:
    """bfloat16 compute, float32 variables; same weights as ``model`` give close outputs."""
    import keras
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = build()
    finally:
        keras.config.set_dtype_policy(previous)
    assert all(v.dtype == "float32" for v in mixed.weights), "variables must stay float32"
    mixed.set_weights(model.get_weights())
    out = mixed(x, training=False)
    dtype = keras.backend.standardize_dtype(out.dtype)
    assert dtype in (("float32",) if float32_output else ("float32", "bfloat16")), (
        f"mixed-precision output is {dtype}")
    got = _numpy(out)
    assert np.isfinite(got).all()
    rel = np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12)
    assert rel < BF16_REL_TOLERANCE, f"bfloat16 output differs by {rel:.3f} (relative L2)"


def run_model_test(build, *, input_shape, output_shape, num_params: int, tmp_dir,
                   num_variables: int | None = None, float32_output: bool = False,
                   export: bool = False, batch: int = 2, seed: int = 0):
    """Check one network builder; return the built model for further, specific checks.

    Args:
      build: ``() -> keras.Model``, called several times (float32 and bfloat16).
      input_shape: ``(h, w, c)`` of the input without the batch axis, or a list of them
        for a model with several inputs.
      output_shape: the output's shape without the batch axis.
      num_params: exact ``count_params()`` (all variables, BN moving statistics included).
      num_variables: if given, the exact number of variables (kernels, biases, BN's four).
      tmp_dir: an empty folder for the saved files.
      float32_output: the network promises float32 outputs under a mixed policy (its
        output layer computes in float32).
      export: also round-trip the project's export format (full segmentation models).
      batch: batch size of the forward passes.
      seed: seed of the weights and inputs.

    Returns:
      The float32 model.
    """
    import keras
    keras.utils.set_random_seed(seed)
    model = build()
    assert model.count_params() == num_params, (model.name, model.count_params())
    assert num_variables is None or len(model.weights) == num_variables, len(model.weights)
    assert tuple(model.output_shape[1:]) == tuple(output_shape), model.output_shape
    x = _inputs(input_shape, batch, seed)
    expected = _numpy(model(x, training=False))
    assert expected.shape == (batch, *output_shape)

    # Keras JSON: a model of the same architecture, freshly initialised ...
    keras.utils.set_random_seed(seed + 1)
    rebuilt = keras.models.model_from_json(model.to_json())
    assert [v.path for v in rebuilt.weights] == [v.path for v in model.weights]
    assert [v.shape for v in rebuilt.weights] == [v.shape for v in model.weights]
    assert not np.array_equal(_numpy(rebuilt(x, training=False)), expected), (
        "rebuilt with the same weights")
    # ... into which .weights.h5 restores every variable.
    path = os.path.join(str(tmp_dir), "model.weights.h5")
    model.save_weights(path)
    rebuilt.load_weights(path)
    np.testing.assert_array_equal(_numpy(rebuilt(x, training=False)), expected,
                                  err_msg=".weights.h5 round trip")
    if export:
        _check_export(model, x, expected, os.path.join(str(tmp_dir), "run"))
    _check_mixed_precision(build, model, x, expected, float32_output)
    return model
