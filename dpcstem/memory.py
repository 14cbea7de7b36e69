"""Refuse work that would not fit in memory, before starting it."""

from __future__ import annotations

import psutil

from .errors import InsufficientMemoryError

#: Share of the available memory one operation may take.
USABLE_FRACTION = 0.8


def require_memory(nbytes: float, what: str):
    """Raise :class:`InsufficientMemoryError` if ``nbytes`` exceed what is free.

    Parameters
    ----------
    nbytes : float
        Bytes the operation will allocate.
    what : str
        What needs them (a file, a computation), for the message.
    """
    available = psutil.virtual_memory().available
    if nbytes > USABLE_FRACTION * available:
        raise InsufficientMemoryError(
            f"{what} needs {nbytes / 2**30:.2f} GiB but only {available / 2**30:.2f} GiB of memory is free; "
            "free memory, crop the scan, or use the chunked 4D path")


def bytes_of(shape, dtype) -> int:
    import numpy as np

    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
