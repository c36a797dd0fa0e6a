"""Graph builders (tf.compat.v1): networks, losses, uncertainty."""
