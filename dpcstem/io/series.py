"""A bias series' result file written as the series streams, its layer table (CSV), and registration images.

:class:`SeriesWriter` creates the datasets of DESIGN.md §4 with a leading acquisition axis
and fills one acquisition's slices at a time, so a series never has to be held whole; the
file appears under its name only when it is complete (:func:`~dpcstem.io.output.atomic_output`).

The maps are most of the file (8 × 2048² acquisitions: 1.7 GB). Each slice is one chunk of
its dataset, allocated when the dataset is created at an aligned place in the file, so a
large slice (from 1 MiB) is a range of bytes, written on a thread of its own while the caller
computes the next acquisition, and around the page cache (``O_DIRECT``) where the file
system allows it: the file is forced to the disk before it is renamed into place anyway, and
a copy through the page cache costs a core as much as the rest of the series. HDF5 itself
writes only the file's structure; small slices (at once, on the caller's thread: a second
thread's allocations would make the peak memory depend on timing), and any a file system
refuses to write directly, go through h5py.
"""

from __future__ import annotations

import contextlib
import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from ..errors import DPCError, InputDataError, UnreadableFileError
from ..memory import DIRECT_ALIGN
from .hyperspy_view import write_hyperspy_view
from ._common import HDF5_FAILURES, reason
from .npy import load_npy
from .output import DirectWrites, atomic_output, require_space
from .results import provenance_attrs


class SeriesWriter:
    """Write a series result one acquisition at a time.

    Use as a context manager: ``put`` each acquisition's slices, then ``finish`` with the
    per-acquisition vectors and the root attributes; leaving the block by an exception
    leaves no file behind. ``put`` returns while its large slices are still being written (one
    acquisition's at most, held until the next ``put``): the caller must not change those
    arrays afterwards. A write's
    error is raised by the next ``put``, by ``finish`` or when the block ends. A slice never
    put reads as NaN (floats) or 0.
    """

    #: Slices from this size on are written around the page cache (where the file system allows).
    DIRECT_BYTES = 1 << 20

    def __init__(self, path, count, *, overwrite=False):
        self.path = Path(path)
        self.count = int(count)
        self.overwrite = overwrite
        self._stack = None
        self._file = None
        self._pool = None
        self._direct = None
        self._maps = {}  # name → (shape, unit)
        self._written = {}  # name → acquisitions written
        self._writing = None  # the write in flight (a Future)
        self._held = None  # the slices of the last put
        self._space_checked = False

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_output(self.path, overwrite=self.overwrite))
        # chunks from DIRECT_BYTES on start at a multiple of DIRECT_ALIGN; no chunk cache: each
        # slice is one chunk, written once, so caching would only hold memory
        self._file = self._stack.enter_context(h5py.File(tmp, "w", rdcc_nbytes=0, alignment_threshold=self.DIRECT_BYTES,
                                                         alignment_interval=DIRECT_ALIGN))
        self._direct = self._stack.enter_context(DirectWrites(tmp))
        # the last write ends (or fails) while the file is still open
        self._pool = self._stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="dpcstem-series-writer"))
        self._stack.callback(self._settle, quiet=True)
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            try:
                self._settle()  # an error of the last write is this block's error
                self._fill_missing()
            except BaseException as error:
                if not self._stack.__exit__(type(error), error, error.__traceback__):
                    raise
                return False
        return self._stack.__exit__(*exc)

    def _settle(self, quiet=False):
        """Wait for the write in flight and let its slices go; raise its error (unless ``quiet``:
        the block already failed)."""
        writing, self._writing, self._held = self._writing, None, None
        if writing is not None:
            if quiet:
                writing.exception()
            else:
                writing.result()

    def put(self, index, slices: dict):
        """Write acquisition ``index``'s maps: name → (array (ny, nx), unit); floats as float32.

        The first call checks that the filesystem can hold the whole series: HDF5 meeting a
        full disk would crash the interpreter.
        """
        self._settle()
        if not 0 <= index < self.count:
            raise IndexError(f"acquisition {index} of a series of {self.count}")
        for name, (array, _) in slices.items():
            shape, known = np.shape(array), self._maps.get(name, ((None, *np.shape(array)), None))[0][1:]
            if known != shape or len(shape) != 2:
                raise ValueError(f"{name}: a slice of shape {shape}, where the series' are {known}")
        if not self._space_checked:
            per_acquisition = sum(np.asarray(a).size * 4 for a, _ in slices.values())
            require_space(self.path, 2 * self.count * per_acquisition + (1 << 20))  # the maps and the net maps
            self._space_checked = True
        direct = {}
        for name, (array, unit) in slices.items():
            array = np.asarray(array)
            dtype = np.dtype(np.float32 if array.dtype.kind == "f" else array.dtype)
            if name not in self._file:
                self._create(name, array.shape, dtype, unit)
            if self._goes_direct(array.size * dtype.itemsize):
                direct[name] = array
            else:  # small: written now, on this thread
                self._file[name][index] = array.astype(dtype, copy=False)
                self._written[name].add(index)
        if direct:
            # held until the next put, written or not: the peak memory is then the same whatever
            # the timing (one acquisition's large slices beside the next one's work)
            self._held = direct
            self._writing = self._pool.submit(self._write, index, direct)

    def _goes_direct(self, size):
        return self._direct.fd is not None and size >= self.DIRECT_BYTES and size % DIRECT_ALIGN == 0

    def _write(self, index, arrays):
        """On the writing thread: each slice around the page cache, or through h5py where refused."""
        for name, array in arrays.items():
            ds = self._file[name]
            if not self._write_direct(ds, index, array):
                ds[index] = array.astype(ds.dtype, copy=False)
            self._written[name].add(index)

    def _create(self, name, shape, dtype, unit):
        """A dataset of one chunk a slice, every chunk placed in the file now; never filled (a
        slice is written whole, or by :meth:`_fill_missing`)."""
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        ds = self._file.create_dataset(name, shape=(self.count, *shape), dtype=dtype, chunks=(1, *shape),
                                       fillvalue=np.nan if dtype.kind == "f" else 0, dcpl=dcpl)
        ds.attrs["units"] = unit
        self._maps[name] = ((self.count, *shape), unit)
        self._written[name] = set()

    def _write_direct(self, ds, index, array) -> bool:
        """Write slice ``index`` of ``ds`` (its chunk) around the page cache; False where it cannot be."""
        size = array.size * ds.dtype.itemsize
        if not self._goes_direct(size):
            return False
        chunk = ds.id.get_chunk_info_by_coord((index,) + (0,) * array.ndim)
        if chunk.byte_offset is None or chunk.size != size or chunk.filter_mask:
            return False
        return self._direct.write(np.ascontiguousarray(array, ds.dtype), chunk.byte_offset)

    def _fill_missing(self):
        """Write NaN (floats) or 0 into every slice never put."""
        for name, ((_, *shape), _) in self._maps.items():
            ds = self._file[name]
            for index in sorted(set(range(self.count)) - self._written[name]):
                ds[index] = np.full(shape, ds.fillvalue, ds.dtype)
                self._written[name].add(index)

    def finish(self, vectors: dict, attrs: dict, *, inputs=()):
        """Write the vectors (name → (array, unit)), root attributes, input checksums and the HyperSpy view."""
        self._settle()
        self._fill_missing()
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
