"""What training, evaluation and localization all run on: the devices of a TensorFlow session
(tf.distribute) and the variables it saves and restores (checkpoints)."""
