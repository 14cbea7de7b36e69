"""Four-segment acquisitions: read the A, B, C, D images and what the file knows.

:func:`read_segments` takes a file, a set of four image files, or HyperSpy signals and
returns a :class:`SegmentAcquisition`: the four images stacked in the order A, B, C, D of
DESIGN.md §2, in their native dtype, and the calibration values the file records, already
translated into dpcstem's conventions (field names and units of
:class:`~dpcstem.calibration.Calibration`). What the file does not know is left out; the
caller fills it from the user (the user's value wins, with a warning).

The file's suffix picks its format module (:mod:`dpcstem.io.formats`); this module holds
what is common to all of them. Every input is opened read-only and never modified.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputDataError, UnreadableFileError
from ._common import SEGMENT_NAMES, SegmentAcquisition, require_file, stack_segments
from .formats import module_for
from .records import from_records

__all__ = ["SEGMENT_NAMES", "SegmentAcquisition", "read_segments"]


def read_segments(source, *, dataset=None) -> SegmentAcquisition:
    """Read a four-segment acquisition.

    Parameters
    ----------
    source : path-like, str, sequence or HyperSpy signal
        One of:

        - a ``.npy`` file holding an array of shape (4, ny, nx);
        - a TIFF file of four pages, in the order A, B, C, D;
        - an HDF5 file (``.h5``, ``.hdf5``, ...) with a dataset ``segments`` of shape
          (4, ny, nx), or the dataset named by ``dataset``; attributes of the file root and
          of the dataset named like :class:`~dpcstem.calibration.Calibration` fields
          (``kv``, ``alpha_mrad``, ``step_x_nm``, ...) are read as calibration values, and
          ``bias_v`` (V) into the metadata;
        - a Thermo Fisher Velox ``.emd`` file with the segment images ``DF4-A`` ..
          ``DF4-D``, each found by its title and by the segment index its
          ``Operations.StemInputOperation`` records (A=0 .. D=3), never by its position
          in the file (see :func:`dpcstem.io.velox.velox_calibration` for what is read from the metadata);
          another ``.emd`` (open EMD) is read as HDF5;
        - a Gatan ``.dm3``/``.dm4`` file holding four images (titles ending in A, B, C, D
          set the order; otherwise the order in the file) or one stack of four;
        - four single-image files (TIFF, PNG, ``.npy``), as a sequence of four paths or
          one string ``"A.tif,B.tif,C.tif,D.tif"``, in the order A, B, C, D;
        - a HyperSpy signal holding a stack of four images (data shape (4, ny, nx)), or a
          list of signals: four in the order A, B, C, D, or any number among which four
          are titled ``<name>-A`` .. ``<name>-D`` (signals loaded from a Velox file are
          matched as the file is).
    dataset : str, optional
        HDF5 only: path of the dataset holding the (4, ny, nx) stack.

    Returns
    -------
    SegmentAcquisition
        The segments in native byte order (an extended-precision float is read as float64).

    Warns
    -----
    UserWarning
        When every segment spans the whole range of its type (0 to 255 of ``uint8``, 0 to
        65535 of ``uint16``, 0 to 1 of a float), as images each stretched to their own
        range for display do: such segments are not quantitative.

    Raises
    ------
    UnreadableFileError
        A file is missing, truncated, or not the kind of file its suffix says.
    InputDataError
        Not four segments, segments of different shapes, not 2-D, empty, or not numbers.
    MissingMetadataError
        The file lacks the segment images (a Velox file without the four DF4 segments,
        an HDF5 file without the dataset).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "segments.npy")
    >>> np.save(path, np.ones((4, 3, 5), np.uint16))
    >>> acq = read_segments(path)
    >>> acq.segments.shape, acq.segments.dtype
    ((4, 3, 5), dtype('uint16'))
    """
    acquisition = _read(source, dataset)
    _warn_if_stretched(acquisition)
    return acquisition


def _read(source, dataset) -> SegmentAcquisition:
    if _is_signal(source):
        return _from_signals([source])
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, str) and "," in text and not Path(text).exists():
            return _from_image_files([p.strip() for p in text.split(",")], dataset)
        return _from_file(Path(text), dataset)
    if isinstance(source, Sequence):
        items = list(source)
        if items and all(_is_signal(s) for s in items):
            return _from_signals(items)
        if all(isinstance(s, (str, os.PathLike)) for s in items):
            return _from_image_files(items, dataset)
    raise InputDataError(
        f"segments source must be a file path, four image paths or HyperSpy signals, got {type(source).__name__}")


# -- one file -------------------------------------------------------------------------------

def _from_file(path: Path, dataset) -> SegmentAcquisition:
    require_file(path)
    suffix = path.suffix.lower()
    module = module_for(path, "read_segments")
    if dataset is not None and not getattr(module, "TAKES_DATASET", False):
        raise InputDataError(f"{path}: dataset={dataset!r} applies to HDF5 files only, got a {suffix!r} file")
    if module is None:
        raise UnreadableFileError(
            f"{path}: unknown segments file type {suffix!r}; give .npy, .tif, .h5/.hdf5, a Velox .emd, .dm3/.dm4, "
            "or four image files A,B,C,D")
    return module.read_segments(path, dataset)


# -- four single-image files ----------------------------------------------------------------

def _from_image_files(paths, dataset) -> SegmentAcquisition:
    paths = [Path(p) for p in paths]
    if len(paths) != 4:
        raise InputDataError(
            f"four single-image files A,B,C,D are needed (comma-separated, in that order), got {len(paths)}: "
            f"{', '.join(map(str, paths))}")
    if dataset is not None:
        raise InputDataError(f"dataset={dataset!r} applies to an HDF5 file, not to four image files")
    images = [module_for(p, "read_image").read_image(require_file(p)) for p in paths]
    where = ",".join(map(str, paths))
    return SegmentAcquisition(stack_segments(images, where), {}, tuple(paths),
                              {"source": "images", "titles": [p.name for p in paths]})


# -- HyperSpy signals -----------------------------------------------------------------------

def _is_signal(obj) -> bool:
    return hasattr(obj, "axes_manager") and hasattr(obj, "data") and hasattr(obj, "metadata")


def _from_signals(signals) -> SegmentAcquisition:
    """HyperSpy signals → dict records shared with the DigitalMicrograph path."""
    records = []
    for s in signals:
        in_array_order = sorted((*s.axes_manager.navigation_axes, *s.axes_manager.signal_axes),
                                key=lambda ax: ax.index_in_array)
        axes = [{"name": ax.name, "scale": getattr(ax, "scale", None), "units": ax.units, "navigate": ax.navigate}
                for ax in in_array_order]
        records.append({"data": s.data, "axes": axes, "metadata": s.metadata.as_dictionary(),
                        "original_metadata": s.original_metadata.as_dictionary()})
    return from_records(records, "HyperSpy signal" + ("s" if len(signals) > 1 else ""), (), "hyperspy")


# -- images stretched for display -------------------------------------------------------------

#: A segment whose maximum reaches this share of its type's largest value (with its minimum at
#: zero) spans the type's full range: 8-bit images stretched to 0..254 or 0..255 alike.
STRETCHED_SHARE = 0.99


def _full_range(dtype):
    """(lowest, highest) value of a segment image stretched to the full range of ``dtype``, or None."""
    if dtype.kind == "u":
        return 0, np.iinfo(dtype).max
    if dtype.kind == "f":
        return 0.0, 1.0
    return None


def _warn_if_stretched(acquisition):
    """Warn when every segment spans the full range of its type: each was stretched to its own range.

    A detector's four segments share one gain and see one beam, so their counts differ; an
    image program that normalises each image to its own minimum and maximum (for display,
    or on export to 8-bit) destroys exactly the differences DPC measures.
    """
    segments = acquisition.segments
    full = _full_range(segments.dtype)
    if full is None:
        return
    lows = segments.min(axis=(1, 2))
    highs = segments.max(axis=(1, 2))
    if np.all(lows == full[0]) and np.all(highs >= STRETCHED_SHARE * full[1]) and np.all(highs <= full[1]):
        where = ",".join(str(p) for p in acquisition.paths) or "segments"
        span = ", ".join(f"{name} {lo:g}..{hi:g}" for name, lo, hi in zip(SEGMENT_NAMES, lows, highs))
        warnings.warn(f"{where}: every segment spans the full range of {segments.dtype} ({span}): the images look "
                      "each stretched to its own range, so the segments are not quantitative and the deflection, "
                      "field, charge and potential will be wrong; use the detector's raw counts", stacklevel=3)
