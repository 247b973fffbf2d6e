"""SYNTHETIC data: phantom cohorts (NIfTI) and natural-image samples (scikit-image photos)."""
