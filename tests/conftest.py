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


@pytest.fixture(scope="session")
def city(tmp_path_factory):
    """A tiny synthetic city in VIGOR's formats (4 cities of 4 x 4 tiles), shared by the training tests."""
    from utils.data.synthetic_vigor import generate
    root = tmp_path_factory.mktemp("city")
    return generate(str(root / "synthetic"), seed=1, cities=4, tiles_per_side=4, pano_size=(128, 64),
                    panos_per_tile=1.5)
