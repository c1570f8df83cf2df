"""Generated street scenes and the per-data-set writers of demo and test data."""
