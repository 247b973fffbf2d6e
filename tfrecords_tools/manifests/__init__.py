"""Data sets as manifests: the CSV of subjects and files, and presets for published layouts."""
