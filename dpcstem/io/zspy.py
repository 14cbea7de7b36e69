"""HyperSpy's zarr format (``.zspy``, a folder): 4D-STEM frames read lazily by rosettasciio (needs ``zarr``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UnreadableFileError
from ._common import PixelatedData
from ._rsciio import open_lazy

#: A zarr store is a folder, not a file.
IS_FOLDER = True


def open_frames(path: Path, options) -> PixelatedData:
    try:
        import zarr  # noqa: F401
    except ImportError:
        raise UnreadableFileError(f"{path}: reading .zspy files needs the package 'zarr' (pip install zarr)") \
            from None
    return open_lazy("zspy", path, options.chunk_bytes, takes_chunks=False)
