"""One error type for bad user input, and the CLI wrapper that prints it as one line."""
from __future__ import annotations

import os
import sys
from typing import Callable


class SegmenterError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a script's main; turn a SegmenterError into `error: ...` on stderr and exit 2."""
    for stream in (sys.stdout, sys.stderr):  # paths with undecodable bytes print escaped, never crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        code = main()
    except SegmenterError as exc:
        _close_progress_bars()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # output piped into a reader that stopped (e.g. head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    sys.exit(code or 0)


def _close_progress_bars() -> None:
    """End any open progress bar's line so that the error starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
