"""Data readers (one module per real format), collators and the embedded synthetic data generators."""
