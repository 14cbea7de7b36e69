"""Case 1: a p-n heterojunction with a mean-inner-potential step, pixelated and segmented.

What is simulated
-----------------
A 50 nm thick specimen (five 10 nm slices, the same potential in each) holding an abrupt
p-n junction between two materials whose mean inner potentials differ, at 200 kV with a
2 mrad probe (no aberrations), scanned 32 × 32 at 1 nm over the whole periodic 32 nm cell
(0.1 nm sampling). Along x: the p side (x < 16 nm) and the n side meet at x = 16 nm and,
through the periodic boundary, again at x = 0. Each junction is a symmetric depletion
layer (N_A = N_D = 2·10²⁵ m⁻³, ε_r = 11.7, built-in potential 0.9 V: half-width 5.4 nm,
peak field 1.67·10⁸ V/m, parabolic potential), and the mean inner potential steps from
12 V (p) to 13 V (n) over a tanh of 0.5 nm half-width at each junction.

Acquisitions written (validation/data/):
- ``junction_4d.h5``: dataset ``frames`` (32, 32, 54, 54) uint32, the diffraction patterns
  binned 4 × 4 (0.3135 mrad per pixel) on a camera of ±8.5 mrad, which holds all the
  multislice propagates (its band limit is 8.4 mrad), 10⁹ electrons per probe (uint32
  counts, no shot noise), with a
  linear descan (the patterns move by up to 0.2 mrad across the scan), and
  ``junction_4d_vacuum.h5``: the same scan through vacuum, with the same descan;
- ``junction_segments.h5``: dataset ``segments`` (4, 32, 32), the patterns (no descan)
  integrated over four annular quadrants between 0.55α and 3.3α (a DF4-like detector:
  1.1–6.6 mrad), segment A centred on scan +x, and ``junction_segments_vacuum.h5``.
  The file records kv, α and the scan step, but not the collection angles (as a file
  from an instrument often does not).

Known limit of the 4D reference: its 0.31 mrad camera pixels (disc radius 6.4 px) move the
centre of mass of the binned patterns by 1–3·10⁶ V/m (about 2 % of the peak junction field,
0.2 % of the peak field at the MIP steps) from that of the unbinned patterns, whoever
computes it; the truth is that of the unbinned patterns.

How the truth is defined: validation/multislice.py (probe-weighted field, charge and
potential at each scan position, and the unweighted maps at the probe position); the
truth is stored in each file's group ``truth``, shape (32, 32), [y, x].

Usage (in the validation environment): ``python validation/make_junction.py`` writes the
files; ``--check ROWS`` recomputes those scan rows and compares them with the committed
files (exit 1 beyond 1e-6).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multislice as ms  # noqa: E402

OUT = Path(__file__).resolve().parent / "data"
KV, ALPHA, THICKNESS, N_SLICES = 200.0, 2.0, 50.0, 5
CELL, SAMPLING, SCAN, STEP = 32.0, 0.1, 32, 1.0
DOPING, EPS_R, V_BI = 2e25, 11.7, 0.9
MIP_P, MIP_N, MIP_WIDTH = 12.0, 13.0, 0.5
CROP_4D, BIN, DOSE = 8.5, 4, 1e9  # the camera holds the whole band-limited pattern (8.4 mrad)
INNER, OUTER = 0.55 * ALPHA, 3.3 * ALPHA
DESCAN_MRAD_PER_NM = (0.004, -0.003)  # (x, y) pattern shift in mrad per nm of scan x, of scan y


def junction_potential(x):
    """Electrostatic potential (V) along x (nm) in the periodic cell: two depletion layers
    (p→n at CELL/2, n→p at 0) and the mean-inner-potential steps."""
    w = np.sqrt(2 * EPS_R * ms.EPS0 * V_BI / (ms.E_CHARGE * DOPING) * 0.5) * 1e9  # half-width, nm

    def rise(u):  # p→n junction, u the distance (nm) into the n side
        return np.where(u <= -w, 0.0, np.where(u <= 0, 0.5 * V_BI * (1 + u / w) ** 2,
                        np.where(u <= w, V_BI - 0.5 * V_BI * (1 - u / w) ** 2, V_BI)))

    v = rise(x - CELL / 2) + rise(-x) + rise(CELL - x) - V_BI
    mip = MIP_P + (MIP_N - MIP_P) * 0.5 * (np.tanh((x - CELL / 2) / MIP_WIDTH) - np.tanh((x - CELL) / MIP_WIDTH)
                                         - np.tanh(x / MIP_WIDTH) + 1.0)
    return v, mip, w


def specimen():
    n = int(round(CELL / SAMPLING))
    x = np.arange(n) * SAMPLING
    v, mip, w = junction_potential(x)
    total = np.broadcast_to(v + mip, (n, n))
    return np.repeat(total[None], N_SLICES, axis=0), w


def shift_bilinear(frame, dy, dx):
    """Move a pattern by (dy, dx) pixels with bilinear weights (keeps the centre of mass exact)."""
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    out = np.zeros_like(frame)
    for sy, wy in ((iy, 1 - fy), (iy + 1, fy)):
        for sx, wx in ((ix, 1 - fx), (ix + 1, fx)):
            out += wy * wx * np.roll(np.roll(frame, sy, axis=0), sx, axis=1)
    return out


def descan_px(positions, mrad_per_px):
    y, x = positions[:, 0], positions[:, 1]
    dx = (DESCAN_MRAD_PER_NM[0] * x + DESCAN_MRAD_PER_NM[0] * 0.3 * y) / mrad_per_px
    dy = (DESCAN_MRAD_PER_NM[1] * y + DESCAN_MRAD_PER_NM[1] * 0.5 * x) / mrad_per_px
    return dy, dx


def frames_4d(patterns, mrad_per_px, positions, descan, binning=BIN):
    """Crop to ±CROP_4D, shift by the descan, bin ``binning`` × ``binning``, count."""
    k = patterns.shape[-1]
    half = int(round(CROP_4D / mrad_per_px / binning)) * binning
    c = k // 2
    dy, dx = descan_px(positions, mrad_per_px) if descan else (np.zeros(len(patterns)),) * 2
    out = np.empty((len(patterns), 2 * half // binning, 2 * half // binning))
    for i, p in enumerate(patterns):
        p = shift_bilinear(p, dy[i], dx[i])[c - half:c + half, c - half:c + half]
        out[i] = p.reshape(2 * half // binning, binning, 2 * half // binning, binning).sum(axis=(1, 3))
    return np.round(out * DOSE).astype(np.uint32), mrad_per_px * binning


def simulate(rows):
    slices, w = specimen()
    positions = ms.scan_positions((SCAN, SCAN), STEP)
    keep = np.isin(np.arange(SCAN * SCAN) // SCAN, rows)
    sim = ms.run_multislice(slices, SAMPLING, THICKNESS / N_SLICES, KV, ALPHA, positions[keep],
                            crop_mrad=CROP_4D + 0.5)
    # Unweighted truth: the slice maps at the probe position (every slice is the same).
    maps = ms.sample_at((*ms.spectral_derivatives(slices[0], SAMPLING), slices[0]), positions[keep], SAMPLING)
    unweighted = dict(zip(("field_x", "field_y", "charge_density", "potential"), maps))
    return sim, unweighted, positions[keep], w


def main(argv=None):
    rows, checking = ms.rows_to_simulate(__doc__, argv, SCAN)
    sim, unweighted, positions, w = simulate(rows)
    truth = ms.truth_maps(sim, unweighted, (len(rows), SCAN))
    ms.require_com_identity(sim, KV, THICKNESS)
    if checking:
        return ms.compare_rows(OUT / "junction_4d.h5", truth, rows)
    OUT.mkdir(exist_ok=True)
    centre = sim["optical_axis_px"]
    common = {"kv": KV, "alpha_mrad": ALPHA, "step_x_nm": STEP, "step_y_nm": STEP}
    truth_attrs = {"thickness_nm": THICKNESS, "depletion_half_width_nm": w, "junction_x_nm": CELL / 2,
                   "built_in_potential_v": V_BI, "mip_step_v": MIP_N - MIP_P, "doping_per_m3": DOPING,
                   "eps_r": EPS_R, "collection_inner_mrad": INNER, "collection_outer_mrad": OUTER,
                   "detector_rotation_deg": 0.0, "flip": 0,
                   "descan_mrad_per_nm": np.array(DESCAN_MRAD_PER_NM)}
    frames, mrad_px = frames_4d(sim["patterns"], sim["mrad_per_px"], positions, descan=True)
    attrs4 = {"kv": KV, "step_x_nm": STEP, "step_y_nm": STEP, "mrad_per_px": mrad_px}
    ms.write_h5(OUT / "junction_4d.h5", {"frames": frames.reshape(SCAN, SCAN, *frames.shape[1:])},
                {"alpha_mrad": ALPHA, "thickness_nm": THICKNESS}, truth, truth_attrs, dataset_attrs={"frames": attrs4})
    vac = ms.vacuum_run(int(round(CELL / SAMPLING)), SAMPLING, N_SLICES, THICKNESS / N_SLICES, KV, ALPHA,
                        len(positions), crop_mrad=CROP_4D + 0.5)
    vframes, _ = frames_4d(vac["patterns"], vac["mrad_per_px"], positions, descan=True)
    ms.write_h5(OUT / "junction_4d_vacuum.h5", {"frames": vframes.reshape(SCAN, SCAN, *vframes.shape[1:])},
                {"alpha_mrad": ALPHA}, {}, {}, dataset_attrs={"frames": attrs4})
    geometry = (INNER, OUTER, 0.0, False, DOSE, (SCAN, SCAN))
    seg = ms.segment_stack(sim["patterns"], sim["mrad_per_px"], centre, *geometry)
    ms.write_h5(OUT / "junction_segments.h5", {"segments": seg}, common, truth, truth_attrs)
    vseg = ms.segment_stack(vac["patterns"], vac["mrad_per_px"], centre, *geometry)
    ms.write_h5(OUT / "junction_segments_vacuum.h5", {"segments": vseg}, common, {}, {})
    for p in sorted(OUT.glob("junction_*.h5")):
        print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
