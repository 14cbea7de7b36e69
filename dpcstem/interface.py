"""Profiles across an interface and the figures of a space-charge layer.

An interface is given by two points P1, P2 (x, y) in nm on it, in the scan frame.

**The normal rule** (one rule everywhere: library, command line, result file, demo): the
normal is the direction P1 → P2 rotated by +90° (from scan +x toward scan +y),
n = (−d_y, d_x). On an image displayed as a microscope shows it (row 0 at the top, y
pointing down), that is the right-hand side of someone walking from P1 to P2. Distances
along the normal are positive on that side, and the field component "along the normal" is
E·n. To flip the normal, swap the two points.

A profile averages a map over the band between the two points, in bins of distance, with
standard errors.
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

    def describe(self) -> str:
        """The rule's outcome in words, as the command line prints it."""
        nx, ny = self.normal
        return (f"normal points toward ({nx:+.3f}, {ny:+.3f}) = {self.normal_deg:.1f} deg from scan +x toward +y "
                f"(the right-hand side walking from ({self.start_nm[0]:g}, {self.start_nm[1]:g}) to "
                f"({self.end_nm[0]:g}, {self.end_nm[1]:g}) nm on the image, y down)")

    def attrs(self) -> dict:
        """What a result file stores with the points."""
        return {"interface_points_nm": np.array([*self.start_nm, *self.end_nm], float),
                "interface_normal": np.asarray(self.normal, float), "interface_normal_deg": self.normal_deg,
                "interface_normal_rule": "normal = direction P1->P2 rotated by +90 deg (scan +x toward +y)"}

    def check_inside(self, shape, step_nm, name="the interface"):
        """Refuse an interface whose points lie outside the scan (figures there would be noise)."""
        sx, sy = _steps(step_nm)
        width, height = (shape[1] - 1) * sx, (shape[0] - 1) * sy
        for point in (self.start_nm, self.end_nm):
            x, y = point
            if not (-0.5 * sx <= x <= width + 0.5 * sx and -0.5 * sy <= y <= height + 0.5 * sy):
                raise InputDataError(f"{name}: point ({x:g}, {y:g}) nm lies outside the scan (x 0 to {width:g} nm, "
                                     f"y 0 to {height:g} nm): give two points inside it")

    def default_bin_nm(self, step_nm) -> float:
        """Bin width that leaves no bin empty: the pixel spacing along the normal, max(s_x|n_x|, s_y|n_y|).

        With unequal steps a bin of the smaller step would leave every other bin empty
        across an interface normal to the coarser axis.
        """
        sx, sy = _steps(step_nm)
        return float(max(sx * abs(self.normal[0]), sy * abs(self.normal[1])))

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
    bin_nm : float
        Bin width in nm.
    """

    distance_nm: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    count: np.ndarray
    units: str = ""
    bin_nm: float = math.nan

    def __repr__(self):  # a table of rows holding profiles prints one line per profile, not its arrays
        if not self.distance_nm.size:
            return f"Profile(no bins, {self.units})"
        return (f"Profile({self.distance_nm.size} bins of {self.bin_nm:.3g} nm from {self.distance_nm[0]:.4g} to "
                f"{self.distance_nm[-1]:.4g} nm, {self.units})")

    def within(self, half_range_nm) -> "Profile":
        """The bins whose centres lie within ``half_range_nm`` of the interface."""
        keep = np.abs(self.distance_nm) <= half_range_nm
        return Profile(self.distance_nm[keep], self.mean[keep], self.stderr[keep], self.count[keep], self.units,
                       self.bin_nm)


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
        Bin width in nm (default: :meth:`Interface.default_bin_nm`, no bin left empty).
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
    bin_nm = bin_nm or interface.default_bin_nm(step_nm)
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
    return Profile(centres, mean, stderr, count, units, float(bin_nm))


def default_half_range(profiles, *, threshold=3.0, margin=1.5):
    """Half-range (nm) of the layer figures from the data: where the field returns to noise.

    For each profile (the net field along the normal at each bias), the farthest bin on
    either side whose mean, smoothed over three bins, stands more than ``threshold``
    standard errors from zero, counted from the interface outward until the first bin that
    falls back to noise; the half-range is ``margin`` times the largest such distance over
    the profiles (so that the outer quarter of the layer side, where the far field is taken,
    holds field-free bins), and at least three bins.
    """
    reach = 0.0
    bin_nm = math.nan
    for p in profiles:
        bin_nm = p.bin_nm
        mean = np.nan_to_num(p.mean)
        err = np.where(np.isfinite(p.stderr), p.stderr, np.inf)
        kernel = np.ones(3) / 3
        smooth = np.convolve(mean, kernel, mode="same")
        smooth_err = np.sqrt(np.convolve(err**2, kernel, mode="same")) / math.sqrt(3)
        above = np.abs(smooth) > threshold * smooth_err
        for side in (1, -1):
            order = np.flatnonzero(p.distance_nm * side >= -0.5 * p.bin_nm)
            order = order[np.argsort(np.abs(p.distance_nm[order]))]
            for k in order:
                if not above[k]:
                    break
                reach = max(reach, abs(float(p.distance_nm[k])))
    if not np.isfinite(bin_nm):
        raise InputDataError("no profile to take the half-range from")
    return max(margin * reach, 3 * bin_nm)


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
    if d.size < 3:
        raise InputDataError(f"a profile of {d.size} bins cannot give layer figures: widen the half-range")
    dx = (field_profile.bin_nm if np.isfinite(field_profile.bin_nm) else float(np.median(np.diff(d)))) \
        * physics.NM_TO_M
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
