"""Refuse work that would not fit in memory, before starting it: what a run really holds.

The figures below are measured, not guessed: ``tests/contracts/test_memory.py`` runs the work in a
subprocess, reads its peak resident memory, and fails when a figure is below what the work
holds or far above it.

The environment variable ``DPCSTEM_MEMORY_LIMIT`` (bytes, or with a suffix ``K``, ``M``,
``G``: ``DPCSTEM_MEMORY_LIMIT=16G``) caps what dpcstem takes on a shared machine.
"""

from __future__ import annotations

import os
import re

from .errors import InsufficientMemoryError

#: Share of the available memory one operation may take.
USABLE_FRACTION = 0.8

#: Bytes one reconstruction holds per scan pixel at its peak, beside the segments it is given:
#: the float32 maps, the float64 field and divergence (freed before the potential), and the
#: potential's transforms the size of the scan (measured: 98 with either charge method).
RECONSTRUCTION_BYTES_PER_PIXEL = 120

#: Bytes a bias series may hold per scan pixel at its peak, beside the segments of the
#: acquisition being read, whatever the number of acquisitions: the series is streamed (one
#: acquisition's maps, the reference's deflection and the result file's buffers), so 8 × 2048²
#: stays under 2 GiB.
SERIES_BYTES_PER_PIXEL = 512

#: Environment variable that caps the memory dpcstem takes.
LIMIT_VARIABLE = "DPCSTEM_MEMORY_LIMIT"

#: Alignment of reads and writes around the page cache (``O_DIRECT``): file offsets, lengths
#: and buffer addresses, a multiple of any device's logical block.
DIRECT_ALIGN = 4096


def aligned_bytes(size, align=DIRECT_ALIGN):
    """``size`` bytes (uninitialised) starting at a multiple of ``align``."""
    import numpy as np

    raw = np.empty(size + align, np.uint8)
    skip = -raw.ctypes.data % align
    return raw[skip:skip + size]


def physical_memory() -> int:
    """Bytes of memory the machine has (what the page cache could hold at most)."""
    import psutil  # (here: modules that need only the constants stay light)

    return psutil.virtual_memory().total


def available_memory() -> tuple[int, bool]:
    """Bytes of memory free for dpcstem, and whether :data:`LIMIT_VARIABLE` set that figure."""
    import psutil

    available = psutil.virtual_memory().available
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return available, False
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([KMG]?)i?B?", text, re.IGNORECASE)
    if match is None:
        raise InsufficientMemoryError(f"{LIMIT_VARIABLE}={text!r}: give a number of bytes, e.g. 16G or 512M")
    limit = int(float(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " "))
    return (limit, True) if limit < available else (available, False)


def require_memory(nbytes: float, what: str):
    """Raise :class:`InsufficientMemoryError` if ``nbytes`` exceed what is free.

    Parameters
    ----------
    nbytes : float
        Bytes the operation will allocate.
    what : str
        What needs them (a file, a computation), for the message.
    """
    available, limited = available_memory()
    if nbytes > USABLE_FRACTION * available:
        where = f" ({LIMIT_VARIABLE})" if limited else ""
        raise InsufficientMemoryError(
            f"{what} needs {nbytes / 2**30:.2f} GiB but only {available / 2**30:.2f} GiB of memory is free{where}; "
            "free memory, crop the scan, or use the chunked 4D path")


def reconstruction_bytes(shape) -> int:
    """Bytes a reconstruction of a (ny, nx) scan holds beside its segments."""
    ny, nx = shape[-2:]
    return int(ny) * int(nx) * RECONSTRUCTION_BYTES_PER_PIXEL


def series_bytes(segments_shape, dtype) -> int:
    """Bytes a streamed bias series of (4, ny, nx) ``dtype`` segments holds at its peak, however many there are."""
    import numpy as np

    ny, nx = segments_shape[-2:]
    return int(ny) * int(nx) * (SERIES_BYTES_PER_PIXEL + 4 * np.dtype(dtype).itemsize)


def bytes_of(shape, dtype) -> int:
    import numpy as np

    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
