"""A bias series' result file written as the series streams, its layer table (CSV), and registration images.

:class:`SeriesWriter` creates the datasets of DESIGN.md §4 with a leading acquisition axis
and fills one acquisition's slices at a time, so a series never has to be held whole; the
file appears under its name only when it is complete (:func:`~dpcstem.io.output.atomic_output`).
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import h5py
import numpy as np

from ..errors import DPCError, InputDataError, UnreadableFileError
from .hyperspy_view import write_hyperspy_view
from ._common import HDF5_FAILURES, reason
from .npy import load_npy
from .output import atomic_output, require_space
from .results import provenance_attrs


class SeriesWriter:
    """Write a series result one acquisition at a time.

    Use as a context manager: ``put`` each acquisition's slices, then ``finish`` with the
    per-acquisition vectors and the root attributes; leaving the block by an exception
    leaves no file behind.
    """

    def __init__(self, path, count, *, overwrite=False):
        self.path = Path(path)
        self.count = int(count)
        self.overwrite = overwrite
        self._stack = None
        self._file = None
        self._maps = {}

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_output(self.path, overwrite=self.overwrite))
        # no chunk cache: each slice is one chunk, written once, so caching would only hold memory
        self._file = self._stack.enter_context(h5py.File(tmp, "w", rdcc_nbytes=0))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def put(self, index, slices: dict):
        """Write acquisition ``index``'s maps: name → (array (ny, nx), unit); floats as float32.

        The first call checks that the filesystem can hold the whole series: HDF5 meeting a
        full disk would crash the interpreter.
        """
        if not self._maps:
            per_acquisition = sum(np.asarray(a).size * 4 for a, _ in slices.values())
            require_space(self.path, 2 * self.count * per_acquisition + (1 << 20))  # the maps and the net maps
        for name, (array, unit) in slices.items():
            array = np.asarray(array)
            dtype = np.float32 if array.dtype.kind == "f" else array.dtype
            if name not in self._file:
                ds = self._file.create_dataset(name, shape=(self.count, *array.shape), dtype=dtype,
                                               chunks=(1, *array.shape), fillvalue=np.nan if dtype == np.float32 else 0)
                ds.attrs["units"] = unit
                self._maps[name] = ((self.count, *array.shape), unit)
            self._file[name][index] = array.astype(dtype, copy=False)

    def finish(self, vectors: dict, attrs: dict, *, inputs=()):
        """Write the vectors (name → (array, unit)), root attributes, input checksums and the HyperSpy view."""
        f = self._file
        provenance_attrs(f, attrs, inputs)
        for name, (array, unit) in vectors.items():
            f.create_dataset(name, data=np.asarray(array))
            f[name].attrs["units"] = unit
        # the view needs only names and shapes: zero-stride stand-ins, not the maps themselves
        shapes = {name: (np.broadcast_to(np.float32(0), shape), unit) for name, (shape, unit) in self._maps.items()}
        write_hyperspy_view(f, {**shapes, **vectors})


def write_table(path, header, rows, *, overwrite=False) -> Path:
    """A CSV table (header, then rows), written atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in rows:
                writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return Path(path)


def read_image(path, *, dataset=None):
    """One 2-D image (a registration image): ``.npy``, TIFF, or an HDF5 dataset (``dataset``, required there)."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(f"{path}: image file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = load_npy(path)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        elif suffix in (".h5", ".hdf5", ".emd", ".nxs"):
            if dataset is None:
                raise InputDataError(f"{path}: name the dataset that holds the image")
            with h5py.File(path, "r") as f:
                node = f[dataset] if dataset in f else None
                if not isinstance(node, h5py.Dataset):
                    raise InputDataError(f"{path}: no dataset {dataset!r} (the registration image)")
                arr = node[()]
        else:
            raise UnreadableFileError(f"{path}: an image must be .npy, .tif or an HDF5 dataset, got {suffix!r}")
    except DPCError:
        raise
    except HDF5_FAILURES as exc:
        raise UnreadableFileError(f"{path}: cannot read the image ({reason(exc)})") from None
    arr = np.asarray(arr)
    if arr.dtype.kind not in "uif" or arr.ndim != 2:
        raise InputDataError(f"{path}: a registration image must be a 2-D array of numbers, got {arr.dtype} "
                             f"of shape {arr.shape}")
    return arr.astype(np.float64)
