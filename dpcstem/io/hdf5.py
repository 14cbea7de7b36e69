"""HDF5 files (``.h5``, ``.hdf5``, HyperSpy ``.hspy``, py4DSTEM, open EMD): read and written.

Reading:

- :func:`read_segments`: a dataset ``segments`` (4, ny, nx) (or the one named), with the
  calibration that the root and dataset attributes record under
  :class:`~dpcstem.calibration.Calibration` field names;
- :func:`open_frames`: a 4-D dataset (scan_y, scan_x, ky, kx) (or a 3-D flat stack of
  frames), as a Dask array whose chunks each open the file by name, so that nothing is
  read until it is reduced and a ``dask.distributed`` worker can read its own part.

Memory is checked from the shapes the file declares before anything is read. A dataset
stored in chunks larger than a Dask block is read piecewise where HDF5 can read part of a
chunk (no compression filter); a compressed chunk must be decompressed whole, so it is
refused when it does not fit in memory.

Writing (every file to a temporary name, renamed into place): :func:`write_segments`
(an acquisition as :func:`read_segments` reads it), :func:`write_frames` (a 4-D set, block
by block), :func:`write_arrays` (named arrays with units and root attributes).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import h5py
import numpy as np

from ..calibration import SCALAR_FIELDS
from ..errors import DPCError, InputDataError, InsufficientMemoryError, MissingMetadataError, UnreadableFileError
from ..memory import USABLE_FRACTION, bytes_of, require_memory
from ._axes import from_axes, prismatic_units
from ._common import (
    SEGMENT_NAMES,
    PixelatedData,
    SegmentAcquisition,
    calibration_attr,
    check_stack,
    number,
    plain_attrs,
    require_scan_memory,
    text,
)
from ._common import HDF5_FAILURES, reason
from .output import atomic_output, hdf5_output

#: ``dataset=`` names the dataset to read.
TAKES_DATASET = True


# -- segments ---------------------------------------------------------------------------------

#: Datasets read as the simultaneous annular dark-field image (``metadata["adf"]``).
ADF_DATASETS = ("haadf", "adf", "HAADF", "ADF")


def read_segments(path: Path, dataset=None) -> SegmentAcquisition:
    """The (4, ny, nx) stack in dataset ``dataset`` (default ``segments``) and the calibration attributes.

    Root or dataset attributes ``bias_v`` (V) and ``acquisition_index`` go to the metadata,
    and a 2-D dataset named in :data:`ADF_DATASETS` (the simultaneous dark-field image) to
    ``metadata["adf"]``.
    """
    name = dataset or "segments"
    try:
        with h5py.File(path, "r") as f:
            node = f[name] if name in f else None  # f.get() would hide a damaged object as absent
            if not isinstance(node, h5py.Dataset):
                found = []
                f.visititems(lambda n, o: found.append(f"{n} {o.shape}") if isinstance(o, h5py.Dataset) else None)
                what = "is a group, not a dataset" if node is not None else "not found"
                raise MissingMetadataError(
                    f"{path}: dataset {name!r} (the (4, ny, nx) segment stack) {what}; the file holds "
                    f"{', '.join(found[:12]) or 'no dataset'}; give dataset=PATH (--dataset PATH)")
            require_memory(bytes_of(node.shape, node.dtype), f"{path}: dataset {name!r}")
            array = node[()]
            attrs = {**plain_attrs(f.attrs), **plain_attrs(node.attrs)}
            adf = next((k for k in ADF_DATASETS if k in f and isinstance(f[k], h5py.Dataset) and f[k].ndim == 2),
                       None)
            adf_image = f[adf][()] if adf else None
    except DPCError:
        raise
    except HDF5_FAILURES as exc:  # h5py raises several kinds on a truncated or damaged file
        raise UnreadableFileError(f"{path}: not a readable HDF5 file ({reason(exc)})") from None
    segments = check_stack(array, f"{path}:{name}")
    values, metadata = {}, {"source": "hdf5", "dataset": name, "titles": list(SEGMENT_NAMES)}
    for key in SCALAR_FIELDS:
        value = calibration_attr(key, attrs.get(key), path)
        if value is not None:
            values[key] = bool(value) if key == "flip" else value
    if "bias_v" in attrs:
        bias = number(attrs["bias_v"])
        if bias is None:
            raise InputDataError(f"{path}: attribute 'bias_v' must be one number (the applied bias in V), "
                                 f"got {attrs['bias_v']!r}")
        metadata["bias_v"] = bias
    if number(attrs.get("acquisition_index")) is not None:
        metadata["acquisition_index"] = int(number(attrs["acquisition_index"]))
    if adf is not None:
        metadata["adf"], metadata["adf_dataset"] = adf_image, adf
    if "title" in attrs:
        metadata["title"] = str(attrs["title"])
    metadata["original"] = {k: v for k, v in attrs.items()
                            if k not in values and k not in ("bias_v", "title", "acquisition_index")}
    return SegmentAcquisition(segments, values, (path,), metadata)


def write_segments(path, segments, attrs, *, adf=None, overwrite=False) -> Path:
    """One acquisition: dataset ``segments`` (4, ny, nx) and ``attrs`` as root attributes.

    Parameters
    ----------
    path : path-like
        Output file; replaced only with ``overwrite``.
    segments : ndarray, shape (4, ny, nx)
        Segment images A, B, C, D (stored gzip-compressed, one chunk per segment).
    attrs : dict
        Root attributes: :class:`~dpcstem.calibration.Calibration` field names as
        :func:`read_segments` reads them, ``bias_v``, ``title``, ...; None is not written.
    adf : ndarray (ny, nx), optional
        The simultaneous dark-field image, as dataset ``haadf`` (counts).
    """
    segments = np.asarray(segments)
    if segments.ndim != 3 or segments.shape[0] != 4:
        raise InputDataError(f"{path}: segments to write must have shape (4, ny, nx), got {segments.shape}")
    with hdf5_output(path, overwrite=overwrite) as f:
        for key, value in attrs.items():
            if value is not None:
                f.attrs[key] = value
        ds = f.create_dataset("segments", data=segments, chunks=(1, *segments.shape[1:]),
                              compression="gzip", shuffle=True)
        ds.attrs["units"] = "counts"
        ds.attrs["order"] = "A, B, C, D"
        if adf is not None:
            f.create_dataset("haadf", data=np.asarray(adf, np.float32)).attrs["units"] = "counts"
    return Path(path)


def write_arrays(path, arrays, attrs=None, *, overwrite=False) -> Path:
    """Named arrays, each with its unit, and root attributes.

    Parameters
    ----------
    arrays : dict
        name (may contain ``/`` for groups) → (array, unit) or array; strings are stored
        as UTF-8 text. Arrays of more than 4096 elements are gzip-compressed.
    attrs : dict, optional
        Root attributes; None values are not written.
    """
    with hdf5_output(path, overwrite=overwrite) as f:
        for key, value in (attrs or {}).items():
            if value is not None:
                f.attrs[key] = value
        for name, item in arrays.items():
            array, unit = item if isinstance(item, tuple) else (item, None)
            array = np.asarray(array)
            if array.dtype.kind in "UO":
                ds = f.create_dataset(name, data=array.astype(object), dtype=h5py.string_dtype())
            else:
                ds = f.create_dataset(name, data=array, compression="gzip" if array.size > 4096 else None)
            if unit is not None:
                ds.attrs["units"] = unit
    return Path(path)


# -- 4D-STEM frames ---------------------------------------------------------------------------

def write_frames(path, shape, dtype, blocks, *, attrs=None, extra=None, overwrite=False) -> Path:
    """A 4-D set written block by block: dataset ``frames`` (scan_y, scan_x, ky, kx), one scan row per chunk.

    Parameters
    ----------
    shape : (int, int, int, int)
    dtype : dtype-like
    blocks : iterable of (y0, y1, ndarray)
        Scan rows y0..y1−1 of frames, in any order; only one is held at a time.
    attrs : dict, optional
        Attributes of the ``frames`` dataset (``units``, ``mrad_per_px``, ``kv``, ...).
    extra : dict, optional
        Further datasets, name → (array, unit), e.g. the truth of a simulation.
    """
    shape = tuple(int(n) for n in shape)
    # HDF5 writes these frames piecewise itself, and a full disk would crash it: refuse one too small first.
    with atomic_output(path, overwrite=overwrite, size=math.prod(shape) * np.dtype(dtype).itemsize) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset("frames", shape=shape, dtype=np.dtype(dtype), chunks=(1, shape[1], *shape[2:]))
            ds.attrs.update({k: v for k, v in (attrs or {}).items() if v is not None})
            for y0, y1, block in blocks:
                ds[y0:y1] = block
            for name, (array, unit) in (extra or {}).items():
                f.create_dataset(name, data=np.asarray(array)).attrs["units"] = unit
    return Path(path)


class _Frames:
    """A dataset in an HDF5 file, read by opening the file by name for each slice (picklable)."""

    def __init__(self, path, name, shape, dtype):
        self.path = str(path)
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        try:
            with h5py.File(self.path, "r") as f:
                return f[self.name][key]
        except HDF5_FAILURES as exc:  # a damaged chunk shows only when it is read
            raise UnreadableFileError(f"{self.path}: dataset {self.name!r}: frames {_slices(key)} cannot be read "
                                      f"({reason(exc)}); the file is damaged") from None


def _slices(key):
    """An index tuple as text, e.g. [0:4, 0:8, :, :]."""
    def one(k):
        if isinstance(k, slice):
            return f"{'' if k.start is None else k.start}:{'' if k.stop is None else k.stop}"
        return str(k)

    return "[" + ", ".join(one(k) for k in (key if isinstance(key, tuple) else (key,))) + "]"


def frame_chunks(shape, itemsize, chunk_bytes, stored=None) -> tuple:
    """Dask chunks of a frame array: whole frames, many frames per chunk, aligned to ``stored`` chunks.

    Parameters
    ----------
    shape : tuple
        (scan_y, scan_x, ky, kx) or (n, ky, kx).
    itemsize : int
    chunk_bytes : int
        Target bytes per Dask chunk.
    stored : tuple, optional
        The file's own chunk shape, to align to (each stored chunk is then read once).
        Pass None to read piecewise, ignoring it.
    """
    frame = math.prod(shape[-2:]) * itemsize
    per = max(1, int(chunk_bytes // frame))
    if len(shape) == 3:
        step = stored[0] if stored else 1
        return (min(max(step, per // step * step), shape[0]), *shape[1:])
    sy, sx = shape[:2]
    cy0, cx0 = (stored[0], stored[1]) if stored else (1, 1)
    if per >= sx:
        rows = max(cy0, (per // sx) // cy0 * cy0)
        return (min(rows, sy), sx, *shape[2:])
    cols = max(cx0, per // cx0 * cx0)
    return (min(cy0, sy), min(cols, sx), *shape[2:])


def _read_plan(path, ds, chunk_bytes):
    """The stored chunks to align to, or None to read piecewise; refuse a chunk that cannot fit.

    HDF5 reads part of an uncompressed chunk straight from the file, but must decompress a
    filtered chunk whole (into its chunk cache or a buffer) to read any part of it.
    """
    stored = ds.chunks
    if stored is None:
        return None
    chunk = bytes_of(stored, ds.dtype)
    if chunk <= chunk_bytes:
        return stored
    if not ds.compression and not ds.id.get_create_plist().get_nfilters():
        return None  # read piecewise: HDF5 reads a part of an unfiltered chunk without the rest
    import psutil

    need = 2 * chunk  # the decompressed chunk and the block handed on
    available = psutil.virtual_memory().available
    if need > USABLE_FRACTION * available:
        raise InsufficientMemoryError(
            f"{path}: dataset {ds.name!r} is stored compressed in chunks of shape {stored} ({chunk / 2**30:.2f} GiB "
            f"each); reading one needs {need / 2**30:.2f} GiB but only {available / 2**30:.2f} GiB of memory is free; "
            "rewrite the file with frame-sized chunks (e.g. h5repack -l CHUNK=1x1xKYxKX)")
    return stored


def lazy_dataset(dataset: h5py.Dataset, chunk_bytes, *, path=None):
    """A Dask array over an open HDF5 dataset that reads its chunks by opening the file by name.

    The file's own chunks are honoured as :func:`open_frames` does (piecewise where they are
    large and unfiltered); the Dask graph holds no open file handle, so it can be computed
    on ``dask.distributed`` workers that see the same file system.
    """
    import dask.array as da
    from dask.base import tokenize

    path = path or dataset.file.filename
    source = _Frames(path, dataset.name, dataset.shape, dataset.dtype)
    chunks = frame_chunks(dataset.shape, dataset.dtype.itemsize, chunk_bytes, _read_plan(path, dataset, chunk_bytes))
    return da.from_array(source, chunks=chunks, asarray=True, fancy=False,
                         name=f"hdf5-{tokenize(str(path), source.name)}")


def _contiguous_memmap(path, ds):
    """A read-only memory map of a dataset stored contiguously, unfiltered, in native byte order
    (its bytes lie in the file in C order from one offset, as a ``.npy`` file's do); else None.

    Reduced like a ``.npy`` file: read once in file order, with the file's SHA-256 taken in the
    same pass (:mod:`dpcstem.fourd.engine`).
    """
    if ds.chunks is not None or ds.id.get_create_plist().get_nfilters() or ds.dtype.byteorder not in ("=", "|"):
        return None
    offset = ds.id.get_offset()
    if offset is None or ds.size == 0:  # never written: no storage allocated
        return None
    return np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape)


def open_frames(path: Path, options) -> PixelatedData:
    """The one 4-D dataset in the file (or ``options.dataset``), lazily, with the calibration it records."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UnreadableFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    dataset = options.dataset
    with f:
        if dataset is None:
            found = []
            f.visititems(lambda name, obj: found.append(name)
                         if isinstance(obj, h5py.Dataset) and obj.ndim == 4 else None)
            if not found:
                raise MissingMetadataError(f"{path}: no 4-D dataset (scan_y, scan_x, ky, kx) in the file; "
                                           "give the dataset's path (--dataset PATH) for a 3-D stack of frames")
            if len(found) > 1:
                raise MissingMetadataError(f"{path}: several 4-D datasets ({', '.join(found)}); "
                                           "name the one to use (--dataset PATH)")
            dataset = found[0]
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise MissingMetadataError(f"{path}: no dataset {dataset!r} in the file")
        ds = f[dataset]
        if ds.ndim not in (3, 4):
            raise InputDataError(f"{path}: dataset {dataset!r} has shape {ds.shape}; 4D-STEM frames are "
                                 "(scan_y, scan_x, ky, kx), or (n, ky, kx) with scan_shape given")
        if ds.ndim == 4:  # the declared scan, checked before any lazy machinery is built
            require_scan_memory(path, ds.shape, options.bytes_per_position)
        calibration, mrad_per_px, meta = _calibration(path, f, ds)
        data = _contiguous_memmap(path, ds)
        if data is None:
            data = lazy_dataset(ds, options.chunk_bytes, path=path)
        meta["dataset"] = ds.name
    return PixelatedData(data, path, "hdf5", calibration, mrad_per_px, metadata=meta)


def _attr_number(ds, key, path):
    return calibration_attr(key, ds.attrs[key], f"{path}: dataset {ds.name!r}") if key in ds.attrs else None


def _calibration(path, f, ds):
    """Calibration from the layouts we know: HyperSpy (axis-i groups), open EMD (dim1..dim4, with
    Prismatic's mislabelled Å), py4DSTEM / dpcstem (attributes with units in their names)."""
    parent = ds.parent
    meta = {}
    kv = None
    for key in ("kv", "beam_energy_kev"):
        value = calibration_attr(key, ds.attrs[key], f"{path}: dataset {ds.name!r}") if key in ds.attrs else None
        if value is not None:
            kv = value
    if "metadata" in parent and "Acquisition_instrument" in parent["metadata"]:  # HyperSpy
        tem = parent["metadata"]["Acquisition_instrument"].get("TEM")
        if tem is not None and "beam_energy" in tem.attrs:
            kv = calibration_attr("beam_energy", tem.attrs["beam_energy"], f"{path}: HyperSpy metadata")
    axes, relabelled = [], {}
    if all(f"axis-{i}" in parent for i in range(ds.ndim)):  # HyperSpy
        for i in range(ds.ndim):
            a = parent[f"axis-{i}"].attrs
            axes.append({"index_in_array": i, "scale": float(a.get("scale", 1.0)), "units": text(a.get("units", ""))})
    elif all(f"dim{i + 1}" in parent for i in range(ds.ndim)):  # open EMD
        for i in range(ds.ndim):
            dim = parent[f"dim{i + 1}"]
            values = np.asarray(dim[()], dtype=float).ravel()
            scale = float(values[1] - values[0]) if values.size > 1 else 1.0
            units = text(dim.attrs.get("units", ""))
            if prismatic_units(units):
                relabelled[units] = prismatic_units(units)
                units = prismatic_units(units)
            axes.append({"index_in_array": i, "scale": scale, "units": units})
        if relabelled and kv is None:
            kv = _prismatic_kv(f)
    calibration, mrad = from_axes(axes, kv) if axes else ({} if kv is None else {"kv": kv}, None)
    for key in ("step_x_nm", "step_y_nm"):
        value = _attr_number(ds, key, path)
        if value is not None:
            calibration[key] = value
    if "mrad_per_px" in ds.attrs:
        mrad = number(ds.attrs["mrad_per_px"])
    if axes:
        meta["axes"] = axes
    if relabelled:
        steps = ", ".join(f"{calibration[k]:.4g} nm" for k in ("step_x_nm", "step_y_nm") if k in calibration)
        warnings.warn(f"{path}: axes labelled {' and '.join(map(repr, relabelled))} hold "
                      f"{' and '.join(relabelled.values())} (a Prismatic writer's label); read as such: scan step "
                      f"{steps or 'not recorded'}, not 10x that; give --step to override", stacklevel=4)
        meta["relabelled_units"] = relabelled
    return calibration, mrad, meta


def _prismatic_kv(f):
    """The beam energy Prismatic records among its simulation parameters (``E``, keV), or None."""
    found = []
    f.visititems(lambda n, o: found.append(o) if isinstance(o, h5py.Group) and n.endswith("simulation_parameters")
                 else None)
    for group in found:
        value = number(group.attrs.get("E"))
        if value is not None and math.isfinite(value) and value > 0:
            return value
    return None
