"""Generated street scenes, the per-data-set writers of demo and test data, and the shipped demo model."""
from pathlib import Path

# The demo model (its variant.yml beside it), shipped in the package; the checkout's models/demo links here
DEMO_MODEL = Path(__file__).resolve().parent / "model" / "checkpoint.pth"
