"""Evaluation: slice and volume metrics, lesion detection, evaluation runs,
reports and prediction in a scan's native space.

The exports are imported on first use, so the light ``catalogue`` (metric and
detection-preset names, read by the CLIs' flags) loads without pandas or scipy.
"""
from tl_keras.models.lazy import lazy_exports

_EXPORTS = {
    "tl_keras.evaluation.evaluate": ("EvalConfig", "evaluate_model_dir"),
}
__all__ = ["EvalConfig", "evaluate_model_dir"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
