"""Case 2b: four segments through a thick specimen whose disc edge is blurred by plasmons,
with beam-tilt series recorded through the specimen and in vacuum.

What is simulated
-----------------
A specimen 150 nm thick (five 30 nm slices: the potential is smooth, so thick slices
propagate it faithfully) holding a smooth in-plane field: the potential is a mean inner
potential of 12 V plus V0·sin(2πx/L) with V0 = 1 V and L = 32 nm (the periodic cell), so
the field E_x = −(2πV0/L)·cos(2πx/L) reaches 1.96·10⁸ V/m (a deflection of 0.086 mrad,
0.043 α) and varies slowly across the probe: the segments' probe-size limit (see
``make_junction.py``) plays no part, and the figure is the response alone. 200 kV, 2 mrad
probe. The specimen is invariant along y, so one scan row (32 positions, 1 nm steps) is
simulated and every one of the ``ROWS`` scan rows is that row.

Inelastic scattering. In 150 nm of a material with an inelastic mean free path of
117 nm (LiCoO2 at 200 keV, DESIGN.md §3) most electrons lose energy to plasmons: t/λ =
1.28, so only e^{−1.28} = 28 % of them are unscattered. Plasmon scattering is incoherent
and its angular distribution, the Lorentzian dσ/dΩ ∝ 1/(θ² + θ_E²) up to a cut-off θ_c,
with θ_E = E_p/(pv) (E_p = 22 eV: 0.064 mrad) and θ_c = (2θ_E)^{1/2} (11.3 mrad, Egerton,
EELS in the Electron Microscope, 3rd ed., §3.3), is far wider than the deflections the
field gives: it blurs the bright-field disc's edge. It is modelled as the convolution of
the multislice (elastic) diffraction intensity with the multiple-scattering distribution
of Poisson statistics, K = Σ_n P_n(t/λ) L^{*n}, computed as K̂ = exp[(t/λ)(L̂ − 1)] on a
twice-padded grid (L the single-scattering Lorentzian, normalised, sampled at pixel
centres, its central pixel given the Lorentzian's integral over a disc of the pixel's
area; the grid's first row and column, which have no mirror partner, are dropped so
that K is exactly symmetric). This treats each inelastic event as adding its angle to the elastic one, which
holds where the potential is smooth (the field deflects scattered and unscattered
electrons alike); the energy loss (tens of eV in 200 keV) changes the deflection by
10⁻⁴ of itself and is neglected. A symmetric kernel leaves the centre of mass of the
whole pattern unchanged, so the probe-weighted truth is that of the elastic multislice.

Acquisitions written (validation/data/):
- ``thick_segments.h5``: dataset ``segments`` (4, ROWS, 32), the blurred patterns
  integrated over four DF4-like annular quadrants (1.1–6.6 mrad, recorded in the file),
  the detector rotated by ψ = 203.7° and flipped (recorded in the truth only), 10⁹
  electrons per probe, no noise; ``thick_segments_vacuum.h5``: the vacuum scan;
- ``thick_tilts_specimen.h5``: a beam-tilt series through a field-free region of the same
  specimen (150 nm of the 12 V mean inner potential, no field, the same
  plasmon blur): the pattern of the field-free slab moved by each tilt (a uniform slab
  is one constant phase, so a tilted probe's elastic pattern is the untilted one moved),
  on a 9 × 9 grid of whole pattern pixels, ±0.31 mrad (which covers the deflections of
  the scan), datasets ``segments`` (4, 81),
  ``tilt_x_mrad`` and ``tilt_y_mrad`` (81,), the scan frame;
- ``thick_tilts_vacuum.h5``: the same tilts in vacuum (a sharp disc).

How the truth is defined: validation/multislice.py (probe-weighted field, charge and
potential at each scan position, from the elastic multislice; the unweighted maps at the
probe position); group ``truth``, shape (ROWS, 32).

Usage (in the validation environment): ``python validation/make_thick.py`` writes the
files; ``--check ROWS`` recomputes (the one simulated row) and compares (exit 1 beyond 1e-6).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multislice as ms  # noqa: E402

OUT = Path(__file__).resolve().parent / "data"
KV, ALPHA, THICKNESS, N_SLICES = 200.0, 2.0, 150.0, 5
CELL, SAMPLING, SCAN, STEP, ROWS = 32.0, 0.1, 32, 1.0, 8
MIP, V0 = 12.0, 1.0
MFP_NM, PLASMON_EV = 117.0, 22.0
INNER, OUTER = 0.55 * ALPHA, 3.3 * ALPHA
ROTATION, FLIP, DOSE = 203.7, True, 1e9
CROP = 12.0  # mrad: all the multislice propagates (band limit 8.4 mrad) and the blur's reach
TILT_PX = np.arange(-4, 5)  # tilts in whole pattern pixels (0.0784 mrad): ±0.31 mrad


def plasmon_kernel(shape, mrad_per_px):
    """The multiple plasmon scattering distribution K (sums to 1), centred at [k//2, k//2]."""
    k = shape[0]
    theta_e = PLASMON_EV / ms.pv_over_e(KV) * 1e3  # mrad
    theta_c = math.sqrt(2 * theta_e * 1e-3) * 1e3
    c = np.arange(k) - k // 2
    r = np.hypot(*np.meshgrid(c * mrad_per_px, c * mrad_per_px, indexing="ij"))
    single = np.where(r <= theta_c, 1.0 / (r**2 + theta_e**2), 0.0) * mrad_per_px**2
    r_eq = mrad_per_px / math.sqrt(math.pi)  # a disc of the central pixel's area
    single[k // 2, k // 2] = math.pi * math.log((r_eq**2 + theta_e**2) / theta_e**2)
    single /= single.sum()
    spectrum = np.fft.fft2(np.fft.ifftshift(single))
    kernel = np.fft.fftshift(np.fft.ifft2(np.exp(THICKNESS / MFP_NM * (spectrum - 1.0))).real)
    kernel[0, :] = kernel[:, 0] = 0.0  # the row and column without a mirror partner: K stays symmetric
    return kernel / kernel.sum(), theta_e, theta_c


def blur(patterns, mrad_per_px):
    """Each pattern convolved with the plasmon distribution (zero-padded to twice its size)."""
    n, k, _ = patterns.shape
    pad = 2 * k
    kernel, _, _ = plasmon_kernel((pad, pad), mrad_per_px)
    kf = np.fft.fft2(np.fft.ifftshift(kernel))
    out = np.empty_like(patterns)
    lo = pad // 2 - k // 2
    for i, p in enumerate(patterns):
        big = np.zeros((pad, pad))
        big[lo:lo + k, lo:lo + k] = p
        out[i] = np.fft.ifft2(np.fft.fft2(big) * kf).real[lo:lo + k, lo:lo + k]
    return out


def segments_of(patterns, sim, shape):
    return ms.segment_stack(patterns, sim["mrad_per_px"], sim["optical_axis_px"], INNER, OUTER, ROTATION, FLIP,
                            DOSE, shape)


def tilted_patterns(mip_v, blurred):
    """The patterns (n, k, k) at the tilts through a field-free slab of ``mip_v`` (V), the tilts
    (mrad, scan frame) and the slab's multislice.

    Through a uniform slab the transmission is one constant phase, so the elastic pattern
    of a tilted probe is the untilted pattern moved by the tilt; the tilts are whole pixels
    of the simulated pattern, so that move is exact (a roll)."""
    n = int(round(CELL / SAMPLING))
    slab = np.full((N_SLICES, n, n), float(mip_v))
    sim = ms.run_multislice(slab, SAMPLING, THICKNESS / N_SLICES, KV, ALPHA, np.zeros((2, 2)), crop_mrad=CROP,
                            log=lambda *_: None)
    px = sim["mrad_per_px"]
    kx, ky = np.meshgrid(TILT_PX, TILT_PX, indexing="xy")
    kx, ky = kx.ravel(), ky.ravel()
    patterns = np.array([np.roll(sim["patterns"][0], (y, x), axis=(0, 1)) for x, y in zip(kx, ky)])
    axis = (np.arange(patterns.shape[-1]) - sim["optical_axis_px"]) * px
    total = patterns.sum(axis=(1, 2))
    com_x = (patterns.sum(axis=1) * axis).sum(axis=1) / total
    com_y = (patterns.sum(axis=2) * axis).sum(axis=1) / total
    error = float(np.max(np.hypot(com_x - kx * px, com_y - ky * px)))
    print(f"tilt series ({'through the specimen' if blurred else 'vacuum'}): the patterns' centre of mass "
          f"follows the tilts to {error:.2e} mrad")
    if error > 1e-4:
        raise SystemExit("the tilted patterns' centre of mass does not follow the tilt")
    if blurred:
        patterns = blur(patterns, px)
    return patterns, kx * px, ky * px, sim


def tilt_series(mip_v, blurred):
    """Segments (4, n) at the tilts through a field-free slab of ``mip_v`` (V), and the tilts
    (:func:`tilted_patterns`)."""
    patterns, tx, ty, sim = tilted_patterns(mip_v, blurred)
    return segments_of(patterns, sim, (1, len(tx)))[:, 0, :], tx, ty


def specimen():
    n = int(round(CELL / SAMPLING))
    x = np.arange(n) * SAMPLING
    v = MIP + V0 * np.sin(2 * np.pi * x / CELL)
    return np.repeat(np.broadcast_to(v, (n, n))[None], N_SLICES, axis=0)


def simulate():
    slices = specimen()
    positions = ms.scan_positions((1, SCAN), STEP)
    sim = ms.run_multislice(slices, SAMPLING, THICKNESS / N_SLICES, KV, ALPHA, positions, crop_mrad=CROP)
    maps = ms.sample_at((*ms.spectral_derivatives(slices[0], SAMPLING), slices[0]), positions, SAMPLING)
    unweighted = dict(zip(("field_x", "field_y", "charge_density", "potential"), maps))
    return sim, unweighted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="ROWS", help="scan rows to compare (every row is the simulated one)")
    args = parser.parse_args(argv)
    sim, unweighted = simulate()
    ms.require_com_identity(sim, KV, THICKNESS)
    rows = ROWS if args.check is None else len(args.check.split(","))
    tile = {k: np.tile(np.asarray(v), rows) for k, v in unweighted.items()}
    tiled = dict(sim)
    for key in ("field_x_w", "field_y_w", "charge_w", "potential_w"):
        tiled[key] = np.tile(sim[key], rows)
    truth = ms.truth_maps(tiled, tile, (rows, SCAN))
    if args.check is not None:
        return ms.compare_rows(OUT / "thick_segments.h5", truth, [int(r) for r in args.check.split(",")])
    blurred = blur(sim["patterns"], sim["mrad_per_px"])
    kernel, theta_e, theta_c = plasmon_kernel(sim["patterns"].shape[1:], sim["mrad_per_px"])
    axis = (np.arange(kernel.shape[1]) - kernel.shape[1] // 2) * sim["mrad_per_px"]
    moment = float(np.hypot((kernel.sum(axis=0) * axis).sum(), (kernel.sum(axis=1) * axis).sum()))
    r = np.hypot(*np.meshgrid(axis, axis))
    print(f"plasmon blur: t/λ = {THICKNESS / MFP_NM:.3f}, θ_E = {theta_e:.4f} mrad, θ_c = {theta_c:.2f} mrad; "
          f"{kernel[r <= ALPHA].sum():.3f} of it within α, {kernel[r <= OUTER].sum():.3f} within the segments' "
          f"outer angle; its centre of mass {moment:.1e} mrad (symmetric: the pattern's is kept)")
    OUT.mkdir(exist_ok=True)
    seg = np.tile(segments_of(blurred, sim, (1, SCAN)), (1, ROWS, 1))
    common = {"kv": KV, "alpha_mrad": ALPHA, "step_x_nm": STEP, "step_y_nm": STEP,
              "collection_inner_mrad": INNER, "collection_outer_mrad": OUTER}
    truth_attrs = {"thickness_nm": THICKNESS, "mip_v": MIP, "amplitude_v": V0, "period_nm": CELL,
                   "detector_rotation_deg": ROTATION,
                   "flip": int(FLIP), "t_over_lambda": THICKNESS / MFP_NM, "plasmon_ev": PLASMON_EV,
                   "theta_e_mrad": theta_e, "theta_c_mrad": theta_c}
    ms.write_h5(OUT / "thick_segments.h5", {"segments": seg}, common, truth, truth_attrs)
    vac = ms.vacuum_run(int(round(CELL / SAMPLING)), SAMPLING, N_SLICES, THICKNESS / N_SLICES, KV, ALPHA, SCAN,
                        crop_mrad=CROP)
    vseg = np.tile(segments_of(vac["patterns"], vac, (1, SCAN)), (1, ROWS, 1))
    ms.write_h5(OUT / "thick_segments_vacuum.h5", {"segments": vseg}, common, {}, {})
    for name, mip, blurred_series in (("thick_tilts_specimen.h5", MIP, True),
                                      ("thick_tilts_vacuum.h5", 0.0, False)):
        segments, tx, ty = tilt_series(mip, blurred_series)
        ms.write_h5(OUT / name, {"segments": segments.astype(np.float32), "tilt_x_mrad": tx, "tilt_y_mrad": ty},
                    {"kv": KV, "alpha_mrad": ALPHA, "collection_inner_mrad": INNER, "collection_outer_mrad": OUTER},
                    {}, {"detector_rotation_deg": ROTATION, "flip": int(FLIP)})
    for p in sorted(OUT.glob("thick_*.h5")):
        print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
