"""Pixelated 4D-STEM acquisitions, opened lazily: nothing is read until it is reduced.

:func:`open_pixelated` recognises the file by its suffix (:mod:`dpcstem.io.formats`) and
returns a :class:`PixelatedData`: the frames as a lazy array of shape (scan_y, scan_x,
ky, kx) and whatever calibration the file records.

==================  ============================================  ==========================
suffix              reader                                        lazy array
==================  ============================================  ==========================
``.mib``            rosettasciio ``quantumdetector`` (Merlin)     Dask, chunks memory-mapped
``.blo``            rosettasciio ``blockfile``                    Dask, chunks memory-mapped
``.zspy``           rosettasciio ``zspy`` (needs ``zarr``)        Dask over the zarr store
``.hspy``, ``.h5``, HDF5 (h5py): HyperSpy, py4DSTEM, open EMD,    Dask, each chunk read by
``.hdf5``, ``.emd``   a dataset given by path                       opening the file by name;
                                                                  a contiguous, unfiltered,
                                                                  native-order dataset:
                                                                  ``np.memmap`` (read-only)
``.npy``            NumPy                                         ``np.memmap`` (read-only)
anything else       raw binary: ``shape`` and ``dtype`` given     ``np.memmap`` (read-only)
==================  ============================================  ==========================

A memory map is reduced as the file is read, in order, with the file's SHA-256 taken in
the same pass. Every Dask array here reads its chunks by file name, so it can be computed on a
``dask.distributed`` cluster whose workers see the same file system. Frames stored
big-endian (Merlin) are byte-swapped chunk by chunk as they are read. The memory a run
will hold is checked from the scan shape the file declares, before any frame is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DPCError, InputDataError, MissingMetadataError, UnreadableFileError
from ._common import PixelatedData, native_dtype, require_scan_memory
from .formats import module_for
from ._common import reason

__all__ = ["BYTES_PER_POSITION", "CHUNK_BYTES", "FrameOptions", "PixelatedData", "open_pixelated"]

#: Target size of one Dask chunk of frames, in bytes.
CHUNK_BYTES = 64 * 2**20

#: Memory ``dpcstem com`` holds per scan position, in bytes (measured: moments, centre of
#: mass, deflection, field, charge and potential maps with the temporaries of their
#: transforms, and the result written).
BYTES_PER_POSITION = 400


@dataclass(frozen=True)
class FrameOptions:
    """What :func:`open_pixelated` passes to a format module's ``open_frames``."""

    dataset: str | None = None
    scan_shape: tuple | None = None
    shape: tuple | None = None
    dtype: object = None
    offset: int = 0
    chunk_bytes: int = CHUNK_BYTES
    bytes_per_position: int = BYTES_PER_POSITION


def open_pixelated(path, *, dataset=None, scan_shape=None, shape=None, dtype=None, offset=0,
                   chunk_bytes=CHUNK_BYTES, bytes_per_position=BYTES_PER_POSITION) -> PixelatedData:
    """Open a 4D-STEM file lazily.

    Parameters
    ----------
    path : path-like
        The file (see the table in the module docstring for the formats).
    dataset : str, optional
        HDF5 only: path of the 4-D dataset inside the file. Without it, the one 4-D
        dataset in the file is used (an error lists them where there are several).
    scan_shape : (int, int), optional
        (scan_y, scan_x): for files that store a flat list of frames (a Merlin file
        without its scan shape, a ``.npy`` or HDF5 dataset of shape (n, ky, kx)).
    shape : tuple of int, optional
        Raw binary only: (scan_y, scan_x, ky, kx).
    dtype : dtype-like, optional
        Raw binary only: the stored type, with byte order where it matters (``">u2"``).
    offset : int
        Raw binary only: bytes before the first frame.
    chunk_bytes : int
        Target size in bytes of one Dask chunk of frames.
    bytes_per_position : int
        Memory a run holds per scan position (maps, moments, temporaries), checked against
        the free memory from the scan shape the file declares, before anything is read;
        the default is what ``dpcstem com`` holds (:data:`BYTES_PER_POSITION`). 0 skips
        the check.

    Returns
    -------
    PixelatedData

    Raises
    ------
    UnreadableFileError
        The file is missing or is not of the kind its suffix says.
    MissingMetadataError
        The scan shape, the dataset or the raw layout cannot be told from the file.
    InsufficientMemoryError
        The scan the file declares needs more memory than is free (one line: the file,
        the declared shape, the bytes needed and available).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    module = module_for(path, "open_frames")
    if not (path.is_file() or (getattr(module, "IS_FOLDER", False) and path.is_dir())):
        raise UnreadableFileError(f"{path}: 4D-STEM file not found")
    if (shape is not None or dtype is not None) and not getattr(module, "TAKES_LAYOUT", False):
        raise InputDataError(f"{path}: shape= and dtype= describe raw binary files only, not {suffix!r} files")
    options = FrameOptions(dataset, scan_shape, shape, dtype, offset, chunk_bytes, bytes_per_position)
    try:
        out = module.open_frames(path, options)
    except (DPCError, Warning):  # a warning made an error (warnings filter) is the reader's own word, not a failure
        raise
    except Exception as exc:  # a reader's own failure on a file it cannot parse
        raise UnreadableFileError(f"{path}: cannot read it as a {suffix or 'raw'} 4D-STEM file ({reason(exc)})") \
            from None
    out.data = _to_four_d(out.data, path, scan_shape)
    if out.kind not in ("npy", "raw"):  # Dask arrays convert chunk by chunk; memory maps are converted per block
        native = native_dtype(out.data.dtype, f"{path}: frames")
        if native != out.data.dtype:
            out.data = out.data.astype(native)
    require_scan_memory(path, out.shape, bytes_per_position)
    return out


# -- helpers --------------------------------------------------------------------------------

def _to_four_d(data, path, scan_shape):
    if scan_shape is not None:
        if len(tuple(scan_shape)) != 2 or min(int(n) for n in scan_shape) < 1:
            raise InputDataError(f"{path}: scan_shape must be two positive sizes (scan_y, scan_x), got "
                                 f"{tuple(scan_shape)}")
    if data.ndim == 4:
        if scan_shape is not None and tuple(scan_shape) != tuple(data.shape[:2]):
            raise InputDataError(f"{path}: the file's scan is {tuple(data.shape[:2])}, "
                                 f"not the given scan_shape {tuple(scan_shape)}")
        return data
    if data.ndim == 3:
        if scan_shape is None:
            raise MissingMetadataError(f"{path}: the file holds {data.shape[0]} frames without a scan shape; "
                                       "give scan_shape=(scan_y, scan_x) (--scan-shape NY NX)")
        sy, sx = (int(n) for n in scan_shape)
        if sy * sx != data.shape[0]:
            raise InputDataError(f"{path}: scan_shape {sy}x{sx} = {sy * sx} frames, the file has {data.shape[0]}")
        return data.reshape(sy, sx, *data.shape[1:])
    raise InputDataError(f"{path}: frames of shape {data.shape}; 4D-STEM data is (scan_y, scan_x, ky, kx)")
