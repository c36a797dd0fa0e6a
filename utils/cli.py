"""Command-line entry points: the project's own errors end with their message, not a traceback.

Nothing here imports TensorFlow at import time: `run(..., tensorflow=False)` (the dataset check)
starts without it."""
import sys

from utils.errors import EXPECTED, TrainingStopped
from utils.startup import restore_ctrl_c


def graph_mode():
    """TensorFlow 1.x behaviour (placeholders, Session, Saver, reference variables), as the original
    code ran; entry points call it once, before they build a graph."""
    import tensorflow.compat.v1 as tf
    tf.get_logger().setLevel("ERROR")
    tf.disable_v2_behavior()


TRAINING_INTERRUPTED = "interrupted; what was saved is kept (continue a stage with --resume)"


def run(main, argv=None, interrupted=TRAINING_INTERRUPTED, tensorflow=True):
    """Call main(argv) (in graph mode, unless tensorflow=False); print expected errors (bad config,
    data, checkpoint, interrupt) cleanly.

    `interrupted` is the line a Ctrl-C outside the training loop prints (the loop itself saves and
    says where); entry points that are not training say what a stop means for them. Until
    TensorFlow is loaded a Ctrl-C is still utils/startup.py's one line."""
    if tensorflow:
        graph_mode()
    restore_ctrl_c()
    try:
        return main(argv) or 0
    except TrainingStopped as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 130 if stop.reason == "interrupted" else 1
    except EXPECTED as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
