"""Training: the loop, metrics, checkpoints, reports and augmentation."""
