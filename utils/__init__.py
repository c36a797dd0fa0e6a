"""Data, training, evaluation and command-line helpers."""
import os

# TensorFlow C++ info lines on every start hide what matters; set TF_CPP_MIN_LOG_LEVEL=0 to see them
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
