"""What only some users install (pyproject's extras), asked for by the code that needs it, with one line naming the
extra to install when it is missing."""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import SegmenterError

PACKAGE = "segmenter-infer"


def installed(module: str) -> bool:
    """Whether a module can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, feature: str) -> ModuleType:
    """The module, imported; missing, a one-line error saying which extra of this package provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SegmenterError(f"{feature} needs {module.split('.')[0]}, which is not installed here: pip install "
                             f"'{PACKAGE}[{extra}]' (in a checkout, bash setup.sh installs every extra)") from None
