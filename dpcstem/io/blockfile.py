"""NanoMegas / ASTAR blockfiles (``.blo``): 4D-STEM frames read lazily by rosettasciio, memory-mapped."""

from __future__ import annotations

from pathlib import Path

from ._common import PixelatedData
from ._rsciio import open_lazy


def open_frames(path: Path, options) -> PixelatedData:
    return open_lazy("blockfile", path, options.chunk_bytes, takes_chunks=True)
