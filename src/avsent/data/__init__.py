"""Data: dataset sources and checks, splits, feature extraction, the feature cache, loading."""
