"""Profiles across an interface and the figures of a space-charge layer.

An interface is given by two points (x, y) in nm on it, in the scan frame. Its *normal*
points from the first point's left to right: the line direction rotated by +90° (from scan
+x toward +y). Distances along the normal are positive on that side. A profile averages a
map over the band between the two points, in bins of distance, with standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import physics
from .errors import InputDataError


@dataclass(frozen=True)
class Interface:
    """A straight interface through two points (x, y) in nm, scan frame."""

    start_nm: tuple
    end_nm: tuple

    def __post_init__(self):
        if len(self.start_nm) != 2 or len(self.end_nm) != 2:
            raise InputDataError(f"an interface needs two points (x, y) in nm, got {self.start_nm}, {self.end_nm}")
        if math.dist(self.start_nm, self.end_nm) == 0:
            raise InputDataError(f"the two interface points coincide: {self.start_nm}")

    @property
    def direction(self) -> np.ndarray:
        d = np.subtract(self.end_nm, self.start_nm, dtype=float)
        return d / np.hypot(*d)

    @property
    def normal(self) -> np.ndarray:
        """Unit normal (x, y): the direction rotated by +90°."""
        dx, dy = self.direction
        return np.array([-dy, dx])

    @property
    def normal_deg(self) -> float:
        return math.degrees(math.atan2(self.normal[1], self.normal[0]))

    @property
    def length_nm(self) -> float:
        return math.dist(self.start_nm, self.end_nm)

    @classmethod
    def from_normal(cls, point_nm, normal_deg, length_nm) -> "Interface":
        """The interface through ``point_nm`` whose normal points at ``normal_deg``, ``length_nm`` long."""
        n = math.radians(normal_deg)
        along = np.array([math.sin(n), -math.cos(n)])  # normal rotated by −90°
        half = 0.5 * length_nm * along
        return cls(tuple(np.asarray(point_nm) - half), tuple(np.asarray(point_nm) + half))

    def coordinates(self, shape, step_nm):
        """(distance along the normal, position along the interface from its start), nm, per pixel."""
        sx, sy = _steps(step_nm)
        y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
        rx, ry = x * sx - self.start_nm[0], y * sy - self.start_nm[1]
        return rx * self.normal[0] + ry * self.normal[1], rx * self.direction[0] + ry * self.direction[1]

    def normal_component(self, vx, vy):
        """The component of a vector map along the interface normal."""
        return np.asarray(vx) * self.normal[0] + np.asarray(vy) * self.normal[1]


def _steps(step_nm):
    if np.ndim(step_nm) == 0:
        return float(step_nm), float(step_nm)
    sx, sy = step_nm
    return float(sx), float(sy)


@dataclass(frozen=True)
class Profile:
    """Mean of a map in bins of distance from an interface.

    Attributes
    ----------
    distance_nm : ndarray
        Bin centres along the normal, nm.
    mean, stderr : ndarray
        Mean over the band in each bin and its standard error (std / sqrt(count)); NaN for
        bins with fewer than two pixels.
    count : ndarray of int
    units : str
    """

    distance_nm: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    count: np.ndarray
    units: str = ""


def profile_across(values, interface: Interface, step_nm, *, half_range_nm=None, bin_nm=None, valid=None,
                   units="") -> Profile:
    """Average ``values`` over the band of the interface, binned by distance along its normal.

    Parameters
    ----------
    values : ndarray, shape (ny, nx)
    interface : Interface
        The band spans the interface from its start to its end point.
    step_nm : float or (float, float)
        Scan step (x, y) in nm.
    half_range_nm : float, optional
        Largest distance from the interface, nm (default: all of the band in the scan).
    bin_nm : float, optional
        Bin width in nm (default: the smaller scan step).
    valid : ndarray of bool, optional
        Pixels to use (default: finite values).
    units : str
        Unit of ``values``, carried into the profile.

    Returns
    -------
    Profile
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise InputDataError(f"a profile needs a 2-D map, got shape {values.shape}")
    distance, along = interface.coordinates(values.shape, step_nm)
    use = np.isfinite(values) & (along >= 0) & (along <= interface.length_nm)
    if valid is not None:
        use &= np.asarray(valid, bool)
    if half_range_nm is not None:
        use &= np.abs(distance) <= half_range_nm
    if not use.any():
        raise InputDataError("the interface band holds no valid pixel: check the two interface points (nm)")
    bin_nm = bin_nm or min(_steps(step_nm))
    lo = math.floor(distance[use].min() / bin_nm)
    index = np.floor(distance[use] / bin_nm).astype(int) - lo
    n_bins = index.max() + 1
    count = np.bincount(index, minlength=n_bins)
    total = np.bincount(index, weights=values[use], minlength=n_bins)
    squares = np.bincount(index, weights=values[use] ** 2, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        var = (squares - count * mean**2) / (count - 1)
        stderr = np.sqrt(np.clip(var, 0, None) / count)
    mean = np.where(count >= 1, mean, np.nan)
    stderr = np.where(count >= 2, stderr, np.nan)
    centres = (np.arange(n_bins) + lo + 0.5) * bin_nm
    return Profile(centres, mean, stderr, count, units)


@dataclass(frozen=True)
class LayerFigures:
    """Figures of a space-charge layer from profiles across it, each with its standard error.

    ``side`` is +1 when the layer lies on the positive-distance side of the interface.
    """

    peak_field_v_per_m: float
    peak_field_stderr: float
    peak_position_nm: float
    width_nm: float
    width_stderr: float
    potential_drop_v: float
    potential_drop_stderr: float
    areal_charge_c_per_m2: float
    areal_charge_stderr: float
    side: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def layer_figures(field_profile: Profile, *, side=None, counter_nm=None) -> LayerFigures:
    """Peak field, layer width, potential drop and areal charge from profiles across a layer.

    Parameters
    ----------
    field_profile : Profile
        The field component along the interface normal, V/m.
    side : {+1, −1}, optional
        Which side of the interface holds the layer; default: the side holding more of
        ∫|E|.
    counter_nm : float, optional
        Extent (nm) on the other side of the interface that holds the counter charge and is
        included in the potential drop; default: all of it.

    Notes
    -----
    - peak field: the largest |E| on the layer side;
    - width: the equivalent triangular width 2∫|E|dx / |E_peak| over the layer side (the
      depletion width w for a Mott–Schottky layer);
    - potential drop: ΔV = ∫E dx across the whole profile (V on the far negative side minus
      V on the far positive side);
    - areal charge: the charge per area the beam sees on the layer side, by Gauss's law
      σ = ε0 (E_far − E_peak), with E_far the mean field over the outer quarter of the
      layer side's profile. It equals ∫ρ dx over that side but takes two well-averaged field
      values instead of a sum of noisy charge-density bins (the charge profile is kept as
      the check that it integrates to the same).
    Standard errors are propagated from the bins' standard errors, taken as independent.
    """
    d = field_profile.distance_nm
    e = np.nan_to_num(field_profile.mean)
    e_err = np.nan_to_num(field_profile.stderr)
    dx = float(np.median(np.diff(d))) * physics.NM_TO_M
    if side is None:
        side = 1 if np.sum(np.abs(e[d > 0])) >= np.sum(np.abs(e[d < 0])) else -1
    layer = d * side > 0
    k = np.flatnonzero(layer)[np.argmax(np.abs(e[layer]))]
    peak, peak_err = e[k], e_err[k]
    integral = np.sum(np.abs(e[layer])) * dx
    integral_err = math.sqrt(np.sum(e_err[layer] ** 2)) * dx
    width = 2 * integral / abs(peak) * physics.M_TO_NM
    width_err = width * math.hypot(integral_err / integral, peak_err / peak) if integral > 0 else math.nan
    span = np.ones_like(layer) if counter_nm is None else (layer | (np.abs(d) <= counter_nm))
    drop = float(np.sum(e[span]) * dx)
    drop_err = float(math.sqrt(np.sum(e_err[span] ** 2)) * dx)
    order = np.flatnonzero(layer)[np.argsort(np.abs(d[layer]))]
    far = order[-max(len(order) // 4, 1):]
    e_far = float(np.mean(e[far]))
    e_far_err = float(math.sqrt(np.sum(e_err[far] ** 2)) / len(far))
    eps0 = physics.VACUUM_PERMITTIVITY_F_M
    areal = side * eps0 * (e_far - peak)
    areal_err = eps0 * math.hypot(e_far_err, peak_err)
    return LayerFigures(float(peak), float(peak_err), float(d[k]), float(width), float(width_err), drop, drop_err,
                        areal, areal_err, int(side))
