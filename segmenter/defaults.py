"""The suite's defaults, each written once: what a run does when a flag or a file does not say."""
from __future__ import annotations

STRIDE_MARGIN = 32  # the guide's stride is the window less this: 736 for windows of 768
BATCH_SIZE = 1  # windows per engine call
WORKERS = 2  # threads decoding and preprocessing images
IMAGES_AHEAD = 2  # images prepared while the engine runs
CALIBRATION_IMAGES = 8  # images whose windows calibrate static int8, spread over the data
# Static int8 calibrates on about this many pixels of windows (8 windows of 768: NNCF runs each through the model
# about 2.5 times, so this sets what quantizing costs), one window per calibration image at least
CALIBRATION_PIXELS = 8 * 768 * 768
MAX_CALIBRATION_WINDOWS = 300
VARIANT_NAME = "variant.yml"  # the released variant, beside checkpoint.pth


def default_stride(window: int) -> int:
    """The guide's window stride for a window size: window - STRIDE_MARGIN (at least 1)."""
    return max(window - STRIDE_MARGIN, 1)


def calibration_windows(window: int, images: int = CALIBRATION_IMAGES) -> int:
    """How many windows of a window size calibrate static int8 on `images` images: CALIBRATION_PIXELS' worth, one
    per image at least, MAX_CALIBRATION_WINDOWS at most."""
    return min(MAX_CALIBRATION_WINDOWS, max(images, -(-CALIBRATION_PIXELS // (window * window))))


SERVE_HOST, SERVE_PORT = "127.0.0.1", 8000  # where the server listens: this machine only, unless told

DEFAULT_OPSET = 17  # ONNX opset of exports (11 for older ATC releases)
EXPORT_TOLERANCE = 1e-3  # max |ONNX Runtime - PyTorch| on the logits of a random batch after an export
