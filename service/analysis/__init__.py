"""Answers computed from the stored runs: fitted exponents, theory next to measurement,
phase diagrams, spectral summaries (numpy/scipy only; cached per sweep state)."""
