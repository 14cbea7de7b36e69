"""Raw binary frames (``.raw``, ``.bin``, ``.dat``, or any suffix no other reader claims).

Nothing in the file says its layout: the shape (scan_y, scan_x, ky, kx), the stored type
with its byte order and the header bytes to skip are given. The frames are memory-mapped
read-only.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputDataError, MissingMetadataError, UnreadableFileError
from ._common import PixelatedData
from ._common import reason

#: ``shape=``, ``dtype=`` and ``offset=`` describe the file.
TAKES_LAYOUT = True


def open_frames(path: Path, options) -> PixelatedData:
    """Frames of a raw binary file laid out as ``options.shape`` of ``options.dtype`` after ``options.offset`` bytes."""
    shape, dtype, offset = options.shape, options.dtype, options.offset
    if shape is None or dtype is None:
        raise MissingMetadataError(f"{path}: a raw binary file needs shape=(scan_y, scan_x, ky, kx) and dtype= "
                                   "(on the command line --raw-shape and --raw-dtype)")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise InputDataError(f"{path}: raw shape must be four positive sizes (scan_y, scan_x, ky, kx), got {shape}")
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise InputDataError(f"{path}: raw dtype {dtype!r} is not a NumPy type ({reason(exc)}); give e.g. <u2, >u2 "
                             "or f4") from None
    if dtype.kind not in "buif" or dtype.itemsize == 0:
        raise InputDataError(f"{path}: raw dtype must be an integer or float type such as <u2, >u2 or f4, got {dtype}")
    offset = int(offset)
    if offset < 0:
        raise InputDataError(f"{path}: raw header offset must be zero or more bytes, got {offset}")
    need = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise UnreadableFileError(f"{path}: {size} bytes, too small for shape {shape} of {dtype} after "
                                  f"{offset} header bytes ({need} bytes needed)")
    return PixelatedData(np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape), path, "raw")
