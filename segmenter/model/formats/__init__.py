"""The checkpoint formats this package reads, one record each (record.py), one module each, one line to register."""
from __future__ import annotations

from . import mmseg, paddle, upstream
from .record import Format, Renamed

FORMATS: dict[str, Format] = {f.name: f for f in (mmseg.FORMAT, paddle.FORMAT, upstream.FORMAT)}  # upstream last:
# it reads any description file the others do not claim, and names what it lacks

__all__ = ["FORMATS", "Format", "Renamed", "description_format"]


def description_format(text: str) -> Format:
    """The format whose description file this text is (a variant.yml, an mmseg config, a PaddleSeg config)."""
    return next(f for f in FORMATS.values() if f.reads_description(text))
