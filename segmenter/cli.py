"""Command-line plumbing shared by the scripts: a parser with one-line errors and checked value types."""
from __future__ import annotations

import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse with full-sentence help kept as written, and bad flags reported as one `error:` line."""

    def __init__(self, description: str | None = None, example: str | None = None, **kwargs) -> None:
        epilog = f"example:\n  {example}" if example else None
        super().__init__(description=description, epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _integer(text: str, lo: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < lo:
        raise argparse.ArgumentTypeError(f"must be {'positive' if lo == 1 else f'>= {lo}'}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    return _integer(text, 0)


def _number(text: str, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a {'non-negative' if allow_zero else 'positive'} number, got {text}")
    return value


def positive_float(text: str) -> float:
    return _number(text, allow_zero=False)


def non_negative_float(text: str) -> float:
    return _number(text, allow_zero=True)


def add_window_flags(parser: argparse.ArgumentParser) -> None:
    """--image-size, --window-size, --window-stride: the same flags and help in every script."""
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help="Short side S: images are resized to fit (2*S, S) keeping their ratio. Default: the "
                             "variant's inference_kwargs.im_size, else dataset_kwargs.image_size.")
    parser.add_argument("--window-size", type=positive_int, default=None,
                        help="Side of the square windows. Default: the variant's crop size.")
    parser.add_argument("--window-stride", type=positive_int, default=None,
                        help="Step between windows, at most the window size. Default: window size - 32, the "
                             "guide's choice (736 for 768 windows); upstream evaluation uses 512.")


def print_notes(notes) -> None:
    for note in notes:
        print(f"note: {note}")
