"""Evaluation: slice and volume metrics, lesion detection, evaluation runs,
reports and prediction in a scan's native space."""
