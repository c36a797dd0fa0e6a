import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_v2_behavior()


@pytest.fixture
def graph():
    """A fresh default graph for each test that builds TensorFlow ops."""
    g = tf.Graph()
    with g.as_default():
        yield g
