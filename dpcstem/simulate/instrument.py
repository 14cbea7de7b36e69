"""The instrument between the specimen and the file: detector, scan, counting.

- :class:`Descan`: a deflection that follows the scan coils (linear or quadratic across the
  scan), added at the detector whatever the specimen does.
- :func:`detect`: segment images from a deflection map: response, Poisson counting at a
  dose, unequal segment gains and offsets, the detector's integer type.
- :func:`simulate_vacuum`: a vacuum reference scan (descan only).
- :func:`simulate_tilt_series`: segment signals at known beam tilts, for an empirical
  response calibration (Brown et al., Ultramicroscopy 182 (2017) 169,
  doi:10.1016/j.ultramic.2017.07.002).

Angles are in mrad in the scan frame; segments are stacked A, B, C, D (DESIGN.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _validate
from ..calibration import Calibration
from ..calibration.descan import descan_surface
from ..errors import InputDataError
from ..response.geometry import difference_signals
from .segments import segments_from_deflection


@dataclass(frozen=True)
class Descan:
    """A descan deflection: follows the scan position, not the specimen.

    The deflection added at scan position (u, w), the fractional position across the scan
    from its centre (u = x / width − ½ and w = y / height − ½, each from −½ to ½; 0 along an
    axis of one pixel), is, for each component,

        θ = offset + a·u + b·w + c·u² + d·u·w + e·w²

    Parameters
    ----------
    offset_mrad : (float, float)
        (θx, θy) at the scan centre, mrad.
    linear_mrad : ((float, float), (float, float))
        ((a, b) of θx, (a, b) of θy): the change of each component from one edge of the
        scan to the other, along x and along y, mrad.
    quadratic_mrad : ((float, float, float), (float, float, float))
        ((c, d, e) of θx, (c, d, e) of θy), mrad.
    """

    offset_mrad: tuple = (0.0, 0.0)
    linear_mrad: tuple = ((0.0, 0.0), (0.0, 0.0))
    quadratic_mrad: tuple = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))

    def __post_init__(self):
        for name, shape in (("offset_mrad", (2,)), ("linear_mrad", (2, 2)), ("quadratic_mrad", (2, 3))):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != shape or not np.all(np.isfinite(value)):
                raise InputDataError(
                    f"Descan {name} must be finite numbers of shape {shape}, got {getattr(self, name)!r}")

    def __call__(self, shape):
        """The descan maps (θx, θy) in mrad, float64, of scan shape (ny, nx)."""
        ny, nx = shape
        per_x, per_y = 1.0 / max(nx - 1, 1), 1.0 / max(ny - 1, 1)  # u and w per pixel from the centre
        coefficients = []
        for k in range(2):
            a, b = self.linear_mrad[k]
            c, d, e = self.quadratic_mrad[k]
            coefficients.append([self.offset_mrad[k], a * per_x, b * per_y, c * per_x**2, d * per_x * per_y,
                                 e * per_y**2])
        return descan_surface(*coefficients, (ny, nx))


# -- counting ----------------------------------------------------------------------------------

def _four(name, values, default, *, positive_only=False):
    return np.full(4, default) if values is None else _validate.four(name, values, positive_only=positive_only)


def detect(theta_x_mrad, theta_y_mrad, calibration: Calibration, *, dose=4e4, noise=True, gains=None, offsets=None,
           edge_blur=0.0, dtype=np.uint16, rng=None):
    """Segment images as the detector records them for a deflection map.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Deflection of the bright-field disc at the detector, mrad, scan frame (specimen
        plus descan).
    calibration : Calibration
        α, collection angles, detector rotation and flip.
    dose : float or ndarray (ny, nx)
        Mean electrons per probe position in the bright-field disc (a map where the
        specimen scatters some of the beam outside the disc).
    noise : bool
        Poisson counting noise; without it the expected counts (times gains, plus
        offsets) are returned, rounded when ``dtype`` is an integer type.
    gains, offsets : array_like, shape (4,), optional
        raw = gain·electrons + offset for A, B, C, D (default 1 and 0).
    edge_blur : float
        Blur of the disc edge, standard deviation in units of α (0: the sharp disc of the
        exact response, :mod:`dpcstem.response.exact`).
    dtype : numpy dtype
        Output type (uint16 as a detector writes it).
    rng : numpy.random.Generator or int, optional
        Random generator (or seed) for the noise.

    Returns
    -------
    ndarray, shape (4, ny, nx), ``dtype``
        Segment images A, B, C, D in counts.

    Raises
    ------
    InputDataError
        A deflection beyond α for the sharp disc, or counts beyond the range of ``dtype``.
    """
    tx = np.asarray(theta_x_mrad, dtype=float)
    ty = np.asarray(theta_y_mrad, dtype=float)
    try:
        dose = np.asarray(dose, dtype=float)
    except (TypeError, ValueError):
        raise InputDataError(f"dose must be a number of electrons per probe position, got {dose!r}") from None
    if dose.ndim not in (0, tx.ndim) or (dose.ndim and dose.shape != tx.shape):
        raise InputDataError(f"a dose map must have the scan's shape {tx.shape}, got {dose.shape}")
    if not np.all(np.isfinite(dose)) or np.any(dose <= 0):
        bad = dose if dose.ndim == 0 else dose[~(np.isfinite(dose) & (dose > 0))].flat[0]
        raise InputDataError(f"dose must be positive and finite (electrons per probe position), got {float(bad)!r}")
    gains = _four("gains", gains, 1.0, positive_only=True)
    offsets = _four("offsets", offsets, 0.0)
    s_max = float(np.max(np.hypot(tx, ty))) / calibration.alpha_mrad if tx.size else 0.0
    if edge_blur == 0 and not s_max < 1:
        raise InputDataError(
            f"the deflection reaches {s_max * calibration.alpha_mrad:.4g} mrad, beyond alpha = "
            f"{calibration.alpha_mrad:.4g} mrad, where the bright-field disc leaves the detector centre; "
            "lower the field, the mean-inner-potential step or the descan, or raise alpha")
    if noise:
        counts = segments_from_deflection(tx, ty, calibration, dose=dose, gains=gains, offsets=offsets,
                                          rng=np.random.default_rng(rng), edge_blur=edge_blur)
    else:
        expected = segments_from_deflection(tx, ty, calibration, edge_blur=edge_blur) * dose
        counts = expected * gains.reshape(4, *[1] * tx.ndim) + offsets.reshape(4, *[1] * tx.ndim)
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        top, bottom = float(counts.max()), float(counts.min())
        if top > info.max or bottom < info.min:
            raise InputDataError(
                f"the counts reach {top:.6g} (dose up to {dose.max():.6g} e/position, gains up to "
                f"{gains.max():.4g}, offsets up to {offsets.max():.4g}), beyond the {dtype} range "
                f"{info.min}..{info.max}: lower the dose")
        counts = np.rint(counts)
    return counts.astype(dtype)


def simulate_vacuum(calibration: Calibration, shape, *, descan=None, **detector):
    """A vacuum reference scan: no specimen, the same detector and descan.

    Parameters
    ----------
    calibration : Calibration
    shape : (int, int)
        Scan shape (ny, nx).
    descan : Descan, optional
    **detector
        As for :func:`detect` (``dose``, ``noise``, ``gains``, ``offsets``, ``edge_blur``,
        ``dtype``, ``rng``).

    Returns
    -------
    ndarray, shape (4, ny, nx)
    """
    ny, nx = _shape(shape)
    tx, ty = (descan or Descan())((ny, nx))
    return detect(tx, ty, calibration, **detector)


def _shape(shape):
    try:
        ny, nx = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise InputDataError(f"shape must be two positive integers (ny, nx), got {shape!r}") from None
    if ny < 1 or nx < 1:
        raise InputDataError(f"shape must be two positive integers (ny, nx), got {shape!r}")
    return ny, nx


@dataclass
class TiltSeries:
    """Segment signals recorded at known beam tilts (in vacuum, at one scan position).

    Attributes
    ----------
    tilt_x_mrad, tilt_y_mrad : ndarray, float64, (n,)
        The beam tilt of each measurement, mrad, scan frame.
    segments : ndarray, (4, n)
        Counts of A, B, C, D at each tilt.
    edge_blur : float
        Edge blur of the disc, units of α.
    gains, offsets : ndarray, (4,)
        The detector's gains and offsets that made the counts.
    """

    tilt_x_mrad: np.ndarray
    tilt_y_mrad: np.ndarray
    segments: np.ndarray
    edge_blur: float = 0.0
    gains: np.ndarray = field(default_factory=lambda: np.ones(4))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(4))

    def difference_signals(self, *, gains=None, offsets=None):
        """(A − C)/S, (B − D)/S and S = A + B + C + D after removing offsets and gains.

        Parameters
        ----------
        gains, offsets : array_like, shape (4,), optional
            Default: none (raw counts). Pass ``self.gains``, ``self.offsets`` for the
            corrected signals.

        Returns
        -------
        d_a, d_b, total : ndarray, float64, (n,)
        """
        return difference_signals(self.segments, gains=gains, offsets=offsets)


def simulate_tilt_series(calibration: Calibration, tilts_mrad, *, edge_blur=0.0, dose=4e4, noise=False,
                         gains=None, offsets=None, dtype=np.float64, rng=None) -> TiltSeries:
    """The segment signals at known beam tilts, for an empirical response calibration.

    Parameters
    ----------
    calibration : Calibration
        α, collection angles, detector rotation and flip.
    tilts_mrad : array_like, shape (n, 2)
        Beam tilts (θx, θy) in mrad, scan frame.
    edge_blur : float
        Blur of the disc edge, Gaussian standard deviation in units of α; with a blur
        the response is computed numerically (:func:`~dpcstem.simulate.blurred.blurred_segment_areas`) and tilts
        may go beyond α.
    dose, noise, gains, offsets, dtype, rng
        As for :func:`detect` (default: expected counts, no noise, float64).

    Returns
    -------
    TiltSeries
    """
    tilts = np.asarray(tilts_mrad, dtype=float)
    if tilts.ndim != 2 or tilts.shape[1] != 2 or tilts.shape[0] == 0 or not np.all(np.isfinite(tilts)):
        raise InputDataError(
            f"tilts_mrad must be finite pairs (theta_x, theta_y) of shape (n, 2), got shape {tilts.shape}")
    segments = detect(tilts[None, :, 0], tilts[None, :, 1], calibration, dose=dose, noise=noise, gains=gains,
                      offsets=offsets, edge_blur=edge_blur, dtype=dtype, rng=rng)[:, 0, :]
    return TiltSeries(tilts[:, 0].copy(), tilts[:, 1].copy(), segments, float(edge_blur),
                      _four("gains", gains, 1.0), _four("offsets", offsets, 0.0))
