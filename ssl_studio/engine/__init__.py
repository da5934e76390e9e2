"""The training engine: trainer, diagnostics, evaluation and run folders (no Qt)."""
