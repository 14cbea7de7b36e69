"""NumPy ``.npy`` files: a (4, ny, nx) segment stack, one segment image, or 4D-STEM frames.

Segments and images are read whole (after a memory check from the shape the header
declares); frames are memory-mapped read-only and written block by block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DPCError, UnreadableFileError
from ..memory import require_memory
from ._common import SEGMENT_NAMES, PixelatedData, SegmentAcquisition, check_stack
from ._common import reason
from .output import atomic_output


def load_npy(path, *, mmap_mode=None):
    """A ``.npy`` array (memory-mapped with ``mmap_mode="r"``); a file of another kind is named as such.

    NumPy takes a file without its header for a pickle and answers with advice about
    ``allow_pickle``; a file that does not start with the NumPy magic is refused first.
    """
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":
        raise UnreadableFileError(f"{path}: not a readable .npy array file (it does not start with the NumPy header)")
    return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)



def _read(path: Path) -> np.ndarray:
    try:
        mapped = load_npy(path, mmap_mode="r")
        require_memory(mapped.nbytes, f"{path}")
        return np.array(mapped)
    except DPCError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UnreadableFileError(f"{path}: not a readable .npy array file ({reason(exc)})") from None


def read_segments(path: Path, dataset=None) -> SegmentAcquisition:
    """A (4, ny, nx) stack in the order A, B, C, D."""
    return SegmentAcquisition(check_stack(_read(path), path), {}, (path,),
                              {"source": "npy", "titles": list(SEGMENT_NAMES)})


def read_image(path: Path) -> np.ndarray:
    """One segment image (ny, nx)."""
    return _read(path)


def open_frames(path: Path, options) -> PixelatedData:
    """4D-STEM frames (or a flat stack of frames), memory-mapped read-only."""
    return PixelatedData(load_npy(path, mmap_mode="r"), path, "npy")


def write_frames(path: Path, shape, dtype, blocks, *, attrs=None, extra=None, overwrite=False) -> Path:
    """Write frames of ``shape`` and ``dtype`` from ``blocks``, an iterable of (y0, y1, frames) in scan order.

    A ``.npy`` file holds one array: ``attrs`` and ``extra`` (kept by the HDF5 writer) are
    not written. Only one block is held in memory at a time.
    """
    dtype = np.dtype(dtype)
    with atomic_output(path, overwrite=overwrite, size=int(np.prod(shape)) * dtype.itemsize) as tmp:
        with open(tmp, "wb") as fh:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
            np.lib.format.write_array_header_2_0(fh, header)
            for _, _, block in blocks:
                fh.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
    return Path(path)
