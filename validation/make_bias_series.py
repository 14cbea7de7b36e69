"""Case 3: a bias series across a Mott–Schottky layer with a mean-inner-potential step.

What is simulated
-----------------
A 50 nm thick specimen (five 10 nm slices) in a periodic 32 nm cell, 200 kV, a 2 mrad
probe, scanned 32 rows × 128 columns at 0.2 nm from (y, x) = (6.2, 6.0) nm; a DF4-like
four-segment detector (annular quadrants between 1.1 and 6.6 mrad, segment A on scan +x).
Along x: a contact at x = 4 nm (the potential steps by ΔV over a tanh of 0.7 nm
half-width), a metal-like layer from 4 to 12 nm whose mean inner potential is 14 V against
12 V (tanh steps of 0.5 nm), and at x = 12 nm a Mott–Schottky space-charge layer in the
semiconductor, V = ΔV(1 − u/w)² for 0 < u < w (u = x − 12 nm), w = sqrt(2ε_rε0ΔV/(eN)),
N = 2·10²⁵ m⁻³, ε_r = 10, ΔV = 0.5 V + bias: w = 5.3 nm at 0 V and 9.2 nm at 1 V.

Two specimens: *plain* (no more than that) and *structured*: in addition an amorphous-like
potential of fine grain (correlation 0.15 nm, rms 2 V, a new draw in every slice) in
patches a few nm wide (the same at every bias), which scatters outside the detector and
gives the sum image contrast that does not change with bias. Drift: the 1 V acquisition
sees the specimen moved by (0.6, 1.7) nm (y, x) against the 0 V one, (3, 8.5) px.

Why this scan. The signal of a probe of semiconvergence α is band-limited to 2α/λ, so it
needs a step of λ/(4α) = 0.31 nm or less. At a 1 nm step (an earlier version of these
files) the drifted maps could not be interpolated back onto the undrifted scan: with the
exact drift given the net field read 699 % (structured) and 154 % (plain) off in the layer,
so registration could not be judged. At 0.2 nm the exact drift reproduces the undrifted
scan. The strip starts at x = 6 nm, beyond the contact, whose contrast in the sum changes
with bias (ΔV drops there), and at y = 6.2 nm, where the patches lie beside the layer
rather than on it; 32 rows leave registration's smoothing (2 px) room inside the scan after
a 3-row drift.

Acquisitions written (validation/data/), each an HDF5 file with dataset ``segments``
(4, 32, 128) and attributes ``bias_v``, kv, α, scan step, thickness, collection angles:
- ``bias_structured_drift_0V.h5``, ``bias_structured_drift_1V.h5``: drift, structure;
- ``bias_plain_0V.h5``, ``bias_plain_1V.h5``: no drift, a featureless sum;
- ``bias_plain_drift_1V.h5``: drift, no structure (with ``bias_plain_0V.h5``).

How the truth is defined: validation/multislice.py. Each file's group ``truth`` holds its
own maps (its own scan frame); a 1 V file also holds ``net_field_x_weighted``,
``net_field_y_weighted`` and ``net_charge_density_weighted``: the probe-weighted maps of
the 1 V specimen scanned without drift minus those of the 0 V one, i.e. the net field in
the reference (0 V) scan frame, which is what registration should recover.

Usage (in the validation environment): ``python validation/make_bias_series.py``;
``--check ROWS`` recomputes those scan rows and compares them with the committed files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multislice as ms  # noqa: E402

OUT = Path(__file__).resolve().parent / "data"
KV, ALPHA, THICKNESS, N_SLICES = 200.0, 2.0, 50.0, 5
CELL, SAMPLING, SCAN, STEP, SCAN_OFFSET_YX = 32.0, 0.1, (32, 128), 0.2, (6.2, 6.0)
DOPING, EPS_R, V_BI = 2e25, 10.0, 0.5
CONTACT_X, INTERFACE_X, CONTACT_WIDTH, MIP_WIDTH = 4.0, 12.0, 0.7, 0.5
MIP_SC, MIP_METAL = 12.0, 14.0
GRAIN_NM, GRAIN_RMS_V, PATCH_NM, SEED = 0.15, 2.0, 3.0, 20261129
DRIFT_YX_NM = (0.6, 1.7)
BIASES = (0.0, 1.0)
INNER, OUTER, DOSE = 0.55 * ALPHA, 3.3 * ALPHA, 4e6


def width_nm(bias):
    return np.sqrt(2 * EPS_R * ms.EPS0 * (V_BI + bias) / (ms.E_CHARGE * DOPING)) * 1e9


def profile(x, bias):
    """Electrostatic plus mean inner potential (V) along x (nm), periodic in CELL."""
    dv, w = V_BI + bias, width_nm(bias)
    u = x - INTERFACE_X
    layer = np.where(u < 0, dv, np.where(u < w, dv * (1 - np.clip(u, 0, w) / w) ** 2, 0.0))
    contact = 0.5 * (1 + np.tanh((x - CONTACT_X) / CONTACT_WIDTH))  # 0 in the bulk before the contact
    electrostatic = np.where(x < INTERFACE_X, dv * contact, layer)
    metal = 0.5 * (np.tanh((x - CONTACT_X) / MIP_WIDTH) - np.tanh((x - INTERFACE_X) / MIP_WIDTH))
    return electrostatic + MIP_SC + (MIP_METAL - MIP_SC) * metal


def gaussian_field(rng, n, corr_nm):
    k = np.fft.fftfreq(n, SAMPLING)
    filt = np.exp(-2 * (np.pi * corr_nm) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    g = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * filt).real
    return g / g.std()


def specimen(bias, structured):
    n = int(round(CELL / SAMPLING))
    x = np.arange(n) * SAMPLING
    base = np.broadcast_to(profile(x, bias), (n, n))
    slices = np.repeat(base[None], N_SLICES, axis=0).copy()
    if structured:
        rng = np.random.default_rng(SEED)
        patches = 0.5 * (1 + np.tanh(gaussian_field(rng, n, PATCH_NM) / 0.5))
        for i in range(N_SLICES):
            slices[i] += GRAIN_RMS_V * patches * gaussian_field(rng, n, GRAIN_NM)
    return slices


def run(bias, structured, drift, rows):
    slices = specimen(bias, structured)
    positions = ms.scan_positions(SCAN, STEP, SCAN_OFFSET_YX)
    keep = np.isin(np.arange(SCAN[0] * SCAN[1]) // SCAN[1], rows)
    positions = positions[keep] - np.asarray(drift)  # the specimen moved by +drift in the scan frame
    sim = ms.run_multislice(slices, SAMPLING, THICKNESS / N_SLICES, KV, ALPHA, positions, crop_mrad=7.0)
    mean = slices.mean(axis=0)
    maps = ms.sample_at((*ms.spectral_derivatives(mean, SAMPLING), mean), positions, SAMPLING)
    return sim, dict(zip(("field_x", "field_y", "charge_density", "potential"), maps))


def net_truth(sim1, sim0, shape):
    return {"net_field_x_weighted": ((sim1["field_x_w"] - sim0["field_x_w"]).reshape(shape), "V/m"),
            "net_field_y_weighted": ((sim1["field_y_w"] - sim0["field_y_w"]).reshape(shape), "V/m"),
            "net_charge_density_weighted": ((sim1["charge_w"] - sim0["charge_w"]).reshape(shape), "C/m^3")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="ROWS", help="comma-separated scan rows to recompute and compare")
    args = parser.parse_args(argv)
    rows = list(range(SCAN[0])) if args.check is None else [int(r) for r in args.check.split(",")]
    shape = (len(rows), SCAN[1])
    still = (0.0, 0.0)
    runs = {}
    for name, bias, structured, drift in (("structured_0V", 0.0, True, still),
                                          ("structured_drift_1V", 1.0, True, DRIFT_YX_NM),
                                          ("structured_still_1V", 1.0, True, still),
                                          ("plain_0V", 0.0, False, still),
                                          ("plain_1V", 1.0, False, still),
                                          ("plain_drift_1V", 1.0, False, DRIFT_YX_NM)):
        print(f"{name}:")
        runs[name] = run(bias, structured, drift, rows)
        identity = ms.check_com_identity(runs[name][0], KV, THICKNESS)
        print(f"  centre-of-mass identity: {identity:.2e} of the peak weighted field")
        if identity > ms.COM_IDENTITY_TOL:
            raise SystemExit(f"the multislice breaks the centre-of-mass identity ({identity:.2e})")
    files = {  # file → (run, bias, drift, run giving the net-field truth against its reference)
        "bias_structured_drift_0V.h5": ("structured_0V", 0.0, still, None),
        "bias_structured_drift_1V.h5": ("structured_drift_1V", 1.0, DRIFT_YX_NM,
                                        ("structured_still_1V", "structured_0V")),
        "bias_plain_0V.h5": ("plain_0V", 0.0, still, None),
        "bias_plain_1V.h5": ("plain_1V", 1.0, still, ("plain_1V", "plain_0V")),
        "bias_plain_drift_1V.h5": ("plain_drift_1V", 1.0, DRIFT_YX_NM, ("plain_1V", "plain_0V")),
    }
    status = 0
    for filename, (key, bias, drift, net) in files.items():
        sim, unweighted = runs[key]
        truth = ms.truth_maps(sim, unweighted, shape)
        if net is not None:
            truth.update(net_truth(runs[net[0]][0], runs[net[1]][0], shape))
        if args.check is not None:
            status |= ms.compare_rows(OUT / filename, truth, rows)
            continue
        OUT.mkdir(exist_ok=True)
        attrs = {"kv": KV, "alpha_mrad": ALPHA, "step_x_nm": STEP, "step_y_nm": STEP, "thickness_nm": THICKNESS,
                 "collection_inner_mrad": INNER, "collection_outer_mrad": OUTER, "bias_v": bias}
        truth_attrs = {"thickness_nm": THICKNESS, "bias_v": bias, "drift_yx_nm": np.array(drift),
                       "layer_width_nm": width_nm(bias), "interface_x_nm": INTERFACE_X,
                       "contact_x_nm": CONTACT_X, "scan_origin_yx_nm": np.array(SCAN_OFFSET_YX),
                       "built_in_potential_v": V_BI, "doping_per_m3": DOPING, "eps_r": EPS_R,
                       "detector_rotation_deg": 0.0, "flip": 0}
        geometry = (INNER, OUTER, 0.0, False, DOSE, SCAN)
        seg = ms.segment_stack(sim["patterns"], sim["mrad_per_px"], sim["optical_axis_px"], *geometry)
        ms.write_h5(OUT / filename, {"segments": seg}, attrs, truth, truth_attrs)
        path = OUT / filename
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return status


if __name__ == "__main__":
    sys.exit(main())
