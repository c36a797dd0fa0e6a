"""Training: the one loop shared by every stage, and its checkpoints."""
