"""The result of a reconstruction: maps with their units, the calibration, and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .calibration import Calibration
from .units import unit_of

#: The maps of a four-segment result, in file order.
PRIMARY_MAPS = ("deflection_x", "deflection_y", "field_x", "field_y", "charge_density",
                "free_charge_density", "potential")


@dataclass
class DPCResult:
    """Maps reconstructed from one acquisition, all of shape (ny, nx), in the scan frame.

    Attributes
    ----------
    deflection_x, deflection_y : ndarray, float32
        Beam deflection θ in mrad, scan frame (x along columns, y along rows).
    valid : ndarray, bool
        True where every quantity could be computed; invalid pixels hold NaN.
    calibration : Calibration
    field_x, field_y : ndarray or None
        Projected in-plane field E⊥ = −(pv/e)·θ/t in V/m (None without a thickness).
    charge_density : ndarray or None
        Total charge density ρ = ε0 ∇·E in C/m³.
    free_charge_density : ndarray or None
        ε0 εr ∇·E in C/m³ when εr was given.
    potential : ndarray or None
        Thickness-averaged electrostatic potential in V, zero at its reference region.
    extra : dict
        Further maps, name → (array, unit): uncertainties, centre of mass, intensity.
    attrs : dict
        Processing provenance (response model, descan, rotation, …) for the result file.
    """

    deflection_x: np.ndarray
    deflection_y: np.ndarray
    valid: np.ndarray
    calibration: Calibration
    field_x: np.ndarray | None = None
    field_y: np.ndarray | None = None
    charge_density: np.ndarray | None = None
    free_charge_density: np.ndarray | None = None
    potential: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    @property
    def shape(self):
        return self.deflection_x.shape

    @property
    def n_invalid(self) -> int:
        return int(self.valid.size - np.count_nonzero(self.valid))

    def maps(self) -> dict:
        """Every map that goes to a result file: name → (array, unit)."""
        out = {}
        for name in PRIMARY_MAPS:
            value = getattr(self, name)
            if value is not None:
                out[name] = (value, unit_of(name))
        out["valid"] = (self.valid.astype(np.uint8), "1")
        out.update(self.extra)
        return out
