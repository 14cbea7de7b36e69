"""``.emd`` files: Thermo Fisher Velox EMD, or open EMD (Prismatic, py4DSTEM) read as HDF5.

A Velox file (its ``Version`` record says ``"format": "Velox"``) is read with rosettasciio's
Velox reader and its DF4 segments found by title and segment index
(:mod:`dpcstem.io.velox`); any other ``.emd`` file is HDF5 (:mod:`dpcstem.io.hdf5`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from ..errors import UnreadableFileError
from . import hdf5
from ._common import PixelatedData, SegmentAcquisition
from .records import from_records
from ._common import HDF5_FAILURES, reason

#: ``dataset=`` names a dataset (the file is then read as HDF5).
TAKES_DATASET = True


def is_velox(path: Path) -> bool:
    """Whether an ``.emd`` file is a Velox file (its ``Version`` record says so).

    A ``Version`` record that is present but not readable JSON is a damaged file, not an
    open EMD file: it is refused rather than searched for a segment stack.
    """
    try:
        with h5py.File(path, "r") as f:
            version = f["Version"] if "Version" in f else None
            if not isinstance(version, h5py.Dataset):
                return False
            text = version[()]
    except HDF5_FAILURES as exc:
        raise UnreadableFileError(f"{path}: not a readable HDF5/EMD file ({reason(exc)})") from None
    text = text.ravel()[0] if isinstance(text, np.ndarray) and text.size else text
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    try:
        record = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise UnreadableFileError(f"{path}: the EMD 'Version' record is not readable ({reason(exc)}); "
                                  "the file is damaged") from None
    return isinstance(record, Mapping) and record.get("format") == "Velox"


def read_segments(path: Path, dataset=None) -> SegmentAcquisition:
    """The DF4 segments of a Velox file; an open EMD file (or a named dataset) as HDF5."""
    if dataset is not None or not is_velox(path):
        return hdf5.read_segments(path, dataset)
    from rsciio.emd import file_reader

    try:
        records = file_reader(str(path), select_type="images")
    except Exception as exc:  # the Velox reader raises many kinds on a bad file  # noqa: BLE001
        raise UnreadableFileError(f"{path}: not a readable Velox EMD file ({type(exc).__name__}: {reason(exc)})") \
            from None
    return from_records(records, path, (path,), "velox")


def open_frames(path: Path, options) -> PixelatedData:
    """4D-STEM frames of an open EMD file (a Velox file holds no 4-D dataset dpcstem reads)."""
    return hdf5.open_frames(path, options)
