"""Case 2c: a pixelated camera that cuts a thick specimen's plasmon halo unevenly, with a
4D beam-tilt series through the specimen.

What is simulated
-----------------
The specimen, probe and plasmon blur of ``make_thick.py`` (150 nm, t/λ = 1.28, a smooth
field of 1.96·10⁸ V/m peak along x, 200 kV, 2 mrad; the same multislice and the same
multiple-scattering kernel), recorded by a pixelated camera instead of segments. The
camera is finite and off-centre: it spans −3.14 to +5.65 mrad along kx and ±4.39 mrad
along ky around the optical axis (28 × 28 pixels of 0.3135 mrad, the simulated patterns
binned 4 × 4), so the blurred pattern's halo, which reaches 11 mrad, is cut, and more of
it on the −kx side than on the +kx side. The camera's axes are the scan's (no rotation, no
flip). 10⁹ electrons per probe, no noise, float32 counts.

Acquisitions written (validation/data/):
- ``thick_4d.h5``: dataset ``frames`` (ROWS, 32, 28, 28) with ``kv``, ``alpha_mrad``,
  ``mrad_per_px``, ``step_x_nm``, ``step_y_nm`` on the dataset;
- ``thick_4d_vacuum.h5``: the same scan through vacuum (a sharp disc);
- ``thick_4d_tilts_specimen.h5``: the 9 × 9 beam-tilt series of ``make_thick.py``
  (±0.31 mrad, whole simulated pixels) through a field-free region of the specimen, with
  the same blur and the same camera: ``frames`` (81, 28, 28), ``tilt_x_mrad``,
  ``tilt_y_mrad`` (81,), and ``kv``, ``alpha_mrad``, ``mrad_per_px`` at the root (the form
  ``dpcstem calibrate-response`` reads).

How the truth is defined: as for ``thick_segments.h5`` (validation/multislice.py; the
plasmon kernel is symmetric, so the whole pattern's centre of mass is the elastic one's,
the probe-weighted field); group ``truth``, shape (ROWS, 32). The camera's cut is what the
figures measure: on the whole pattern the centre of mass would read E_w.

Usage (in the validation environment): ``python validation/make_thick_4d.py`` writes the
files; ``--check ROWS`` recomputes and compares the truth (exit 1 beyond 1e-6).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_thick as mt  # noqa: E402
import multislice as ms  # noqa: E402

ROWS, BIN = 2, 4
CAMERA_PX = 28  # binned pixels each way
LEFT_PX, TOP_PX = 40, 56  # simulated pixels from the camera's first column / row to the optical axis


def camera(patterns, optical_axis_px):
    """The patterns (n, k, k) on the finite, off-centre camera: cropped, binned, ×dose, float32."""
    c = int(round(optical_axis_px))
    size = CAMERA_PX * BIN
    crop = patterns[:, c - TOP_PX:c - TOP_PX + size, c - LEFT_PX:c - LEFT_PX + size]
    n = crop.shape[0]
    binned = crop.reshape(n, CAMERA_PX, BIN, CAMERA_PX, BIN).sum(axis=(2, 4))
    return (binned * mt.DOSE).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="ROWS", help="scan rows to compare (every row is the simulated one)")
    args = parser.parse_args(argv)
    sim, unweighted = mt.simulate()
    rows = ROWS if args.check is None else len(args.check.split(","))
    tile = {k: np.tile(np.asarray(v), rows) for k, v in unweighted.items()}
    tiled = dict(sim)
    for key in ("field_x_w", "field_y_w", "charge_w", "potential_w"):
        tiled[key] = np.tile(sim[key], rows)
    truth = ms.truth_maps(tiled, tile, (rows, mt.SCAN))
    if args.check is not None:
        return ms.compare_rows(mt.OUT / "thick_4d.h5", truth, [int(r) for r in args.check.split(",")])
    scale = sim["mrad_per_px"] * BIN
    lo_x, hi_x = -LEFT_PX * sim["mrad_per_px"], (CAMERA_PX * BIN - LEFT_PX) * sim["mrad_per_px"]
    lo_y, hi_y = -TOP_PX * sim["mrad_per_px"], (CAMERA_PX * BIN - TOP_PX) * sim["mrad_per_px"]
    print(f"camera: {CAMERA_PX} x {CAMERA_PX} px of {scale:.4f} mrad, kx {lo_x:.2f} to {hi_x:.2f} mrad, "
          f"ky {lo_y:.2f} to {hi_y:.2f} mrad")
    blurred = mt.blur(sim["patterns"], sim["mrad_per_px"])
    kept = camera(blurred, sim["optical_axis_px"]).sum(axis=(1, 2)) / mt.DOSE
    print(f"the camera holds {kept.min():.3f}–{kept.max():.3f} of each blurred pattern")
    frames = np.tile(camera(blurred, sim["optical_axis_px"])[None], (ROWS, 1, 1, 1)).reshape(ROWS, mt.SCAN,
                                                                                              CAMERA_PX, CAMERA_PX)
    on_frames = {"kv": mt.KV, "alpha_mrad": mt.ALPHA, "mrad_per_px": scale, "step_x_nm": mt.STEP,
                 "step_y_nm": mt.STEP}
    truth_attrs = {"thickness_nm": mt.THICKNESS, "mip_v": mt.MIP, "amplitude_v": mt.V0, "period_nm": mt.CELL,
                   "detector_rotation_deg": 0.0, "flip": 0, "t_over_lambda": mt.THICKNESS / mt.MFP_NM,
                   "plasmon_ev": mt.PLASMON_EV, "camera_kx_mrad": (lo_x, hi_x), "camera_ky_mrad": (lo_y, hi_y)}
    ms.write_h5(mt.OUT / "thick_4d.h5", {"frames": frames}, {}, truth, truth_attrs,
                dataset_attrs={"frames": on_frames})
    vac = ms.vacuum_run(int(round(mt.CELL / mt.SAMPLING)), mt.SAMPLING, mt.N_SLICES, mt.THICKNESS / mt.N_SLICES,
                        mt.KV, mt.ALPHA, mt.SCAN, crop_mrad=mt.CROP)
    vframes = np.tile(camera(vac["patterns"], vac["optical_axis_px"])[None], (ROWS, 1, 1, 1))
    ms.write_h5(mt.OUT / "thick_4d_vacuum.h5", {"frames": vframes}, {}, {}, {}, dataset_attrs={"frames": on_frames})
    patterns, tx, ty, slab = mt.tilted_patterns(mt.MIP, True)
    ms.write_h5(mt.OUT / "thick_4d_tilts_specimen.h5",
                {"frames": camera(patterns, slab["optical_axis_px"]), "tilt_x_mrad": tx, "tilt_y_mrad": ty},
                {"kv": mt.KV, "alpha_mrad": mt.ALPHA, "mrad_per_px": scale}, {}, {})
    for p in sorted(mt.OUT.glob("thick_4d*.h5")):
        print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
