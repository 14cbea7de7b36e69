"""Case 4: a charged sphere seen by a rotated, flipped four-segment detector.

What is simulated
-----------------
A 50 nm thick slab (five 10 nm slices) holding, at its mid-depth and at the centre of a
periodic 32 nm cell, a sphere of radius 5 nm with a uniform charge Q = +2.78·10⁻¹⁸ C (17 e)
(field 10⁹ V/m at its surface), screened by an equal and opposite charge on a concentric
shell of radius 12 nm, so that the field vanishes beyond the shell and the potential fits
the periodic cell. The 3-D potential is averaged over the depth of each slice
(40 points per slice). 200 kV, a 2 mrad probe, scanned 32 × 32 at 1 nm.

Acquisition written (validation/data/): ``sphere_segments.h5``, dataset ``segments``
(4, 32, 32): the diffraction patterns integrated over four annular quadrants between
1.1 and 6.6 mrad (0.55α–3.3α, DF4-like) of a detector whose segment A sits at azimuth
ψ = 203.7° from scan +x toward +y and whose y axis is mirrored (flip: B at ψ−90°). The
file records kv, α, the scan step, the thickness and the collection angles, but not the
rotation or the flip: those are what the case tests (``--fit-rotation``, and the 180°
branch, which the positive charge settles). ``sphere_segments_vacuum.h5``: the same
detector in vacuum.

How the truth is defined: validation/multislice.py; stored in the group ``truth``, with
``truth`` attributes ``detector_rotation_deg`` and ``flip``.

Usage (in the validation environment): ``python validation/make_sphere.py``;
``--check ROWS`` recomputes those scan rows and compares them with the committed file.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multislice as ms  # noqa: E402

OUT = Path(__file__).resolve().parent / "data"
KV, ALPHA, THICKNESS, N_SLICES = 200.0, 2.0, 50.0, 5
CELL, SAMPLING, SCAN, STEP = 32.0, 0.1, 32, 1.0
RADIUS, SHELL, SURFACE_FIELD = 5.0, 12.0, 1e9
ROTATION, FLIP = 203.7, True
INNER, OUTER, DOSE = 0.55 * ALPHA, 3.3 * ALPHA, 4e6
Z_POINTS = 40


def charge_c():
    return 4 * math.pi * ms.EPS0 * (RADIUS * 1e-9) ** 2 * SURFACE_FIELD


def potential_3d(r_nm):
    """Potential (V) of the screened sphere at distance r (nm) from its centre."""
    k = charge_c() / (4 * math.pi * ms.EPS0) * 1e9  # V·nm
    inside = k * ((3 * RADIUS**2 - r_nm**2) / (2 * RADIUS**3) - 1 / SHELL)
    between = k * (1 / np.maximum(r_nm, 1e-12) - 1 / SHELL)
    return np.where(r_nm < RADIUS, inside, np.where(r_nm < SHELL, between, 0.0))


def specimen():
    n = int(round(CELL / SAMPLING))
    c = np.arange(n) * SAMPLING - CELL / 2
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    dz = THICKNESS / N_SLICES
    slices = np.zeros((N_SLICES, n, n))
    for i in range(N_SLICES):
        z = i * dz + (np.arange(Z_POINTS) + 0.5) * dz / Z_POINTS - THICKNESS / 2
        for zz in z:
            slices[i] += potential_3d(np.sqrt(r2 + zz**2)) / Z_POINTS
    return slices


def simulate(rows):
    slices = specimen()
    positions = ms.scan_positions((SCAN, SCAN), STEP)
    keep = np.isin(np.arange(SCAN * SCAN) // SCAN, rows)
    sim = ms.run_multislice(slices, SAMPLING, THICKNESS / N_SLICES, KV, ALPHA, positions[keep], crop_mrad=7.0)
    mean = slices.mean(axis=0)
    maps = ms.sample_at((*ms.spectral_derivatives(mean, SAMPLING), mean), positions[keep], SAMPLING)
    unweighted = dict(zip(("field_x", "field_y", "charge_density", "potential"), maps))
    return sim, unweighted, positions[keep]


def main(argv=None):
    rows, checking = ms.rows_to_simulate(__doc__, argv, SCAN)
    sim, unweighted, positions = simulate(rows)
    truth = ms.truth_maps(sim, unweighted, (len(rows), SCAN))
    ms.require_com_identity(sim, KV, THICKNESS)
    if checking:
        return ms.compare_rows(OUT / "sphere_segments.h5", truth, rows)
    OUT.mkdir(exist_ok=True)
    attrs = {"kv": KV, "alpha_mrad": ALPHA, "step_x_nm": STEP, "step_y_nm": STEP, "thickness_nm": THICKNESS,
             "collection_inner_mrad": INNER, "collection_outer_mrad": OUTER}
    truth_attrs = {"thickness_nm": THICKNESS, "detector_rotation_deg": ROTATION, "flip": int(FLIP),
                   "charge_c": charge_c(), "radius_nm": RADIUS, "shell_radius_nm": SHELL,
                   "centre_xy_nm": np.array([CELL / 2, CELL / 2])}
    geometry = (INNER, OUTER, ROTATION, FLIP, DOSE, (SCAN, SCAN))
    seg = ms.segment_stack(sim["patterns"], sim["mrad_per_px"], sim["optical_axis_px"], *geometry)
    ms.write_h5(OUT / "sphere_segments.h5", {"segments": seg}, attrs, truth, truth_attrs)
    vac = ms.vacuum_run(int(round(CELL / SAMPLING)), SAMPLING, N_SLICES, THICKNESS / N_SLICES, KV, ALPHA,
                        SCAN * SCAN, crop_mrad=7.0)
    vseg = ms.segment_stack(vac["patterns"], vac["mrad_per_px"], vac["optical_axis_px"], *geometry)
    ms.write_h5(OUT / "sphere_segments_vacuum.h5", {"segments": vseg}, attrs, {}, {})
    for p in sorted(OUT.glob("sphere_*.h5")):
        print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
