"""What a person reads: the evaluation report, pictures with legends, predictions on one's own images and videos."""
