"""One scan from disk to pre-processed slices: native I/O, plausibility checks, registration,
pre-processing and label maps."""
