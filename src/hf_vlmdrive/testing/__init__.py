"""Tiny models and fixtures built locally for tests, demos and scripts."""
