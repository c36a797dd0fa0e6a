"""Evaluation: running a checkpoint, retrieval, metrics, reports and figures."""
