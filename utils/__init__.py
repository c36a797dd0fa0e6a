"""Data, training, evaluation and command-line helpers."""
