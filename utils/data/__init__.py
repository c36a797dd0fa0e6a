"""Data: dataset indexes, batches of indices, image loading, the synthetic city, CVACT, geometry.

Nothing here imports TensorFlow."""
