"""Space-charge layers at an interface, with their exact field, charge and potential.

Each layer is a 1-D profile along the interface normal, x in nm (x = 0 at the interface).
Fields are in V/m, charge densities in C/m³, potentials in V. The *total* charge density is
the one a DPC measurement sees, ρ = ε0 dE/dx (free plus bound); the *free* charge is
ε0 εr dE/dx inside each material.

Every layer's counter charge is included, so the field is zero on both sides far from the
interface and the total charge integrates to zero.

References
----------
Sze & Ng, *Physics of Semiconductor Devices*, 3rd ed. (2007), §2.2 (depletion approximation).
Bard & Faulkner, *Electrochemical Methods*, 2nd ed. (2001), §13.3 (Gouy–Chapman).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .. import _validate, physics

_EPS0 = physics.VACUUM_PERMITTIVITY_F_M
_E = physics.ELEMENTARY_CHARGE_C


def _check(layer, *, positive=(), finite=()):
    """Refuse a layer whose densities, permittivities or lengths are not positive numbers."""
    for name in positive + finite:
        value = getattr(layer, name)
        if value is None and name.startswith("counter_"):
            continue
        check = _validate.positive if name in positive else _validate.finite
        check(f"{type(layer).__name__}: {name}", value)


@dataclass(frozen=True)
class LayerProfile:
    """A layer sampled at positions ``x_nm``: field (V/m), total and free charge (C/m³), potential (V)."""

    x_nm: np.ndarray
    field_v_per_m: np.ndarray
    charge_c_per_m3: np.ndarray
    free_charge_c_per_m3: np.ndarray
    potential_v: np.ndarray


def _sheet(x, sheet_nm, field_at_interface):
    """Counter charge: a uniform slab −sheet_nm < x < 0 ramping the field from 0 to its interface value."""
    ramp = np.clip((x + sheet_nm) / sheet_nm, 0.0, 1.0)
    inside = (x > -sheet_nm) & (x < 0)
    field = field_at_interface * ramp * (x < 0)
    charge = np.where(inside, _EPS0 * field_at_interface / (sheet_nm * physics.NM_TO_M), 0.0)
    return field, charge


@dataclass(frozen=True)
class MottSchottky:
    """A depletion layer of uniform dopant density (the Mott–Schottky / depletion approximation).

    One-sided (``counter_density_per_m3`` None): the layer 0 < x < w holds a charge −e·N
    (for a positive drop), w = sqrt(2 ε0 εr ΔV / (e N)), E = (eN / ε0εr)(w − x),
    V = ΔV (1 − x/w)²; the counter charge sits in a slab of ``sheet_nm`` on the other side.
    Two-sided: density N1 = ``counter_density_per_m3`` (permittivity ``counter_eps_r``) on
    x < 0 with w1·N1 = w2·N2 and the drop shared as ΔV1 + ΔV2 = ΔV.

    Parameters
    ----------
    density_per_m3 : float
        Ionised dopant (or vacancy) density N of the layer side, in m⁻³.
    eps_r : float
        Relative permittivity of the layer side.
    potential_drop_v : float
        Potential drop ΔV across the layer in V (its sign sets the sign of the charges).
    counter_density_per_m3, counter_eps_r : float, optional
        The other side's density and permittivity, for a two-sided layer.
    sheet_nm : float
        Thickness of the counter-charge slab of a one-sided layer, in nm; for a two-sided
        layer with unequal permittivities, the width over which the field steps at the
        interface (the bound charge ε0·ΔE of the dielectric step lies there).
    """

    density_per_m3: float
    eps_r: float
    potential_drop_v: float
    counter_density_per_m3: float | None = None
    counter_eps_r: float | None = None
    sheet_nm: float = 1.0

    def __post_init__(self):
        _check(self, positive=("density_per_m3", "eps_r", "counter_density_per_m3", "counter_eps_r", "sheet_nm"),
               finite=("potential_drop_v",))

    @property
    def _eps(self):
        return _EPS0 * self.eps_r

    @property
    def _counter_eps(self):
        return _EPS0 * (self.counter_eps_r or self.eps_r)

    def widths_nm(self) -> tuple[float, float]:
        """Depletion widths (counter side w1, layer side w2) in nm; w1 = 0 when one-sided."""
        drop = abs(self.potential_drop_v)
        n2 = self.density_per_m3
        if self.counter_density_per_m3 is None:
            return 0.0, math.sqrt(2 * self._eps * drop / (_E * n2)) * physics.M_TO_NM
        n1 = self.counter_density_per_m3
        # ΔV = e N1 w1² / (2ε1) + e N2 w2² / (2ε2) with w2 = N1 w1 / N2.
        w1 = math.sqrt(drop / (_E * n1 * (1 / (2 * self._counter_eps) + n1 / (2 * self._eps * n2))))
        return w1 * physics.M_TO_NM, w1 * n1 / n2 * physics.M_TO_NM

    @property
    def width_nm(self) -> float:
        """Total width of the space-charge region in nm (both sides of a two-sided layer)."""
        return sum(self.widths_nm())

    @property
    def peak_field_v_per_m(self) -> float:
        """Field at the interface, V/m (signed: positive along +x for a positive drop)."""
        _, w2 = self.widths_nm()
        return math.copysign(_E * self.density_per_m3 * w2 * physics.NM_TO_M / self._eps, self.potential_drop_v)

    @property
    def areal_charge_c_per_m2(self) -> float:
        """Free charge per area in the layer side, C/m² (−e·N·w2 for a positive drop)."""
        _, w2 = self.widths_nm()
        return -math.copysign(_E * self.density_per_m3 * w2 * physics.NM_TO_M, self.potential_drop_v)

    def profile(self, x_nm) -> LayerProfile:
        x = np.asarray(x_nm, dtype=float)
        w1, w2 = self.widths_nm()
        sign = math.copysign(1.0, self.potential_drop_v)
        n2 = self.density_per_m3
        e_peak = self.peak_field_v_per_m
        right = (x >= 0) & (x < w2)
        field = np.where(right, e_peak * (w2 - x) / w2, 0.0) if w2 > 0 else np.zeros_like(x)
        free = np.where(right, -sign * _E * n2, 0.0)
        eps_side = np.full_like(x, self.eps_r)
        if self.counter_density_per_m3 is None:
            sheet_field, sheet_charge = _sheet(x, self.sheet_nm, e_peak)
            field = field + sheet_field
            total = np.where(right, free / self.eps_r, sheet_charge)
            free = np.where(x < 0, sheet_charge * self.eps_r, free)
        else:
            left = (x < 0) & (x > -w1)
            e_left = e_peak * self.eps_r / (self.counter_eps_r or self.eps_r)  # D continuous
            if w1 > 0:
                field = field + np.where(left, e_left * (x + w1) / w1, 0.0)
            free = free + np.where(left, sign * _E * self.counter_density_per_m3, 0.0)
            eps_side = np.where(x < 0, self.counter_eps_r or self.eps_r, self.eps_r)
            total = free / eps_side
            # Where the permittivity steps, the field steps by J = E(0+) − E(0−): a bound
            # sheet ε0·J at the interface, spread over ``sheet_nm`` so the total charge
            # integrates to zero and the field stays ε0-consistent (the drop is unchanged).
            jump = e_peak - e_left
            if jump != 0:
                half = self.sheet_nm / 2
                ramp = np.clip((x + half) / self.sheet_nm, 0.0, 1.0)
                field = field + jump * (ramp - (x >= 0))
                total = total + np.where(np.abs(x) < half, _EPS0 * jump / (self.sheet_nm * physics.NM_TO_M), 0.0)
        # Potential: V(x) = −∫E dx, zero far on the layer side (x → +∞).
        potential = _potential_from_field(x, field)
        return LayerProfile(x, field, total, free, potential)


@dataclass(frozen=True)
class GouyChapman:
    """A diffuse (Gouy–Chapman) layer of mobile ions at concentration n0 on the side x > 0.

    φ(x) = (2kT/e) ln[(1 + g e^{−x/λD}) / (1 − g e^{−x/λD})], g = tanh(eφ0/4kT),
    λD = sqrt(ε0 εr kT / (2 n0 e²)); the compensating charge sits in a slab of ``sheet_nm``
    on the other side.

    Parameters
    ----------
    ion_density_per_m3 : float
        Bulk concentration n0 of each ion species (1:1 electrolyte), in m⁻³.
    eps_r : float
    potential_drop_v : float
        Surface potential φ0 in V.
    temperature_k : float
    sheet_nm : float
    """

    ion_density_per_m3: float
    eps_r: float
    potential_drop_v: float
    temperature_k: float = 298.15
    sheet_nm: float = 1.0

    def __post_init__(self):
        _check(self, positive=("ion_density_per_m3", "eps_r", "temperature_k", "sheet_nm"),
               finite=("potential_drop_v",))

    @property
    def thermal_voltage_v(self) -> float:
        return physics.BOLTZMANN_J_K * self.temperature_k / _E

    @property
    def debye_length_nm(self) -> float:
        eps = _EPS0 * self.eps_r
        return math.sqrt(eps * self.thermal_voltage_v / (2 * self.ion_density_per_m3 * _E)) * physics.M_TO_NM

    @property
    def width_nm(self) -> float:
        """Three Debye lengths: where the field has fallen to about e⁻³ of its surface value."""
        return 3 * self.debye_length_nm

    def _g(self):
        return math.tanh(self.potential_drop_v / (4 * self.thermal_voltage_v))

    @property
    def peak_field_v_per_m(self) -> float:
        g, lam = self._g(), self.debye_length_nm * physics.NM_TO_M
        return 4 * self.thermal_voltage_v * g / (lam * (1 - g * g))

    @property
    def areal_charge_c_per_m2(self) -> float:
        """Free charge per area in the diffuse layer, C/m² (−ε0 εr E(0))."""
        return -_EPS0 * self.eps_r * self.peak_field_v_per_m

    def profile(self, x_nm) -> LayerProfile:
        x = np.asarray(x_nm, dtype=float)
        g, lam_nm = self._g(), self.debye_length_nm
        q = np.exp(-np.clip(x, 0, None) / lam_nm)
        kt = self.thermal_voltage_v
        diffuse_field = 4 * kt * g * q / (lam_nm * physics.NM_TO_M * (1 - (g * q) ** 2))
        right = x >= 0
        field = np.where(right, diffuse_field, 0.0)
        # dE/dx of the diffuse part: −E (1 + g²q²) / (λ (1 − g²q²)).
        d_field = -diffuse_field * (1 + (g * q) ** 2) / (lam_nm * physics.NM_TO_M * (1 - (g * q) ** 2))
        sheet_field, sheet_charge = _sheet(x, self.sheet_nm, self.peak_field_v_per_m)
        field = field + sheet_field
        total = np.where(right, _EPS0 * d_field, sheet_charge)
        free = total * self.eps_r
        return LayerProfile(x, field, total, free, _potential_from_field(x, field))


def layer_at_bias(layer, bias_v, *, built_in_v=None, share=1.0):
    """The layer under an applied bias: its potential drop is ``built_in_v + share·bias_v``.

    Parameters
    ----------
    layer : MottSchottky or GouyChapman
        The layer at zero bias.
    bias_v : float
        Applied bias in V.
    built_in_v : float, optional
        Potential drop across the layer at zero bias, in V; default the layer's own
        ``potential_drop_v``.
    share : float
        Fraction of the applied bias that drops across this layer (the rest drops
        elsewhere in the cell: the other electrode, the electrolyte bulk, contacts).

    Returns
    -------
    The same kind of layer with ``potential_drop_v = built_in_v + share·bias_v``.

    Examples
    --------
    >>> layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=0.1)
    >>> layer_at_bias(layer, 2.0, share=0.5).potential_drop_v
    1.1
    """
    built_in_v = layer.potential_drop_v if built_in_v is None else built_in_v
    values = {"bias_v": bias_v, "built_in_v": built_in_v, "share": share}
    for name, value in values.items():
        values[name] = _validate.finite(name, value)
    return dataclasses.replace(layer, potential_drop_v=values["built_in_v"] + values["share"] * values["bias_v"])


def _potential_from_field(x_nm, field):
    """V(x) = −∫E dx by the trapezoid rule on a fine grid, zero at the largest x."""
    order = np.argsort(x_nm)
    xs = x_nm[order] * physics.NM_TO_M
    fs = field[order]
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (fs[1:] + fs[:-1]) * np.diff(xs))])
    potential = -(cumulative - cumulative[-1])
    out = np.empty_like(potential)
    out[order] = potential
    return out
