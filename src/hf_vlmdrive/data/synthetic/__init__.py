"""Synthetic data generators that write the library's real formats, so everything runs offline."""
