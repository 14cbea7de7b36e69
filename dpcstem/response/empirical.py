"""An empirical detector response from a beam-tilt series (Brown et al. 2017).

:func:`fit_response` builds it from difference signals at known beam tilts, to be used
instead of the geometric model (``reconstruct(..., options=ReconstructionOptions(response=
empirical))``); :mod:`dpcstem.io.response_file` keeps it in a small ``.npz`` file.

References
----------
Brown et al., Ultramicroscopy 182 (2017) 169, doi:10.1016/j.ultramic.2017.07.002
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..calibration import Calibration
from .. import _validate
from ..errors import CalibrationError, InputDataError
from .table import TABLE_SIZE, InverseTable


@dataclass(frozen=True, eq=False)
class EmpiricalResponse:
    """A detector response measured with a beam-tilt series, as an inverse lookup table.

    Plugs into :func:`dpcstem.reconstruct.reconstruct` as ``response=``; it has the
    ``name`` and ``inverse_table()`` of the geometric models.

    Attributes
    ----------
    tilt_u, tilt_v : ndarray, float64, (n,)
        Beam tilts of the series as disc shifts along the detector's A and B axes, in
        units of α.
    d_a, d_b : ndarray, float64, (n,)
        Normalised difference signals (A−C)/S and (B−D)/S measured at those tilts.
    table : InverseTable
        Shift (units of α) for each (dA, dB) on the grid; NaN outside the measured range.
    alpha_mrad : float or None
        α of the calibration the tilts (in mrad) were given with; a calibration used with
        this response must have the same α (:meth:`check`).
    smoothing : float
        Smoothing of the thin-plate-spline fit (0: through every point).
    signal : str
        What ``d_a``, ``d_b`` are: ``"segments"`` (normalised difference signals) or
        ``"com"`` (a 4D centre-of-mass deflection along the detector's axes in units of α,
        :mod:`dpcstem.fourd.response`). A response applies only to its own signal.
    path, sha256 : str or None
        The file it was loaded from and that file's SHA-256.
    """

    tilt_u: np.ndarray
    tilt_v: np.ndarray
    d_a: np.ndarray
    d_b: np.ndarray
    table: InverseTable
    alpha_mrad: float | None = None
    smoothing: float = 0.0
    signal: str = "segments"
    path: str | None = field(default=None, compare=False)
    sha256: str | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return "empirical"

    def inverse_table(self) -> InverseTable:
        return self.table

    def check(self, calibration: Calibration, *, signal: str = "segments") -> None:
        """Refuse a calibration whose α differs from the tilt series' (tilts given in mrad),
        and a response measured on another signal (segments or a 4D centre of mass).

        The table holds shifts in units of α; a reconstruction multiplies them by the
        calibration's α, so the two must agree.
        """
        if self.signal != signal:
            where = f" ({Path(self.path).name})" if self.path else ""
            raise CalibrationError(f"the empirical response{where} was measured on the {self.signal} signal, not "
                                   f"on {signal}: calibrate it with a tilt series of the same detector")
        if self.alpha_mrad is not None and not math.isclose(self.alpha_mrad, calibration.alpha_mrad, rel_tol=1e-6):
            where = f" ({Path(self.path).name})" if self.path else ""
            raise CalibrationError(
                f"the empirical response{where} was measured at alpha = {self.alpha_mrad:g} mrad, the calibration "
                f"has alpha_mrad = {calibration.alpha_mrad:g}; give the tilt series' alpha")

    def attrs(self) -> dict:
        """Provenance for a result file's root attributes."""
        out = {"response": self.name, "response_tilts": len(self.tilt_u)}
        if self.path is not None:
            out["response_file"] = Path(self.path).name
            out["response_sha256"] = self.sha256
        if self.alpha_mrad is not None:
            out["response_alpha_mrad"] = self.alpha_mrad
        out["response_signal"] = self.signal
        return out


def fit_response(tilt_x, tilt_y, d_a, d_b, *, calibration: Calibration | None = None,
                 smoothing=0.0, signal="segments") -> EmpiricalResponse:
    """An empirical detector response from difference signals at known beam tilts.

    Parameters
    ----------
    tilt_x, tilt_y : array_like, shape (n,)
        Beam tilts. Without ``calibration``: the shift (u, v) of the disc along the
        detector's A and B segment axes, in units of α. With it: the tilt (θx, θy) in mrad
        in the scan frame, turned into (u, v) with the calibration's detector rotation,
        flip and α. The tilts should cover, in both directions, the largest deflection the
        specimen gives: signals outside the range the series measured are not
        extrapolated (those pixels become invalid).
    d_a, d_b : array_like, shape (n,)
        Normalised difference signals (A−C)/S and (B−D)/S at those tilts
        (:func:`dpcstem.response.geometry.difference_signals`).
    calibration : Calibration, optional
        For tilts in mrad in the scan frame; its α is recorded, and a reconstruction with
        this response must use the same α.
    smoothing : float
        Thin-plate-spline smoothing (scipy ``RBFInterpolator``); 0 passes through every
        point, larger values average the series' noise.
    signal : {"segments", "com"}
        What ``d_a``, ``d_b`` are (:class:`EmpiricalResponse`).

    Returns
    -------
    EmpiricalResponse

    Notes
    -----
    The inverse map (dA, dB) → (u, v) is fitted directly, both axes together, by a
    thin-plate spline with a linear polynomial part. This assumes nothing about why the
    response departs from the geometric model (a blurred disc edge, a non-uniform disc,
    segment gaps, amplifier non-linearity): it is exact for a linear response and smooth
    in between the tilts. It is tabulated on the grid of :class:`~dpcstem.response.table.InverseTable`
    inside the convex hull of the measured signals, NaN outside.
    """
    from scipy.interpolate import RBFInterpolator
    from scipy.spatial import Delaunay, QhullError

    arrays = []
    for name, value in (("tilt_x", tilt_x), ("tilt_y", tilt_y), ("d_a", d_a), ("d_b", d_b)):
        arr = np.asarray(value, dtype=np.float64).ravel()
        if not np.all(np.isfinite(arr)):
            raise InputDataError(f"the tilt series' {name} holds non-finite values")
        arrays.append(arr)
    tu, tv, da, db = arrays
    if not (tu.size == tv.size == da.size == db.size):
        raise InputDataError(f"tilt_x, tilt_y, d_a, d_b must have one length, got {tu.size}, {tv.size}, "
                             f"{da.size}, {db.size}")
    alpha_mrad = None
    if calibration is not None:
        alpha_mrad = calibration.alpha_mrad
        wu, wv = calibration.to_detector_frame(tu, tv)
        tu, tv = wu / alpha_mrad, wv / alpha_mrad
    if tu.size < 9:
        raise InputDataError(f"a tilt series needs at least 9 tilts spread over both axes, got {tu.size}")
    smoothing = _validate.non_negative("smoothing", smoothing)
    signals = np.column_stack([da, db])
    try:
        hull = Delaunay(signals)
    except QhullError:
        raise InputDataError("the tilt series' signals lie on a line: tilt the beam along both axes") from None
    try:
        inverse = RBFInterpolator(signals, np.column_stack([tu, tv]), kernel="thin_plate_spline",
                                  smoothing=float(smoothing), degree=1)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise InputDataError(f"the tilt series cannot be fitted ({exc}); are two tilts repeated with "
                             "different signals?") from None
    reach = float(np.max(np.abs(signals)))
    grid = np.linspace(-reach, reach, TABLE_SIZE)
    grid_b, grid_a = np.meshgrid(grid, grid, indexing="ij")
    points = np.column_stack([grid_a.ravel(), grid_b.ravel()])
    inside = hull.find_simplex(points) >= 0
    shift = np.full((points.shape[0], 2), np.nan)
    shift[inside] = inverse(points[inside])
    table = InverseTable(u=shift[:, 0].reshape(grid_a.shape), v=shift[:, 1].reshape(grid_a.shape),
                         origin=-reach, step=float(grid[1] - grid[0]), name="empirical")
    return EmpiricalResponse(tilt_u=tu, tilt_v=tv, d_a=da, d_b=db, table=table, alpha_mrad=alpha_mrad,
                             smoothing=float(smoothing), signal=signal)
