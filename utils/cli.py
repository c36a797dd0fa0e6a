"""Command-line entry points: the project's own errors end with their message, not a traceback."""
import sys

from utils.training.checkpoints import CheckpointError
from utils.config import ConfigError
from utils.data.dataset import DataError

EXPECTED = (ConfigError, DataError, CheckpointError, FileNotFoundError)


def graph_mode():
    """TensorFlow 1.x behaviour (placeholders, Session, Saver, reference variables), as the original
    code ran; entry points call it once, before they build a graph."""
    import tensorflow.compat.v1 as tf
    tf.get_logger().setLevel("ERROR")
    tf.disable_v2_behavior()


def run(main, argv=None):
    """Call main(argv) in graph mode; print expected errors (bad config, data, checkpoint, interrupt) cleanly."""
    from utils.training.trainer import TrainingStopped
    graph_mode()
    try:
        return main(argv) or 0
    except TrainingStopped as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 130 if stop.reason == "interrupted" else 1
    except EXPECTED as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; what was saved is kept (continue a stage with --resume)", file=sys.stderr)
        return 130
