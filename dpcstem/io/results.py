"""The HDF5 result file: maps with their units, root attributes and provenance, and reading it back.

Written through :func:`~dpcstem.io.output.atomic_output`; the provenance attributes
(version, calibration, input checksums) are written by :func:`provenance_attrs`, which a
streamed bias series (:mod:`~dpcstem.io.series`) uses too. Also a thickness map given as a file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import DPCError, InputDataError, UnreadableFileError
from ._common import HDF5_FAILURES, reason, text
from .hyperspy_view import write_hyperspy_view
from .npy import load_npy
from .output import atomic_output

#: Digests already taken in this process, by file identity (device, inode, size, modification time):
#: a reader that hashed a file's bytes as it streamed them (:func:`remember_sha256`) spares the
#: result writer a second pass over a file that may be larger than memory.
_KNOWN_SHA256: dict = {}


def file_version(stat) -> tuple:
    """What tells one version of a file from another (``os.stat`` of it): device, inode, size and
    modification time."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def remember_sha256(stat, hexdigest: str) -> None:
    """Record the SHA-256 of the file whose ``os.stat`` (taken before it was read) is ``stat``."""
    _KNOWN_SHA256[file_version(stat)] = hexdigest


def sha256_file(path, *, block=1 << 20) -> str:
    """SHA-256 hex digest of a file, read in blocks (or as hashed while it was read, if it has not changed since)."""
    known = _KNOWN_SHA256.get(file_version(os.stat(path)))
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()



def provenance_attrs(f: h5py.File, attrs: dict, inputs=()) -> None:
    """Write the root attributes of a result: the dpcstem version, ``attrs`` (None as NaN), and for
    each input file its SHA-256 as ``sha256:<name>`` and its path in ``inputs``."""
    from .. import __version__

    f.attrs["dpcstem_version"] = __version__
    for key, value in attrs.items():
        f.attrs[key] = np.nan if value is None else value
    names = []
    for p in inputs:
        p = Path(p)
        f.attrs[f"sha256:{p.name}"] = sha256_file(p)
        names.append(str(p))
    if names:
        f.attrs["inputs"] = names


def write_result(path, maps: dict, attrs: dict, *, inputs=(), overwrite=False, axes=None):
    """Write maps (name → (array, unit)) and root attributes to an HDF5 file, atomically.

    Parameters
    ----------
    path : path-like
        Output file; replaced only with ``overwrite``.
    maps : dict
        name → (array, unit). Floating maps are stored as float32; each dataset gets a
        ``units`` attribute.
    attrs : dict
        Root attributes (calibration, provenance). None values are stored as NaN.
    inputs : sequence of path-like
        Input files; the SHA-256 of each is recorded as ``sha256:<name>``.
    axes : dict, optional
        Extra root attributes describing axes (e.g. ``bias``), written as given.

    The file also carries a HyperSpy view of the maps (links, no copies) so that
    ``hyperspy.api.load(path, file_format="hspy")`` opens it as dpcstem's signal types
    with calibrated axes, as :func:`dpcstem.io.load_result` does.
    """
    sizes = sum(np.asarray(array).size * 4 for array, _ in maps.values())
    # Written by HDF5 straight to the temporary file (a result can be larger than the memory left), so a
    # filesystem that cannot hold it is refused first: HDF5 meeting a full disk crashes the interpreter.
    with atomic_output(path, overwrite=overwrite, inputs=inputs, size=2 * sizes + (1 << 20)) as tmp:
        with h5py.File(tmp, "w") as f:
            provenance_attrs(f, attrs, inputs)
            for key, value in (axes or {}).items():
                f.attrs[key] = value
            for name, (array, unit) in maps.items():
                array = np.asarray(array)
                if array.dtype.kind == "f" or array.dtype.kind == "c":
                    array = array.astype(np.float32 if array.dtype.kind == "f" else np.complex64, copy=False)
                elif array.dtype == bool:
                    array = array.astype(np.uint8)
                chunks = array.shape if array.ndim < 2 else (*([1] * (array.ndim - 2)), *array.shape[-2:])
                ds = f.create_dataset(name, data=array, chunks=chunks if array.size else None,
                                      compression=None)  # gzip: 22× the write time for 19% less (bench)
                ds.attrs["units"] = unit
            write_hyperspy_view(f, maps)
    return Path(path)



def load_result_arrays(path) -> tuple[dict, dict]:
    """Read a result file back: (maps name → (array, unit), root attributes)."""
    try:
        with h5py.File(path, "r") as f:
            # f[name], not f.items(): items() gives None for an object it cannot open, and a damaged
            # map would vanish from the result without a word
            nodes = {name: f[name] for name in f.keys()}
            maps = {text(name): (ds[()], text(ds.attrs.get("units", ""))) for name, ds in nodes.items()
                    if isinstance(ds, h5py.Dataset)}
            attrs = {text(k): (text(v) if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except HDF5_FAILURES as exc:  # a damaged file makes h5py raise any of these
        raise UnreadableFileError(f"{path}: not a readable dpcstem result file ({reason(exc)})") from None
    return maps, attrs


def read_thickness_map(path):
    """A thickness map in nm from ``.npy``, a TIFF image, or an HDF5 dataset ``thickness``."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(f"{path}: thickness map file not found")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".tif", ".tiff", ".h5", ".hdf5"):
        raise UnreadableFileError(f"{path}: thickness map must be .npy, .tif or .h5, got {suffix!r}")
    try:
        if suffix == ".npy":
            arr = load_npy(path)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            with h5py.File(path, "r") as f:
                node = f["thickness"] if "thickness" in f else None
                arr = node[()] if isinstance(node, h5py.Dataset) else None
    except DPCError:
        raise
    except HDF5_FAILURES as exc:  # numpy, tifffile and h5py on a damaged file
        raise UnreadableFileError(f"{path}: cannot read the thickness map ({reason(exc)})") from None
    if arr is None:
        raise InputDataError(f"{path}: no dataset 'thickness' (nm) in the file")
    if np.asarray(arr).dtype.kind not in "uif":
        raise InputDataError(f"{path}: thickness map must hold numbers (nm), got dtype {np.asarray(arr).dtype}")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise InputDataError(f"{path}: thickness map must be 2-D (ny, nx) in nm, got shape {arr.shape}")
    return arr
