"""The file formats dpcstem reads and writes: one module per format, found by the file's suffix.

==================  ==============  ================================================================
suffix              module          what it holds
==================  ==============  ================================================================
``.npy``            ``npy``         segment stack, one segment image, 4D-STEM frames (read, write)
``.tif``, ``.tiff`` ``tiff``        segment stack of four pages, one segment image
``.h5``, ``.hdf5``, ``hdf5``        segment stack (read, write), 4D-STEM frames (read, write),
``.hdf``, ``.he5``,                 named arrays (write)
``.nxs``, ``.hspy``,
``.py4dstem``
``.emd``            ``emd``         Velox DF4 segments; open EMD (Prismatic, py4DSTEM) as HDF5
``.dm3``, ``.dm4``  ``dm``          four segment images or a stack of four
``.png``, ...       ``image``       one segment image (any format Pillow reads)
``.mib``            ``merlin``      4D-STEM frames (Quantum Detectors Merlin)
``.blo``            ``blockfile``   4D-STEM frames (NanoMegas blockfile)
``.zspy``           ``zspy``        4D-STEM frames (HyperSpy zarr store, a folder)
``.raw``, ``.bin``, ``raw``         4D-STEM frames of a layout given by the user
``.dat``
==================  ==============  ================================================================

A format module offers what its format holds, under fixed names: ``read_segments(path,
dataset)`` → :class:`~dpcstem.io.segments.SegmentAcquisition`, ``read_image(path)`` → one
2-D array, ``open_frames(path, options)`` → :class:`~dpcstem.io.pixelated.PixelatedData`,
and the writers ``write_segments``, ``write_frames``, ``write_arrays``. :func:`module_for`
finds the module of a path for one of these; where no module of that suffix offers it, a
single image is read by ``image`` and frames by ``raw``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import InputDataError

#: Module (under ``dpcstem.io``) → the suffixes it claims.
FORMATS = {
    "npy": (".npy",),
    "tiff": (".tif", ".tiff"),
    "hdf5": (".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".hspy", ".py4dstem"),
    "emd": (".emd",),
    "dm": (".dm3", ".dm4"),
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"),
    "merlin": (".mib",),
    "blockfile": (".blo",),
    "zspy": (".zspy",),
    "raw": (".raw", ".bin", ".dat"),
}

#: Suffix → module name.
SUFFIXES = {suffix: module for module, suffixes in FORMATS.items() for suffix in suffixes}

#: Where no module of the suffix offers the operation: the module that takes any file.
_FALLBACK = {"read_image": "image", "open_frames": "raw"}


def module_for(path, operation):
    """The format module that performs ``operation`` (``"read_segments"``, ...) on ``path``, or None.

    Parameters
    ----------
    path : path-like
    operation : str
        ``read_segments``, ``read_image``, ``open_frames``, ``write_segments``,
        ``write_frames`` or ``write_arrays``.
    """
    name = SUFFIXES.get(Path(path).suffix.lower())
    module = importlib.import_module(f"{__package__}.{name}") if name else None
    if module is not None and hasattr(module, operation):
        return module
    if operation in _FALLBACK:
        return importlib.import_module(f"{__package__}.{_FALLBACK[operation]}")
    return None


def suffixes_for(operation) -> list:
    """Every suffix whose module performs ``operation``, for messages."""
    return [s for s, name in SUFFIXES.items() if hasattr(importlib.import_module(f"{__package__}.{name}"), operation)]


# -- writers -----------------------------------------------------------------------------------

def _writer(path, operation, what):
    module = module_for(path, operation)
    if module is None:
        allowed = ", ".join(suffixes_for(operation))
        raise InputDataError(f"{path}: {what} is written as {allowed}, not {Path(path).suffix.lower() or 'no suffix'!r}")
    return getattr(module, operation)


def write_segments(path, segments, attrs, *, adf=None, overwrite=False) -> Path:
    """Write a four-segment acquisition as :func:`~dpcstem.io.read_segments` reads it back (HDF5).

    Parameters
    ----------
    path : path-like
        Output file (``.h5``, ``.hdf5``); written to a temporary name and renamed into
        place; an existing file is replaced only with ``overwrite``.
    segments : ndarray, shape (4, ny, nx)
        Segment images A, B, C, D.
    attrs : dict
        Calibration (:class:`~dpcstem.calibration.Calibration` field names), ``bias_v``,
        ``title``, ...; None values are left out.
    adf : ndarray (ny, nx), optional
        The simultaneous annular dark-field image, stored as dataset ``haadf`` (counts).
    """
    return _writer(path, "write_segments", "a segments file")(Path(path), segments, attrs, adf=adf,
                                                              overwrite=overwrite)


def write_frames(path, shape, dtype, blocks, *, attrs=None, extra=None, overwrite=False) -> Path:
    """Write a 4D-STEM set block by block (``.h5``/``.hdf5`` or ``.npy``), holding one block at a time.

    Parameters
    ----------
    shape : (scan_y, scan_x, ky, kx)
    dtype : dtype-like
    blocks : iterable of (y0, y1, ndarray)
        Frames of scan rows y0..y1−1.
    attrs : dict, optional
        Attributes of the frames (HDF5 only: ``units``, ``mrad_per_px``, ``kv``, ...).
    extra : dict, optional
        Further datasets name → (array, unit) (HDF5 only).
    """
    return _writer(path, "write_frames", "a 4D-STEM set")(Path(path), shape, dtype, blocks, attrs=attrs,
                                                          extra=extra, overwrite=overwrite)


def write_arrays(path, arrays, attrs=None, *, overwrite=False) -> Path:
    """Write named arrays (name → (array, unit)) and root attributes to one file (HDF5)."""
    return _writer(path, "write_arrays", "a file of named arrays")(Path(path), arrays, attrs, overwrite=overwrite)
