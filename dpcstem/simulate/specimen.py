"""The specimen besides its space-charge field: mean inner potential and thickness.

Every model here is analytic and is evaluated at whatever positions the probe visits (a
drifted scan, a fine grid), together with its gradient, so the deflection it gives,
θ = (e/pv)·∇(V_MIP·t), needs no numerical differentiation.

Positions are in nm in the scan frame; an *interface* is a point (x, y) in nm and the
direction of its normal in degrees from scan +x toward +y. "Before" is the side d < 0,
"after" the side d > 0 along the normal (the side a space-charge layer of
:mod:`~dpcstem.simulate.layers` occupies).

Steps between two materials are smooth: ½[1 + erf(d / (√2·w))] with a width w that stands
for the interface roughness projected through the specimen.

References
----------
Reimer & Kohl, *Transmission Electron Microscopy*, 5th ed. (2008), §3.1 (mean inner
potential, phase shift σ·V·t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .. import _validate, physics
from ..errors import InputDataError


def _distance(x_nm, y_nm, point_nm, normal_deg):
    n = math.radians(normal_deg)
    return (x_nm - point_nm[0]) * math.cos(n) + (y_nm - point_nm[1]) * math.sin(n), (math.cos(n), math.sin(n))


def _smooth_step(d, width_nm):
    """H(d) = ½[1 + erf(d/(√2 w))] and dH/dd."""
    h = 0.5 * (1 + special.erf(d / (math.sqrt(2) * width_nm)))
    dh = np.exp(-0.5 * (d / width_nm) ** 2) / (math.sqrt(2 * math.pi) * width_nm)
    return h, dh


@dataclass(frozen=True)
class MeanInnerPotential:
    """A step of the mean inner potential at the interface (bias-independent).

    Parameters
    ----------
    before_v, after_v : float
        Mean inner potential in V of the material before (d < 0) and after (d > 0) the
        interface (e.g. about 10–20 V for oxides and sulfides).
    width_nm : float
        Width w of the step (nm): the projected interface roughness.
    """

    before_v: float
    after_v: float
    width_nm: float = 1.0

    def __post_init__(self):
        _validate.finite("before_v (mean inner potential)", self.before_v)
        _validate.finite("after_v (mean inner potential)", self.after_v)
        _validate.positive("width_nm (interface width)", self.width_nm)

    def evaluate(self, x_nm, y_nm, interface):
        """Potential (V) and its gradient (dV/dx, dV/dy in V/nm) at the positions.

        ``interface`` is ((x, y) in nm, normal in degrees).
        """
        d, (nx, ny) = _distance(x_nm, y_nm, *interface)
        h, dh = _smooth_step(d, self.width_nm)
        jump = self.after_v - self.before_v
        return self.before_v + jump * h, jump * dh * nx, jump * dh * ny


@dataclass(frozen=True)
class UniformThickness:
    """One thickness everywhere, nm."""

    thickness_nm: float

    def __post_init__(self):
        _validate.positive("thickness_nm", self.thickness_nm)

    def evaluate(self, x_nm, y_nm, interface):
        """Thickness (nm) and its gradient (dt/dx, dt/dy, dimensionless) at the positions."""
        zeros = np.zeros(np.shape(x_nm))
        return zeros + self.thickness_nm, zeros, zeros


@dataclass(frozen=True)
class WedgeThickness:
    """A thickness that changes linearly across the scan.

    Parameters
    ----------
    thickness_nm : float
        Thickness at ``point_nm`` (default: the interface point), nm.
    slope : float
        Thickness change per distance along ``direction_deg`` (nm per nm).
    direction_deg : float
        Direction of increasing thickness, degrees from scan +x toward +y.
    point_nm : (float, float), optional
    """

    thickness_nm: float
    slope: float
    direction_deg: float = 0.0
    point_nm: tuple | None = None

    def __post_init__(self):
        _validate.positive("thickness_nm", self.thickness_nm)
        _validate.finite("slope (wedge, nm per nm)", self.slope)
        _validate.finite("direction_deg", self.direction_deg)

    def evaluate(self, x_nm, y_nm, interface):
        point = interface[0] if self.point_nm is None else self.point_nm
        d, (nx, ny) = _distance(x_nm, y_nm, point, self.direction_deg)
        zeros = np.zeros(np.shape(d))
        return self.thickness_nm + self.slope * d, zeros + self.slope * nx, zeros + self.slope * ny


@dataclass(frozen=True)
class StepThickness:
    """Two thicknesses meeting at a step: two materials thinned differently.

    Parameters
    ----------
    before_nm, after_nm : float
        Thickness before (d < 0) and after (d > 0) the step, nm (e.g. 270 nm of coated
        cathode against 131 nm of bare LiCoO2).
    width_nm : float
        Width of the step, nm.
    point_nm : (float, float), optional
        A point of the step; default the interface point.
    normal_deg : float, optional
        Direction of the step's normal; default the interface normal.
    """

    before_nm: float
    after_nm: float
    width_nm: float = 1.0
    point_nm: tuple | None = None
    normal_deg: float | None = None

    def __post_init__(self):
        _validate.positive("before_nm (thickness)", self.before_nm)
        _validate.positive("after_nm (thickness)", self.after_nm)
        _validate.positive("width_nm (step width)", self.width_nm)

    def evaluate(self, x_nm, y_nm, interface):
        point = interface[0] if self.point_nm is None else self.point_nm
        normal = interface[1] if self.normal_deg is None else self.normal_deg
        d, (nx, ny) = _distance(x_nm, y_nm, point, normal)
        h, dh = _smooth_step(d, self.width_nm)
        jump = self.after_nm - self.before_nm
        return self.before_nm + jump * h, jump * dh * nx, jump * dh * ny


def as_thickness(value):
    """A thickness model from a model, one number (nm) or a pair (before, after) in nm."""
    if hasattr(value, "evaluate"):
        return value
    if np.ndim(value) == 0:
        return UniformThickness(value)
    if np.shape(value) == (2,):
        return StepThickness(*value)
    raise InputDataError(
        f"thickness must be a number (nm), a pair (before, after) in nm, or a thickness model; got {value!r}")


def as_mean_inner_potential(value):
    """``None``, a :class:`MeanInnerPotential`, or a pair (before, after) in V."""
    if value is None or isinstance(value, MeanInnerPotential):
        return value
    if np.shape(value) == (2,):
        return MeanInnerPotential(*value)
    raise InputDataError(f"mip must be a pair (before, after) of mean inner potentials in V, got {value!r}")


def mip_deflection_mrad(mip, thickness, x_nm, y_nm, interface, kv):
    """Deflection (θx, θy) in mrad from the projected mean inner potential V·t.

    θ = (e/pv)·∇(V·t) = (e/pv)·(t·∇V + V·∇t): the step of V at the interface and, where
    the thickness changes, the prism of the material itself.

    Parameters
    ----------
    mip : MeanInnerPotential
    thickness : thickness model (:class:`UniformThickness`, :class:`WedgeThickness`,
        :class:`StepThickness`)
    x_nm, y_nm : ndarray
        Positions in nm, scan frame.
    interface : ((float, float), float)
        Interface point (nm) and normal (degrees).
    kv : float

    Returns
    -------
    theta_x, theta_y : ndarray, float64, shape of ``x_nm``
    """
    v, dvx, dvy = mip.evaluate(x_nm, y_nm, interface)
    t, dtx, dty = thickness.evaluate(x_nm, y_nm, interface)
    grad_x = t * dvx + v * dtx
    grad_y = t * dvy + v * dty
    return (physics.deflection_mrad_from_projected_potential_gradient(grad_x, kv),
            physics.deflection_mrad_from_projected_potential_gradient(grad_y, kv))
