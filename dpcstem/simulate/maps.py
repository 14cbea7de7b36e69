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
    d = interface_distance(shape, step_nm, point_nm=point_nm, normal_deg=normal_deg)
    step = float(np.min(step_nm))
    fine = np.arange(d.min() - step, d.max() + 2 * step, step / oversample)
    profile = layer.profile(fine)
    on_grid = {name: np.interp(d, fine, getattr(profile, name))
               for name in ("field_v_per_m", "charge_c_per_m3", "free_charge_c_per_m3", "potential_v")}
    n = math.radians(normal_deg)
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
