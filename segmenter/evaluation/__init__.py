"""Scoring a data set: merge and score images, metrics, the streaming and Ray routes, resumable journals."""
