"""What goes into the network: data-set specs, images and their views, window plans, a run's settings."""
