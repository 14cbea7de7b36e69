"""Truth maps on the scan grid: a layer placed at any position and orientation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import physics


@dataclass
class Truth:
    """The known answer of a synthetic acquisition, on the scan grid (ny, nx), scan frame.

    Field in V/m, charge densities in C/m³, potential in V (thickness-averaged, zero far on
    the layer side), deflection in mrad; scalar figures of the layer in ``figures``.

    Attributes
    ----------
    field_x, field_y : ndarray, float64, (ny, nx)
        The space-charge field in V/m (not the mean-inner-potential step), scan frame.
    charge_density, free_charge_density : ndarray, float64, (ny, nx)
        Total (ε0 ∇·E) and free charge density in C/m³.
    potential : ndarray, float64, (ny, nx)
        Potential of the space-charge layer in V, zero far on the layer side.
    distance_nm : ndarray, float64, (ny, nx)
        Signed distance of each pixel from the interface along its normal, nm.
    figures : dict
        Scalar figures: ``width_nm``, ``peak_field_v_per_m``, ``areal_charge_c_per_m2``,
        ``potential_drop_v``, ``normal_deg`` and, for a simulated acquisition, ``bias_v``
        and ``drift_px`` (y, x).
    deflection_x, deflection_y : ndarray, float64, (ny, nx), optional
        For a simulated acquisition: the deflection in mrad that the specimen (layer and
        mean-inner-potential step) gives, weighted by the probe intensity where the probe
        is on; no descan.
    thickness_nm : ndarray, float64, (ny, nx), optional
        Specimen thickness in nm at each pixel.
    mean_inner_potential : ndarray, float64, (ny, nx), optional
        Mean inner potential of the material at each pixel, V.
    """

    field_x: np.ndarray
    field_y: np.ndarray
    charge_density: np.ndarray
    free_charge_density: np.ndarray
    potential: np.ndarray
    distance_nm: np.ndarray
    figures: dict = field(default_factory=dict)
    deflection_x: np.ndarray | None = None
    deflection_y: np.ndarray | None = None
    thickness_nm: np.ndarray | None = None
    mean_inner_potential: np.ndarray | None = None


def scan_coordinates(shape, step_nm):
    """x, y positions (nm) of the pixel centres of a scan of ``shape`` (ny, nx)."""
    step_x, step_y = (step_nm, step_nm) if np.ndim(step_nm) == 0 else step_nm
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    return x * step_x, y * step_y


def interface_distance(shape, step_nm, *, point_nm=None, normal_deg=0.0):
    """Signed distance (nm) of each pixel from a straight interface.

    The interface passes through ``point_nm`` = (x, y) (default: the scan centre) with its
    normal at ``normal_deg`` from scan +x toward +y; distance grows along the normal.
    """
    x, y = scan_coordinates(shape, step_nm)
    if point_nm is None:
        point_nm = (x.max() / 2, y.max() / 2)
    n = math.radians(normal_deg)
    return (x - point_nm[0]) * math.cos(n) + (y - point_nm[1]) * math.sin(n)


def layer_truth(layer, shape, step_nm, *, point_nm=None, normal_deg=0.0, oversample=64) -> Truth:
    """Field, charge and potential maps of a layer whose normal points at ``normal_deg``.

    The profile is evaluated on a grid ``oversample`` times finer than the scan step and
    interpolated, so the potential (an integral of the field) is accurate.
    """
    x, y = scan_coordinates(shape, step_nm)
    if point_nm is None:
        point_nm = (x.max() / 2, y.max() / 2)
    return layer_truth_at(layer, x, y, point_nm=point_nm, normal_deg=normal_deg,
                          resolution_nm=float(np.min(step_nm)) / oversample)


def layer_truth_at(layer, x_nm, y_nm, *, point_nm, normal_deg=0.0, resolution_nm, extent_nm=None) -> Truth:
    """A layer's truth evaluated at any positions (a drifted scan, a finer grid).

    Parameters
    ----------
    layer : MottSchottky or GouyChapman
    x_nm, y_nm : ndarray
        Positions in nm, scan frame, any shape.
    point_nm : (float, float)
        A point (x, y) of the interface, nm.
    normal_deg : float
        Direction of the interface normal, degrees from scan +x toward +y; the layer side
        lies along the normal.
    resolution_nm : float
        Spacing of the fine profile that is interpolated, nm.
    extent_nm : (float, float), optional
        Range of distances (nm) the fine profile covers; the potential is zero at its far
        end. Default: the positions' range plus a little. Give the same range to every
        frame of a series so their potentials share one zero.

    Returns
    -------
    Truth
        Maps of the shape of ``x_nm``.
    """
    n = math.radians(normal_deg)
    d = (np.asarray(x_nm, float) - point_nm[0]) * math.cos(n) + (np.asarray(y_nm, float) - point_nm[1]) * math.sin(n)
    step = resolution_nm
    lo, hi = (float(d.min()), float(d.max())) if extent_nm is None else extent_nm
    lo, hi = min(lo, float(d.min())), max(hi, float(d.max()))
    fine = np.arange(lo - step * 64, hi + step * 128, step)
    profile = layer.profile(fine)
    on_grid = {name: np.interp(d, fine, getattr(profile, name))
               for name in ("field_v_per_m", "charge_c_per_m3", "free_charge_c_per_m3", "potential_v")}
    figures = {"width_nm": layer.width_nm, "peak_field_v_per_m": layer.peak_field_v_per_m,
               "areal_charge_c_per_m2": layer.areal_charge_c_per_m2,
               "potential_drop_v": layer.potential_drop_v, "normal_deg": normal_deg}
    return Truth(
        field_x=on_grid["field_v_per_m"] * math.cos(n),
        field_y=on_grid["field_v_per_m"] * math.sin(n),
        charge_density=on_grid["charge_c_per_m3"],
        free_charge_density=on_grid["free_charge_c_per_m3"],
        potential=on_grid["potential_v"],
        distance_nm=d,
        figures=figures,
    )


@dataclass(frozen=True)
class UniformField:
    """A uniform in-plane field (V/m, scan frame) over the whole specimen, for calibration checks.

    Usable wherever a layer is: the field does not depend on the bias and holds no charge.
    """

    field_x_v_per_m: float
    field_y_v_per_m: float = 0.0

    def truth_at(self, x_nm, y_nm, *, point_nm) -> Truth:
        """Maps at positions (nm): the field, zero charge, potential −E·(r − point) in V."""
        zeros = np.zeros(np.shape(x_nm))
        ex, ey = float(self.field_x_v_per_m), float(self.field_y_v_per_m)
        potential = -(ex * (np.asarray(x_nm) - point_nm[0]) + ey * (np.asarray(y_nm) - point_nm[1])) * physics.NM_TO_M
        return Truth(field_x=zeros + ex, field_y=zeros + ey, charge_density=zeros, free_charge_density=zeros,
                     potential=potential, distance_nm=zeros, figures={"field_x_v_per_m": ex, "field_y_v_per_m": ey})


def uniform_field_truth(shape, field_v_per_m) -> Truth:
    """A uniform field (Ex, Ey) in V/m over the whole scan."""
    ex, ey = field_v_per_m
    zeros = np.zeros(shape)
    return Truth(field_x=zeros + ex, field_y=zeros + ey, charge_density=zeros, free_charge_density=zeros,
                 potential=zeros, distance_nm=zeros, figures={})


def deflection_from_truth(truth: Truth, kv, thickness_nm):
    """Deflection (θx, θy) in mrad that the truth's field gives through ``thickness_nm``."""
    return (physics.deflection_mrad_from_field(truth.field_x, kv, thickness_nm),
            physics.deflection_mrad_from_field(truth.field_y, kv, thickness_nm))
