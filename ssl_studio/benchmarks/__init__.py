"""Benchmarks measured side by side in one run (`ssl-studio bench`)."""
