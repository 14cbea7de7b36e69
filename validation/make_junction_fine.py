"""Case 1, fine step: the p-n junction of make_junction.py scanned at 0.2 nm for the iDPC potential.

What is simulated
-----------------
The specimen, probe and multislice of ``make_junction.py`` (50 nm, 200 kV, α = 2 mrad, the
p-n heterojunction with its 0.5 nm mean-inner-potential steps, periodic 32 nm cell at
0.1 nm), scanned 4 rows × 160 columns at 0.2 nm over the whole cell. The field is 1-D along
x, so a few rows suffice; the 0.2 nm step samples a signal that the ~0.6 nm probe limits
(its Nyquist step is λ/(4α) = 0.31 nm), where the 1 nm step of ``junction_4d.h5``
undersamples the field of the MIP steps (the truth's own E_w sampled at 1 nm and integrated
reads 2.2 % above the potential drop, at 0.2 nm 0.004 %). The step is a multiple of the
0.1 nm grid, so the unweighted truth is exact at each probe position.

Acquisitions written (validation/data/):
- ``junction_4d_fine.h5``: dataset ``frames`` (4, 160, 108, 108) uint32, the patterns
  binned 2 × 2 (0.157 mrad per pixel, disc radius 12.8 px) on a camera of ±8.5 mrad,
  10⁹ electrons per probe (no shot noise), no descan. The camera is twice as fine as
  ``junction_4d.h5``'s: with its 0.31 mrad pixels the same patterns integrate to a drop
  0.54 % high (with the vacuum reference), with 0.157 mrad pixels 0.03 %.
- ``junction_4d_fine_vacuum.h5``: the same scan through vacuum (every frame the same).

How the truth is defined: validation/multislice.py; group ``truth``, shape (4, 160), [y, x].

Usage (in the validation environment): ``python validation/make_junction_fine.py`` writes
the files; ``--check ROWS`` recomputes those scan rows and compares them with the committed
file (exit 1 beyond 1e-6).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_junction as mj  # noqa: E402
import multislice as ms  # noqa: E402

SCAN, STEP, BIN = (4, 160), 0.2, 2


def main(argv=None):
    rows, checking = ms.rows_to_simulate(__doc__, argv, SCAN[0])
    slices, w = mj.specimen()
    positions = ms.scan_positions(SCAN, STEP)
    positions = positions[np.isin(np.arange(SCAN[0] * SCAN[1]) // SCAN[1], rows)]
    sim = ms.run_multislice(slices, mj.SAMPLING, mj.THICKNESS / mj.N_SLICES, mj.KV, mj.ALPHA, positions,
                            crop_mrad=mj.CROP_4D + 0.5)
    # Unweighted truth: the slice maps at the probe position (every slice is the same; the positions are grid points).
    maps = ms.sample_at((*ms.spectral_derivatives(slices[0], mj.SAMPLING), slices[0]), positions, mj.SAMPLING)
    truth = ms.truth_maps(sim, dict(zip(("field_x", "field_y", "charge_density", "potential"), maps)),
                          (len(rows), SCAN[1]))
    ms.require_com_identity(sim, mj.KV, mj.THICKNESS)
    out = mj.OUT / "junction_4d_fine.h5"
    if checking:
        return ms.compare_rows(out, truth, rows)
    truth_attrs = {"thickness_nm": mj.THICKNESS, "depletion_half_width_nm": w, "junction_x_nm": mj.CELL / 2,
                   "built_in_potential_v": mj.V_BI, "mip_step_v": mj.MIP_N - mj.MIP_P, "doping_per_m3": mj.DOPING,
                   "eps_r": mj.EPS_R, "detector_rotation_deg": 0.0, "flip": 0}
    frames, mrad_px = mj.frames_4d(sim["patterns"], sim["mrad_per_px"], positions, descan=False, binning=BIN)
    attrs4 = {"kv": mj.KV, "step_x_nm": STEP, "step_y_nm": STEP, "mrad_per_px": mrad_px}
    ms.write_h5(out, {"frames": frames.reshape(*SCAN, *frames.shape[1:])},
                {"alpha_mrad": mj.ALPHA, "thickness_nm": mj.THICKNESS}, truth, truth_attrs,
                dataset_attrs={"frames": attrs4})
    vac = ms.vacuum_run(int(round(mj.CELL / mj.SAMPLING)), mj.SAMPLING, mj.N_SLICES, mj.THICKNESS / mj.N_SLICES,
                        mj.KV, mj.ALPHA, len(positions), crop_mrad=mj.CROP_4D + 0.5)
    vframes, _ = mj.frames_4d(vac["patterns"], vac["mrad_per_px"], positions, descan=False, binning=BIN)
    ms.write_h5(mj.OUT / "junction_4d_fine_vacuum.h5", {"frames": vframes.reshape(*SCAN, *vframes.shape[1:])},
                {"alpha_mrad": mj.ALPHA}, {}, {}, dataset_attrs={"frames": attrs4})
    for p in (out, mj.OUT / "junction_4d_fine_vacuum.h5"):
        print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
