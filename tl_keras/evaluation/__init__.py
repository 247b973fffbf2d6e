"""Evaluation: slice and volume metrics, lesion detection, evaluation runs,
reports and prediction in a scan's native space."""
from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir

__all__ = ["EvalConfig", "evaluate_model_dir"]
