"""Quantum Detectors Merlin files (``.mib`` with its ``.hdr``): 4D-STEM frames, read lazily by rosettasciio.

Merlin writes big-endian frames; they are swapped to native order chunk by chunk as they
are read. A file that ends inside a frame, or holds fewer frames than its header records,
is refused rather than read as a smaller scan.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import UnreadableFileError
from ._common import PixelatedData
from ._rsciio import chunk_limit, whole_frames


def open_frames(path: Path, options) -> PixelatedData:
    """Frames of a Merlin file (with its ``.hdr`` beside it), memory-mapped lazily by rosettasciio."""
    from rsciio.quantumdetector import file_reader

    scan_shape, chunk_bytes = options.scan_shape, options.chunk_bytes
    kwargs = {}
    if scan_shape is not None:
        kwargs["navigation_shape"] = tuple(int(n) for n in scan_shape)[::-1]  # rsciio wants (x, y)

    def read(chunks):
        with warnings.catch_warnings(), chunk_limit(chunk_bytes):
            warnings.simplefilter("ignore", DeprecationWarning)
            return file_reader(str(path), lazy=True, chunks=chunks, **kwargs)[0]

    signal = whole_frames(read)
    _check_frames(path, signal["original_metadata"], scan_shape)
    return PixelatedData(signal["data"], path, "mib", metadata={"original_metadata": signal["original_metadata"]})


def _check_frames(path, original, scan_shape):
    """Refuse a Merlin file that ends inside a frame, or holds fewer frames than its .hdr records.

    The reader itself would quietly load the complete frames (or scan rows) of such a file,
    so a truncated copy would pass for a smaller scan. An acquisition that was stopped early
    is read when ``scan_shape`` names the rows and columns of the frames present.
    """
    props = original.get("mib_properties") or {}
    if props.get("raw") or props.get("dtype") is None:
        return  # raw (R64) frames: their size is not told by the header alone; left to the reader
    try:
        frame_bytes = int(props["head_size"]) + math.prod(props["merlin_size"]) * np.dtype(props["dtype"]).itemsize
        size = int(props["file_size"])
    except (KeyError, TypeError, ValueError):
        return  # a layout this check does not know (raw or packed frames): left to the reader
    whole, rest = divmod(size - int(props.get("offset") or 0), frame_bytes)
    if rest:
        raise UnreadableFileError(
            f"{path}: truncated Merlin file: {size} bytes are {whole} whole frames of {frame_bytes} bytes and "
            f"{rest} bytes of a cut frame")
    recorded = None
    hdr = original.get("hdr_file") or {}
    try:
        recorded = int(hdr["Frames in Acquisition (Number)"])
    except (KeyError, TypeError, ValueError):
        pass
    if recorded and whole < recorded:
        given = scan_shape is not None and math.prod(int(n) for n in scan_shape) == whole
        if not given:
            raise UnreadableFileError(
                f"{path}: holds {whole} frames but its .hdr records {recorded}: the file is truncated or the "
                f"acquisition was stopped early; to read the frames present give scan_shape=(rows, columns) "
                f"with rows x columns = {whole} (--scan-shape NY NX)")
