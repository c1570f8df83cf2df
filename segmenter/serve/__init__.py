"""Segmentations served over HTTP on Ray Serve: the replicas, their endpoints and the page a person uses."""
