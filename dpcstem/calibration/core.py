"""The calibration of one acquisition: optics, detector geometry, scan and specimen.

A :class:`Calibration` is built once, validated when built, and travels with the data
through every step. Each field name carries its unit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .. import _validate, physics
from ..errors import CalibrationError

#: Fields written to result files as root attributes, in this order.
SCALAR_FIELDS = (
    "kv",
    "alpha_mrad",
    "collection_inner_mrad",
    "collection_outer_mrad",
    "detector_rotation_deg",
    "flip",
    "step_x_nm",
    "step_y_nm",
    "thickness_nm",
    "eps_r",
)

#: The range of physics of each calibration value: (lowest, highest, what a value outside
#: most likely is). A value outside is refused, naming the unit slip (DESIGN.md §0): kV in V,
#: α in rad or µrad, a step or thickness in m or µm.
BOUNDS = {
    "kv": (1.0, 5000.0, "kv is the accelerating voltage in kV, e.g. 200 for 200 kV, not 200000"),
    "alpha_mrad": (0.1, 200.0, "alpha_mrad is the convergence semi-angle in mrad, e.g. 20 for 20 mrad, "
                               "not 0.02 (rad) or 20000 (µrad)"),
    "step_x_nm": (1e-3, 1e5, "the scan step is in nm, e.g. 0.5 for 0.5 nm, not 5e-10 (m) or 500 (pm)"),
    "step_y_nm": (1e-3, 1e5, "the scan step is in nm, e.g. 0.5 for 0.5 nm, not 5e-10 (m) or 500 (pm)"),
    "thickness_nm": (1.0, 5000.0, "thickness_nm is the specimen thickness in nm, e.g. 131 for 131 nm, "
                                  "not 1.31e-7 (m) or 0.131 (µm)"),
    "eps_r": (1.0, 1e5, "eps_r is the relative permittivity (dimensionless, 1 for vacuum, about 12 for Si)"),
}
#: Largest accelerating voltage taken as a value in kV (the largest microscopes run at 3 MV).
KV_MAX = BOUNDS["kv"][1]
#: Largest convergence semi-angle taken as a value in mrad (no probe-forming lens comes near it).
ALPHA_MAX_MRAD = BOUNDS["alpha_mrad"][1]


def check_bounds(name, value):
    """``value`` (a number, not None) inside its :data:`BOUNDS`, else a :class:`CalibrationError`
    that names the parameter, the range and the likely unit slip.

    Examples
    --------
    >>> check_bounds("thickness_nm", 131.0)
    131.0
    >>> check_bounds("thickness_nm", 1.31e-7)
    Traceback (most recent call last):
    ...
    dpcstem.errors.CalibrationError: thickness_nm 1.31e-07 is outside 1 to 5000: thickness_nm is the specimen thickness in nm, e.g. 131 for 131 nm, not 1.31e-7 (m) or 0.131 (µm)
    """
    low, high, hint = BOUNDS[name]
    if not low <= value <= high:
        raise CalibrationError(f"{name} {value:g} is outside {low:g} to {high:g}: {hint}")
    return value


#: Outer collection angles at or above this (mrad) mean "no outer edge" (``--collection 0 inf``).
NO_OUTER_EDGE = math.inf


def frame_matrix(rotation_deg, flip=False) -> np.ndarray:
    """The 2 x 2 matrix R that takes detector-frame vectors to the scan frame: (x, y) = R·(u, v).

    R = rotation(ψ)·diag(1, −1 if flip else 1), composed once (DESIGN.md §2): column 0 is the
    direction of segment A (azimuth ψ from scan +x toward scan +y), column 1 that of segment
    B (ψ+90°, or ψ−90° with ``flip``), as scan (x, y) components. R is orthogonal: its
    transpose takes the scan frame to the detector frame. The one home of the frame rotation;
    read-only.

    Examples
    --------
    >>> frame_matrix(90.0, flip=True).round(12) + 0.0  # A along scan +y, B along scan +x
    array([[0., 1.],
           [1., 0.]])
    """
    psi = math.radians(rotation_deg)
    c, s = math.cos(psi), math.sin(psi)
    m = -1.0 if flip else 1.0
    matrix = np.array([[c, -s * m], [s, c * m]])
    matrix.setflags(write=False)
    return matrix


def apply_matrix(matrix, x, y):
    """(x', y') = matrix·(x, y) for numbers or arrays of one shape, as float64."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim == 0 or x.shape != y.shape:
        return matrix[0, 0] * x + matrix[0, 1] * y, matrix[1, 0] * x + matrix[1, 1] * y
    out_x = x * matrix[0, 0]  # maps: one temporary per component
    out_x += y * matrix[0, 1]
    out_y = x * matrix[1, 0]
    out_y += y * matrix[1, 1]
    return out_x, out_y


@dataclass(frozen=True, eq=False)
class Calibration:
    """Everything needed to turn segment signals into physical quantities.

    Parameters
    ----------
    kv : float
        Accelerating voltage in kV.
    alpha_mrad : float
        Convergence semi-angle α of the probe in mrad (the radius of the bright-field disc).
    step_x_nm, step_y_nm : float
        Scan step in nm along x (columns, fast scan) and y (rows). ``step_y_nm`` defaults
        to ``step_x_nm``.
    thickness_nm : float or ndarray, optional
        Specimen thickness in nm: one number, or a map of shape (ny, nx) used pixel by
        pixel. Needed for the field and charge; ``None`` gives deflection only.
    collection_inner_mrad, collection_outer_mrad : float, optional
        Inner and outer collection semi-angles of the segmented detector in mrad. The
        inner defaults to 0 (no hole); the outer to ``None`` (beyond the disc at every
        shift). The outer must not be smaller than α, nor the inner reach α.
    detector_rotation_deg : float
        Azimuth ψ of the centre of segment A, in degrees, measured from scan +x toward
        scan +y (DESIGN.md §2).
    flip : bool
        Mirror the detector's y axis: B sits at ψ−90° and D at ψ+90°.
    eps_r : float, optional
        Relative permittivity of the specimen; when given, the free charge ε0 εr ∇·E is
        reported as well.
    sources : mapping, optional
        Where each value came from (``"user"``, ``"file"``, ``"default"``), for provenance.
    """

    kv: float
    alpha_mrad: float
    step_x_nm: float
    step_y_nm: float | None = None
    thickness_nm: float | np.ndarray | None = None
    collection_inner_mrad: float = 0.0
    collection_outer_mrad: float | None = None
    detector_rotation_deg: float = 0.0
    flip: bool = False
    eps_r: float | None = None
    sources: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        setv = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731 (frozen)
        setv("kv", check_bounds("kv", _validate.positive("kv", self.kv, what="accelerating voltage in kV")))
        setv("alpha_mrad", check_bounds("alpha_mrad", _validate.positive(
            "alpha_mrad", self.alpha_mrad, what="convergence semi-angle in mrad")))
        setv("step_x_nm", check_bounds("step_x_nm", _validate.positive("step_x_nm", self.step_x_nm,
                                                                       what="scan step in nm")))
        step_y_from_x = self.step_y_nm is None
        step_y = self.step_x_nm if step_y_from_x else self.step_y_nm
        setv("step_y_nm", check_bounds("step_y_nm", _validate.positive("step_y_nm", step_y, what="scan step in nm")))
        setv("thickness_nm", _thickness(self.thickness_nm))
        inner = 0.0 if self.collection_inner_mrad is None else self.collection_inner_mrad
        inner = _validate.non_negative("collection_inner_mrad", inner, what="inner collection semi-angle in mrad")
        setv("collection_inner_mrad", inner)
        outer = self.collection_outer_mrad
        if outer is not None and not isinstance(outer, (bool, np.bool_)) and np.ndim(outer) == 0 \
                and not isinstance(outer, str) and float(outer) == math.inf:
            outer = None  # "no outer edge"
        outer = _validate.positive("collection_outer_mrad", outer, allow_none=True,
                                   what="outer collection semi-angle in mrad")
        setv("collection_outer_mrad", outer)
        if inner >= self.alpha_mrad:
            raise CalibrationError(
                f"collection_inner_mrad {inner} must be smaller than alpha_mrad {self.alpha_mrad}: "
                "the bright-field disc would fall inside the detector's hole"
            )
        if outer is not None and outer <= inner:
            raise CalibrationError(f"collection_outer_mrad {outer} must exceed collection_inner_mrad {inner}")
        if outer is not None and outer < self.alpha_mrad * (1 - 1e-9):
            raise CalibrationError(
                f"alpha_mrad {self.alpha_mrad} is above collection_outer_mrad {outer}: the bright-field disc "
                "overfills the detector and a small deflection changes no segment; give the outer angle >= alpha"
            )
        setv("detector_rotation_deg", _validate.finite("detector_rotation_deg", self.detector_rotation_deg,
                                                       noun="angle in degrees"))
        setv("flip", _validate.flag("flip", self.flip))
        eps_r = _validate.positive("eps_r", self.eps_r, allow_none=True, what="relative permittivity")
        setv("eps_r", None if eps_r is None else check_bounds("eps_r", eps_r))
        sources = dict(self.sources)
        for name in SCALAR_FIELDS:  # a value nobody named a source for: the dataclass's default, or given
            if name not in sources:
                default = _FIELD_DEFAULTS.get(name, _REQUIRED)
                sources[name] = "default" if _is(getattr(self, name), default) else "user"
        if step_y_from_x:
            sources["step_y_nm"] = sources["step_x_nm"]
        setv("sources", sources)

    # -- derived quantities -------------------------------------------------------------
    @property
    def pv_over_e_v(self) -> float:
        """pv/e of the beam electrons in volts."""
        return float(physics.pv_over_e_v(self.kv))

    @property
    def inner_over_alpha(self) -> float:
        """Inner collection angle in units of α."""
        return self.collection_inner_mrad / self.alpha_mrad

    @property
    def outer_over_alpha(self) -> float:
        """Outer collection angle in units of α (``inf`` when not given)."""
        return math.inf if self.collection_outer_mrad is None else self.collection_outer_mrad / self.alpha_mrad

    @property
    def frame_matrix(self) -> np.ndarray:
        """The 2 x 2 matrix R with (x, y) = R·(u, v): detector frame to scan frame (:func:`frame_matrix`)."""
        return frame_matrix(self.detector_rotation_deg, self.flip)

    def to_scan_frame(self, u, v):
        """A detector-frame vector (u along segment A, v along segment B) in the scan frame (x, y).

        Works on numbers or arrays of any one shape, in any unit (the result has the same).

        Examples
        --------
        >>> cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, detector_rotation_deg=90)
        >>> [round(float(c), 12) + 0.0 for c in cal.to_scan_frame(1.0, 0.0)]
        [0.0, 1.0]
        """
        return apply_matrix(self.frame_matrix, u, v)

    def to_detector_frame(self, x, y):
        """A scan-frame vector (x, y) along the detector's A and B axes (u, v): the inverse of :meth:`to_scan_frame`.

        Examples
        --------
        >>> cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, detector_rotation_deg=90, flip=True)
        >>> [round(float(c), 12) + 0.0 for c in cal.to_detector_frame(0.0, 1.0)]
        [1.0, 0.0]
        """
        return apply_matrix(self.frame_matrix.T, x, y)

    def require_thickness(self):
        if self.thickness_nm is None:
            raise CalibrationError("thickness_nm is needed for the field and charge density (give --thickness NM)")
        return self.thickness_nm

    def replace(self, **changes) -> "Calibration":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_attrs(self) -> dict:
        """Scalar fields as a flat dict for HDF5 attributes (None written as NaN; a map as 'map')."""
        out = {}
        for name in SCALAR_FIELDS:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                out[name] = "map"
            elif value is None:
                out[name] = math.nan
            else:
                out[name] = value
        for name, source in self.sources.items():
            out[f"{name}_source"] = source
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping, thickness_map=None) -> "Calibration":
        """Inverse of :meth:`to_attrs`."""
        kwargs = {}
        for name in SCALAR_FIELDS:
            if name not in attrs:
                continue
            value = attrs[name]
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and value == "map":
                value = thickness_map
            elif isinstance(value, (float, np.floating)) and math.isnan(value):
                value = None
            elif name == "flip":
                value = bool(value)
            kwargs[name] = value
        sources = {k[: -len("_source")]: (v.decode() if isinstance(v, bytes) else str(v))
                   for k, v in attrs.items() if k.endswith("_source")}
        return cls(**kwargs, sources=sources)


#: Where a calibration value came from: the acquisition file, the user (an option, a Python
#: argument), a default the program assumed, or a measurement on the data (the 4D disc
#: radius, a fitted rotation).
SOURCES = ("file", "user", "default", "measured", "fitted")
_REQUIRED = object()


def _is(value, default):
    if default is _REQUIRED:
        return False
    if value is None or default is None:
        return value is default
    return not isinstance(value, np.ndarray) and value == default


def _thickness(value):
    if value is None:
        return None
    if np.ndim(value) == 0:
        return check_bounds("thickness_nm", _validate.positive("thickness_nm", value,
                                                                what="specimen thickness in nm"))
    arr = np.array(value, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise CalibrationError(f"a thickness map must be 2-D (ny, nx), got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise CalibrationError(
            f"thickness_nm map has {int(bad.sum())} pixels that are not positive and finite; "
            "every thickness must be > 0 nm")
    check_bounds("thickness_nm", float(np.median(arr)))
    check_bounds("thickness_nm", float(arr.max()))
    arr.setflags(write=False)
    return arr


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Calibration)
                   if f.default is not dataclasses.MISSING}
