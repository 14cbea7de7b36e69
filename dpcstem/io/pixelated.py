"""Pixelated 4D-STEM acquisitions, opened lazily: nothing is read until it is reduced.

:func:`open_pixelated` recognises the file by its suffix and returns a
:class:`PixelatedData`: the frames as a lazy array of shape (scan_y, scan_x, ky, kx) and
whatever calibration the file records.

==================  ============================================  ==========================
suffix              reader                                        lazy array
==================  ============================================  ==========================
``.mib``            rosettasciio ``quantumdetector`` (Merlin)     Dask, chunks memory-mapped
``.blo``            rosettasciio ``blockfile``                    Dask, chunks memory-mapped
``.zspy``           rosettasciio ``zspy`` (needs ``zarr``)        Dask over the zarr store
``.hspy``, ``.h5``, HDF5 (h5py): HyperSpy, py4DSTEM, open EMD,    Dask, each chunk read by
``.hdf5``, ``.emd``   a dataset given by path                       opening the file by name
``.npy``            NumPy                                         ``np.memmap`` (read-only)
anything else       raw binary: ``shape`` and ``dtype`` given     ``np.memmap`` (read-only)
==================  ============================================  ==========================

Every Dask array here reads its chunks by file name, so it can be computed on a
``dask.distributed`` cluster whose workers see the same file system. Frames stored
big-endian (Merlin) are byte-swapped chunk by chunk as they are read.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import physics
from ..errors import DPCError, InputDataError, MissingMetadataError, UnreadableFileError
from .results import HDF5_FAILURES, load_npy, reason

#: Target size of one Dask chunk of frames, in bytes.
CHUNK_BYTES = 64 * 2**20

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".emd", ".hspy", ".py4dstem")
_NM_PER = {"nm": 1.0, "µm": 1e3, "um": 1e3, "μm": 1e3, "å": 0.1, "a": 0.1, "angstrom": 0.1, "pm": 1e-3, "m": 1e9}
_PER_NM_PER = {"1/nm": 1.0, "nm^-1": 1.0, "nm-1": 1.0, "1/å": 10.0, "å^-1": 10.0, "1/a": 10.0, "a^-1": 10.0}


@dataclass
class PixelatedData:
    """A 4D-STEM acquisition opened lazily.

    Attributes
    ----------
    data : dask.array.Array or numpy.memmap, shape (scan_y, scan_x, ky, kx)
        The frames in the file's dtype (native byte order for Dask arrays), counts.
        Axis 0 is the slow scan direction (rows, y), axis 1 the fast one (columns, x);
        axes 2 and 3 are the detector's rows (ky) and columns (kx).
    path : Path
        The file.
    kind : str
        The reader used: ``"mib"``, ``"blockfile"``, ``"zspy"``, ``"hdf5"``, ``"npy"`` or ``"raw"``.
    calibration : dict
        What the file records, as :class:`~dpcstem.calibration.Calibration` field names
        (``step_x_nm``, ``step_y_nm``, ``kv``); empty where it records nothing.
    mrad_per_px : float or None
        Angular size of one detector pixel in mrad, where the file records it (directly,
        or in reciprocal length together with the beam energy).
    metadata : dict
        Further facts read from the file (dataset path, axes, original headers).
    """

    data: object
    path: Path
    kind: str
    calibration: dict = field(default_factory=dict)
    mrad_per_px: float | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def scan_shape(self) -> tuple:
        """(scan_y, scan_x)."""
        return self.shape[:2]

    @property
    def frame_shape(self) -> tuple:
        """(ky, kx)."""
        return self.shape[2:]

    def __repr__(self):
        return (f"PixelatedData({self.path.name!r}, kind={self.kind!r}, shape={self.shape}, dtype={self.dtype}, "
                f"calibration={self.calibration}, mrad_per_px={self.mrad_per_px})")


def open_pixelated(path, *, dataset=None, scan_shape=None, shape=None, dtype=None, offset=0,
                   chunk_bytes=CHUNK_BYTES) -> PixelatedData:
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

    Returns
    -------
    PixelatedData

    Raises
    ------
    UnreadableFileError
        The file is missing or is not of the kind its suffix says.
    MissingMetadataError
        The scan shape, the dataset or the raw layout cannot be told from the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not (path.is_file() or (suffix == ".zspy" and path.is_dir())):  # a zarr store is a folder
        raise UnreadableFileError(f"{path}: 4D-STEM file not found")
    if suffix != "" and suffix not in (".raw", ".bin", ".dat") and (shape is not None or dtype is not None):
        raise InputDataError(f"{path}: shape= and dtype= describe raw binary files only, not {suffix!r} files")
    try:
        if suffix == ".mib":
            out = _open_mib(path, scan_shape, chunk_bytes)
        elif suffix == ".blo":
            out = _open_rsciio("blockfile", path, chunk_bytes)
        elif suffix == ".zspy":
            out = _open_rsciio("zspy", path, chunk_bytes)
        elif suffix in _HDF5_SUFFIXES:
            out = _open_hdf5(path, dataset, chunk_bytes)
        elif suffix == ".npy":
            out = PixelatedData(load_npy(path, mmap_mode="r"), path, "npy")
        else:
            out = _open_raw(path, shape, dtype, offset)
    except DPCError:
        raise
    except Exception as exc:  # a reader's own failure on a file it cannot parse
        raise UnreadableFileError(f"{path}: cannot read it as a {suffix or 'raw'} 4D-STEM file ({reason(exc)})") \
            from None
    out.data = _to_four_d(out.data, path, scan_shape)
    if out.kind not in ("npy", "raw") and out.data.dtype.byteorder not in ("=", "|"):
        out.data = out.data.astype(out.data.dtype.newbyteorder("="))
    return out


# -- readers --------------------------------------------------------------------------------

def _open_mib(path, scan_shape, chunk_bytes):
    from rsciio.quantumdetector import file_reader

    kwargs = {}
    if scan_shape is not None:
        kwargs["navigation_shape"] = tuple(int(n) for n in scan_shape)[::-1]  # rsciio wants (x, y)
    def read(chunks):
        with warnings.catch_warnings(), _chunk_limit(chunk_bytes):
            warnings.simplefilter("ignore", DeprecationWarning)
            return file_reader(str(path), lazy=True, chunks=chunks, **kwargs)[0]

    signal = _whole_frames(read)
    _check_mib_frames(path, signal["original_metadata"], scan_shape)
    return PixelatedData(signal["data"], path, "mib", metadata={"original_metadata": signal["original_metadata"]})


def _check_mib_frames(path, original, scan_shape):
    """Refuse a Merlin file that ends inside a frame, or holds fewer frames than its .hdr records.

    The reader itself would quietly load the complete frames (or scan rows) of such a file,
    so a truncated copy would pass for a smaller scan. An acquisition that was stopped early
    is read when ``scan_shape`` names the rows and columns of the frames present.
    """
    props = original.get("mib_properties") or {}
    if props.get("raw") or props.get("dtype") is None:
        return  # raw (R64) frames: their size is not told by the header alone; left to the reader
    try:
        frame_bytes = int(props["head_size"]) + math.prod(props["merlin_size"]) * np.dtype(props["dtype"]).itemsize
        size = int(props["file_size"])
    except (KeyError, TypeError, ValueError):
        return  # a layout this check does not know (raw or packed frames): left to the reader
    whole, rest = divmod(size - int(props.get("offset") or 0), frame_bytes)
    if rest:
        raise UnreadableFileError(
            f"{path}: truncated Merlin file: {size} bytes are {whole} whole frames of {frame_bytes} bytes and "
            f"{rest} bytes of a cut frame")
    recorded = None
    hdr = original.get("hdr_file") or {}
    try:
        recorded = int(hdr["Frames in Acquisition (Number)"])
    except (KeyError, TypeError, ValueError):
        pass
    if recorded and whole < recorded:
        given = scan_shape is not None and math.prod(int(n) for n in scan_shape) == whole
        if not given:
            raise UnreadableFileError(
                f"{path}: holds {whole} frames but its .hdr records {recorded}: the file is truncated or the "
                f"acquisition was stopped early; to read the frames present give scan_shape=(rows, columns) "
                f"with rows x columns = {whole} (--scan-shape NY NX)")


def _open_rsciio(kind, path, chunk_bytes):
    import importlib

    if kind == "zspy":
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise UnreadableFileError(f"{path}: reading .zspy files needs the package 'zarr' (pip install zarr)") \
                from None
    try:
        module = importlib.import_module(f"rsciio.{kind}")
    except ImportError as exc:
        raise UnreadableFileError(f"{path}: reading {path.suffix} files needs the package {exc.name!r} "
                                  f"(pip install {exc.name})") from None
    def read(chunks):
        with _chunk_limit(chunk_bytes):
            return module.file_reader(str(path), lazy=True, **({"chunks": chunks} if kind == "blockfile" else {}))[0]

    signal = _whole_frames(read)
    data = signal["data"]
    calibration, mrad_per_px = _from_axes(signal["axes"], _beam_kv(signal.get("metadata", {})))
    return PixelatedData(data, path, kind, calibration, mrad_per_px,
                         metadata={"axes": signal["axes"], "metadata": signal.get("metadata", {})})


class _HDF5Frames:
    """A dataset in an HDF5 file, read by opening the file by name for each slice (picklable)."""

    def __init__(self, path, name, shape, dtype):
        self.path = str(path)
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        import h5py

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


def _open_hdf5(path, dataset, chunk_bytes):
    import dask.array as da
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UnreadableFileError(f"{path}: not a readable HDF5 file ({exc})") from None
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
        calibration, mrad_per_px, meta = _hdf5_calibration(f, ds)
        source = _HDF5Frames(path, ds.name, ds.shape, ds.dtype)
        chunks = _hdf5_chunks(ds.shape, ds.dtype.itemsize, ds.chunks, chunk_bytes)
    meta["dataset"] = source.name
    data = da.from_array(source, chunks=chunks, asarray=True, fancy=False, name=f"hdf5-{_token(path, source.name)}")
    return PixelatedData(data, path, "hdf5", calibration, mrad_per_px, metadata=meta)


def _open_raw(path, shape, dtype, offset):
    if shape is None or dtype is None:
        raise MissingMetadataError(f"{path}: a raw binary file needs shape=(scan_y, scan_x, ky, kx) and dtype= "
                                   "(on the command line --raw-shape and --raw-dtype)")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise InputDataError(f"{path}: raw shape must be four positive sizes (scan_y, scan_x, ky, kx), got {shape}")
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise InputDataError(f"{path}: raw dtype {dtype!r} is not a NumPy type ({reason(exc)}); give e.g. <u2, >u2 "
                             "or f4") from None
    if dtype.kind not in "buif" or dtype.itemsize == 0:
        raise InputDataError(f"{path}: raw dtype must be an integer or float type such as <u2, >u2 or f4, got {dtype}")
    offset = int(offset)
    if offset < 0:
        raise InputDataError(f"{path}: raw header offset must be zero or more bytes, got {offset}")
    need = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise UnreadableFileError(f"{path}: {size} bytes, too small for shape {shape} of {dtype} after "
                                  f"{offset} header bytes ({need} bytes needed)")
    return PixelatedData(np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape), path, "raw")


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


def _whole_frames(read):
    """Read with Dask's automatic chunks, again with whole frames per chunk if those split a frame."""
    signal = read("auto")
    data = signal["data"]
    if hasattr(data, "chunks") and any(len(c) > 1 for c in data.chunks[-2:]):
        signal = read(("auto",) * (data.ndim - 2) + (-1, -1))
    return signal


def _chunk_limit(chunk_bytes):
    """Context in which Dask's "auto" chunks hold about ``chunk_bytes`` bytes."""
    import dask

    return dask.config.set({"array.chunk-size": f"{int(chunk_bytes)}B"})


def _hdf5_chunks(shape, itemsize, stored, chunk_bytes):
    """Dask chunks: whole frames, many frames per chunk, aligned to the file's own chunks."""
    frame = math.prod(shape[-2:]) * itemsize
    per = max(1, int(chunk_bytes // frame))
    if len(shape) == 3:
        step = stored[0] if stored else 1
        return (max(step, per // step * step), *shape[1:])
    sy, sx = shape[:2]
    cy0, cx0 = (stored[0], stored[1]) if stored else (1, 1)
    if per >= sx:
        rows = max(cy0, (per // sx) // cy0 * cy0)
        return (min(rows, sy), sx, *shape[2:])
    cols = max(cx0, per // cx0 * cx0)
    return (cy0, min(cols, sx), *shape[2:])


def _token(*parts):
    from dask.base import tokenize

    return tokenize(*[str(p) for p in parts])


def _nm(units):
    return _NM_PER.get(str(units).strip().lower().strip("[]").replace("n_m", "nm"))


def _mrad_per_px_from(scale, units, kv):
    units = str(units).strip().lower().strip("[]").replace("n_m", "nm")
    if units == "mrad":
        return float(scale)
    if units == "rad":
        return float(scale) / physics.MRAD_TO_RAD
    if units in _PER_NM_PER and kv is not None:
        wavelength_nm = float(physics.wavelength_m(kv)) * physics.M_TO_NM
        return float(scale) * _PER_NM_PER[units] * wavelength_nm / physics.MRAD_TO_RAD
    return None


def _from_axes(axes, kv):
    """Calibration from HyperSpy-style axes (array order: scan y, scan x, ky, kx)."""
    calibration = {} if kv is None else {"kv": kv}
    axes = sorted(axes, key=lambda a: a.get("index_in_array", 0))
    if len(axes) == 4:
        for name, axis in (("step_y_nm", axes[0]), ("step_x_nm", axes[1])):
            factor = _nm(axis.get("units", ""))
            scale = float(axis.get("scale", 1.0))
            if factor is not None and scale > 0:
                calibration[name] = scale * factor
    mrad = None
    if len(axes) >= 2:
        signal = axes[-1]
        mrad = _mrad_per_px_from(signal.get("scale", 1.0), signal.get("units", ""), kv)
    return calibration, mrad


def _beam_kv(metadata):
    try:
        kev = metadata["Acquisition_instrument"]["TEM"]["beam_energy"]
    except (KeyError, TypeError):
        return None
    try:
        return float(kev) if float(kev) > 0 else None
    except (TypeError, ValueError):
        return None


def _text(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.item())
    return str(value)


def _hdf5_calibration(f, ds):
    """Calibration from the layouts we know: HyperSpy (axis-i groups), open EMD (dim1..dim4),
    py4DSTEM / dpcstem (attributes with units in their names)."""
    parent = ds.parent
    meta = {}
    kv = None
    for key in ("kv", "beam_energy_kev"):
        if key in ds.attrs:
            kv = float(ds.attrs[key])
    if "metadata" in parent and "Acquisition_instrument" in parent["metadata"]:  # HyperSpy
        tem = parent["metadata"]["Acquisition_instrument"].get("TEM")
        if tem is not None and "beam_energy" in tem.attrs:
            kv = float(tem.attrs["beam_energy"])
    axes = []
    if all(f"axis-{i}" in parent for i in range(ds.ndim)):  # HyperSpy
        for i in range(ds.ndim):
            a = parent[f"axis-{i}"].attrs
            axes.append({"index_in_array": i, "scale": float(a.get("scale", 1.0)), "units": _text(a.get("units", ""))})
    elif all(f"dim{i + 1}" in parent for i in range(ds.ndim)):  # open EMD
        for i in range(ds.ndim):
            dim = parent[f"dim{i + 1}"]
            values = np.asarray(dim[()], dtype=float).ravel()
            scale = float(values[1] - values[0]) if values.size > 1 else 1.0
            axes.append({"index_in_array": i, "scale": scale, "units": _text(dim.attrs.get("units", ""))})
    calibration, mrad = _from_axes(axes, kv) if axes else ({} if kv is None else {"kv": kv}, None)
    for key in ("step_x_nm", "step_y_nm"):
        if key in ds.attrs:
            calibration[key] = float(ds.attrs[key])
    if "mrad_per_px" in ds.attrs:
        mrad = float(ds.attrs["mrad_per_px"])
    if axes:
        meta["axes"] = axes
    return calibration, mrad, meta
