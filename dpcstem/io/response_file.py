"""Empirical detector response files: the tilt series and its tabulated inverse in one ``.npz``.

:func:`save_response` writes what :func:`dpcstem.response.empirical.fit_response` made;
:func:`load_response` reads it back to the same table, without refitting.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import MissingMetadataError, UnreadableFileError
from ..response.empirical import EmpiricalResponse
from ..response.table import InverseTable

RESPONSE_FORMAT = "dpcstem.empirical_response"
RESPONSE_VERSION = 1
_RESPONSE_KEYS = ("format", "version", "tilt_u", "tilt_v", "d_a", "d_b", "table_u", "table_v", "origin", "step",
                  "alpha_mrad", "smoothing")


def save_response(path, response: EmpiricalResponse, *, overwrite=False):
    """Write an empirical response to a ``.npz`` file, atomically.

    The file holds the tilt series and the tabulated inverse, so reloading gives the same
    table without refitting.
    """
    from .output import atomic_output

    alpha = math.nan if response.alpha_mrad is None else response.alpha_mrad
    table = response.table
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, format=np.array(RESPONSE_FORMAT), version=np.array(RESPONSE_VERSION),
                     tilt_u=response.tilt_u, tilt_v=response.tilt_v, d_a=response.d_a, d_b=response.d_b,
                     table_u=table.u, table_v=table.v, origin=np.array(table.origin), step=np.array(table.step),
                     alpha_mrad=np.array(alpha), smoothing=np.array(response.smoothing),
                     signal=np.array(response.signal))


def load_response(path) -> EmpiricalResponse:
    """Read an empirical response written by :func:`save_response`.

    Raises
    ------
    UnreadableFileError
        The file is missing, not an ``.npz`` archive, or not an empirical response.
    MissingMetadataError
        An entry of the format is missing.
    """
    import zipfile

    from .results import sha256_file

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(f"{path}: no such response file (an .npz written by dpcstem.io.response_file.save_response)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise UnreadableFileError(f"{path}: not a readable empirical response file (.npz): {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UnreadableFileError(f"{path}: not a readable empirical response file (.npz): it holds one array, "
                                  "not an archive")
    with archive:
        if "format" in archive.files and str(archive["format"]) != RESPONSE_FORMAT:
            raise UnreadableFileError(f"{path}: format {str(archive['format'])!r} is not an empirical response "
                                      f"({RESPONSE_FORMAT!r})")
        missing = [key for key in _RESPONSE_KEYS if key not in archive.files]
        if missing:
            raise MissingMetadataError(f"{path}: the empirical response file lacks {', '.join(missing)}")
        try:
            data = {key: archive[key] for key in _RESPONSE_KEYS}
            archive_signal = archive["signal"] if "signal" in archive.files else None
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise UnreadableFileError(f"{path}: not a readable empirical response file (.npz): {exc}") from None
    if int(data["version"]) > RESPONSE_VERSION:
        raise UnreadableFileError(f"{path}: empirical response format version {int(data['version'])} is newer than "
                                  f"this dpcstem reads ({RESPONSE_VERSION})")
    table_u, table_v = np.asarray(data["table_u"], np.float64), np.asarray(data["table_v"], np.float64)
    if table_u.ndim != 2 or table_u.shape != table_v.shape or table_u.shape[0] != table_u.shape[1] \
            or table_u.shape[0] < 2 or not float(data["step"]) > 0:
        raise UnreadableFileError(f"{path}: the inverse table must be two square arrays of one shape with a positive "
                                  f"step, got {table_u.shape}, {table_v.shape}, step {float(data['step'])}")
    alpha = float(data["alpha_mrad"])
    signal = str(archive_signal) if archive_signal is not None else "segments"
    if signal not in ("segments", "com"):
        raise UnreadableFileError(f"{path}: signal {signal!r} is neither 'segments' nor 'com'")
    table = InverseTable(u=table_u, v=table_v, origin=float(data["origin"]), step=float(data["step"]),
                         name="empirical")
    return EmpiricalResponse(tilt_u=np.asarray(data["tilt_u"], float), tilt_v=np.asarray(data["tilt_v"], float),
                             d_a=np.asarray(data["d_a"], float), d_b=np.asarray(data["d_b"], float), table=table,
                             alpha_mrad=None if math.isnan(alpha) else alpha, smoothing=float(data["smoothing"]),
                             signal=signal, path=str(path), sha256=sha256_file(path))


def read_tilt_series(path) -> dict:
    """A beam-tilt series: segment counts, or 4D-STEM frames, at known beam tilts, from an HDF5 file.

    The file holds the datasets ``tilt_x_mrad`` and ``tilt_y_mrad`` (n,) (the beam tilts in
    mrad, scan frame) and either ``segments`` (4, n) (counts of A, B, C, D at each tilt, any
    trailing shape flattened) or ``frames`` (n, ky, kx) (the pixelated pattern at each tilt,
    one of them at zero tilt); it may record ``kv``, ``alpha_mrad``, ``collection_inner_mrad``,
    ``collection_outer_mrad``, ``detector_rotation_deg``, ``flip`` and (frames)
    ``mrad_per_px`` as root attributes.

    Returns
    -------
    dict with ``segments`` (4, n) float64 or ``frames`` (n, ky, kx) (the other None),
    ``tilt_x_mrad``, ``tilt_y_mrad`` (n,) float64 and ``calibration_values`` (the recorded
    attributes).

    Raises
    ------
    UnreadableFileError
        Not a readable HDF5 file, or the arrays have the wrong shapes.
    MissingMetadataError
        A dataset is missing.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(f"{path}: no such tilt series file")
    try:
        with h5py.File(path, "r") as f:
            signal = "frames" if isinstance(f.get("frames"), h5py.Dataset) else "segments"
            missing = [k for k in (signal, "tilt_x_mrad", "tilt_y_mrad") if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                raise MissingMetadataError(f"{path}: a tilt series needs the datasets segments (4, n) or frames "
                                           f"(n, ky, kx), tilt_x_mrad and tilt_y_mrad (n,); it lacks "
                                           f"{', '.join(missing)}")
            counts = np.asarray(f[signal][()], np.float64)
            tx = np.asarray(f["tilt_x_mrad"][()], np.float64).ravel()
            ty = np.asarray(f["tilt_y_mrad"][()], np.float64).ravel()
            names = ("kv", "alpha_mrad", "collection_inner_mrad", "collection_outer_mrad", "detector_rotation_deg",
                     "flip", "mrad_per_px")
            values = {k: f.attrs[k].item() if hasattr(f.attrs[k], "item") else f.attrs[k]
                      for k in names if k in f.attrs}
    except OSError as exc:
        raise UnreadableFileError(f"{path}: not a readable HDF5 tilt series: {exc}") from None
    if signal == "frames":
        if counts.ndim != 3 or counts.shape[0] != tx.size or tx.size != ty.size:
            raise UnreadableFileError(f"{path}: frames must be (n, ky, kx) for n = {tx.size} tilt_x_mrad and "
                                      f"{ty.size} tilt_y_mrad, got {counts.shape}")
        segments, frames = None, counts
    else:
        if counts.ndim < 2 or counts.shape[0] != 4:
            raise UnreadableFileError(f"{path}: segments must be (4, n) (A, B, C, D at each tilt), got "
                                      f"{counts.shape}")
        segments, frames = counts.reshape(4, -1), None
        if not (segments.shape[1] == tx.size == ty.size):
            raise UnreadableFileError(f"{path}: {segments.shape[1]} segment columns for {tx.size} tilt_x_mrad and "
                                      f"{ty.size} tilt_y_mrad")
    if "flip" in values:
        values["flip"] = bool(values["flip"])
    return {"segments": segments, "frames": frames, "tilt_x_mrad": tx, "tilt_y_mrad": ty, "calibration_values": values}
