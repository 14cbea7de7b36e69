"""``dpcstem thickness``: specimen thickness from a low-loss EELS spectrum or spectrum image."""

from __future__ import annotations

import warnings
from pathlib import Path

from ._common import add_output_options, check_output


def add_parser(subparsers):
    p = subparsers.add_parser(
        "thickness", help="specimen thickness in nm from low-loss EELS (log-ratio, Malis or Iakoubovskii λ)",
        description="Relative thickness t/λ = ln(I_t/I_0) of a low-loss spectrum or spectrum image, the inelastic "
                    "mean free path λ (Malis et al. 1988 from --composition or --mean-energy-loss; Iakoubovskii "
                    "et al. 2008 from --density) and the thickness t in nm. For a spectrum image, -o writes the "
                    "thickness map (HDF5 dataset 'thickness' in nm) that 'dpcstem reconstruct --thickness-map' reads.")
    p.add_argument("spectrum", type=Path, metavar="SPECTRUM",
                   help="low-loss spectrum or spectrum image: a file RosettaSciIO reads (DM3/DM4, Velox .emd, "
                        "EMSA .msa, a HyperSpy or exspy EELSSpectrum saved as .hspy) or a .npy array with the energy axis "
                        "last (needs --energy-axis)")
    p.add_argument("--kv", type=float, metavar="KV",
                   help="accelerating voltage (incident energy E0) in kV; default: what the file records")
    p.add_argument("--beta", type=float, metavar="MRAD",
                   help="spectrometer collection semi-angle β in mrad; default: what the file records")
    g = p.add_argument_group("specimen, for the mean free path (give exactly one)")
    g.add_argument("--composition", metavar="FORMULA",
                   help="chemical formula, e.g. LiCoO2 (Malis formula, E_m = 7.6·Z_eff^0.36 eV)")
    g.add_argument("--mean-energy-loss", type=float, metavar="EV", help="mean energy loss E_m in eV (Malis formula)")
    g.add_argument("--density", type=float, metavar="G_CM3", help="mass density in g/cm³ (Iakoubovskii formula)")
    g.add_argument("--alpha", type=float, metavar="MRAD",
                   help="convergence semi-angle α in mrad, used with --density (default: what the file records, "
                        "else 0)")
    s = p.add_argument_group("spectrum")
    s.add_argument("--energy-axis", type=float, nargs=2, metavar=("OFFSET_EV", "STEP_EV"),
                   help="energy loss of channel 0 and channel width, in eV (needed for .npy; replaces the file's)")
    s.add_argument("--energy-max", type=float, metavar="EV",
                   help="highest energy loss in eV counted in I_t, below any core-loss edge (default: the "
                        "spectrum's end)")
    add_output_options(p, required=False,
                       help="thickness map to write for a spectrum image (HDF5 .h5: dataset 'thickness' in nm)")
    p.set_defaults(run=run)


def run(args):
    import numpy as np

    from ..eels import log_ratio, mean_free_path, parse_formula
    from ..errors import CalibrationError, InputDataError
    from ..io import read_spectrum, write_result

    given = [opt for opt, value in (("--composition", args.composition), ("--mean-energy-loss",
                                    args.mean_energy_loss), ("--density", args.density)) if value is not None]
    if len(given) != 1:
        raise CalibrationError(
            "give exactly one of --composition FORMULA, --mean-energy-loss EV or --density G_CM3 for the mean "
            f"free path, got {' and '.join(given) if given else 'none'}")
    if args.alpha is not None and args.density is None:
        raise CalibrationError("--alpha is used by the Iakoubovskii formula (--density) only; the Malis formula "
                               "takes the collection angle --beta alone")
    if args.composition is not None:
        parse_formula(args.composition)
    output = None
    if args.output is not None:
        output = check_output(args.output, args.overwrite, args=args, what="thickness map")

    spectrum = read_spectrum(args.spectrum, energy_axis=args.energy_axis, lazy=True)
    kv = _value(args.kv, spectrum.kv, "--kv", "the beam energy", spectrum.source)
    beta = _value(args.beta, spectrum.beta_mrad, "--beta", "the collection semi-angle", spectrum.source)
    alpha = None
    if args.density is not None:
        alpha = args.alpha if args.alpha is not None else (spectrum.alpha_mrad or 0.0)
    nav = spectrum.navigation_shape
    if output is not None and not nav:
        raise InputDataError(f"{args.spectrum}: -o writes a thickness map, but this is a single spectrum; "
                             "leave out -o to print its thickness")
    if output is not None and len(nav) > 2:
        raise InputDataError(f"{args.spectrum}: a thickness map is 2-D, but the spectrum image has navigation "
                             f"shape {nav}")

    mfp = mean_free_path(kv=kv, beta_mrad=beta, composition=args.composition,
                         mean_energy_loss_ev=args.mean_energy_loss, density_g_cm3=args.density, alpha_mrad=alpha)
    ratio = log_ratio(spectrum, energy_max_ev=args.energy_max)
    lam = mfp.mean_free_path_nm
    t_over_lambda = np.asarray(ratio.t_over_lambda, dtype=float)
    thickness_nm = t_over_lambda * lam

    e_end = spectrum.energy_offset_ev + (spectrum.n_energy - 1) * spectrum.energy_step_ev
    what = "spectrum" if not nav else f"{' x '.join(map(str, nav))} spectrum image"
    lines = [f"{args.spectrum}: {what}, {spectrum.n_energy} channels, {spectrum.energy_offset_ev:g} to {e_end:g} eV"]
    if not nav:
        lines += [f"t/λ = {float(t_over_lambda):.4f}",
                  mfp.describe(),
                  f"t = {float(thickness_nm):.1f} nm",
                  f"zero-loss window {ratio.zlp_window_ev[0]:.2f} to {ratio.zlp_window_ev[1]:.2f} eV "
                  f"(peak at {ratio.zlp_position_ev:.2f} eV, FWHM {ratio.zlp_fwhm_ev:.2f} eV); total window "
                  f"{ratio.total_window_ev[0]:.2f} to {ratio.total_window_ev[1]:.2f} eV"]
    else:
        valid = np.isfinite(t_over_lambda)
        n_valid = int(valid.sum())
        if n_valid == 0:
            raise InputDataError(f"{args.spectrum}: no pixel has a zero-loss peak within ±5 eV of 0 eV with positive "
                                 "counts; check the energy axis (--energy-axis OFFSET_EV STEP_EV)")
        tl, t = t_over_lambda[valid], thickness_nm[valid]
        windows = ratio.zlp_window_ev[valid]
        lines += [f"t/λ = {tl.mean():.4f} ± {tl.std():.4f} (mean ± std over {n_valid} pixels)",
                  mfp.describe(),
                  f"t = {t.mean():.1f} ± {t.std():.1f} nm (mean ± std; min {t.min():.1f}, max {t.max():.1f})",
                  f"zero-loss window {np.median(windows[:, 0]):.2f} to {np.median(windows[:, 1]):.2f} eV (median "
                  f"edges); total window to {float(np.nanmax(ratio.total_window_ev[..., 1])):.2f} eV"]
        if n_valid < valid.size:
            lines.append(f"{valid.size - n_valid} of {valid.size} pixels gave no thickness (NaN in the map)")
        if (t <= 0).any():
            lines.append(f"{int((t <= 0).sum())} pixels have t <= 0 nm (vacuum): a thickness map given to "
                         "reconstruct must be positive everywhere")
    if output is not None:
        maps2d = {
            "thickness": (thickness_nm, "nm"),
            "t_over_lambda": (t_over_lambda, "1"),
            "zero_loss_counts": (ratio.zero_loss_counts, "counts"),
            "total_counts": (ratio.total_counts, "counts"),
            "zlp_window_low_ev": (ratio.zlp_window_ev[..., 0], "eV"),
            "zlp_window_high_ev": (ratio.zlp_window_ev[..., 1], "eV"),
            "zlp_position_ev": (ratio.zlp_position_ev, "eV"),
            "zlp_fwhm_ev": (ratio.zlp_fwhm_ev, "eV"),
            "valid": (np.isfinite(t_over_lambda), ""),
        }
        shape2d = nav if len(nav) == 2 else (1, nav[0])
        maps = {name: (np.asarray(array).reshape(shape2d), unit) for name, (array, unit) in maps2d.items()}
        attrs = {
            "method": "log-ratio",
            "kv": float(kv),
            "beta_mrad": float(beta),
            "alpha_mrad": alpha,
            "mean_free_path_nm": lam,
            "mean_free_path_formula": mfp.formula,
            "composition": args.composition,
            "z_eff": mfp.z_eff,
            "mean_energy_loss_ev": mfp.mean_energy_loss_ev,
            "density_g_cm3": mfp.density_g_cm3,
            "energy_offset_ev": spectrum.energy_offset_ev,
            "energy_step_ev": spectrum.energy_step_ev,
            "total_window_high_ev": float(np.nanmax(ratio.total_window_ev[..., 1])),
        }
        write_result(output, maps, attrs, inputs=[args.spectrum], overwrite=args.overwrite)
        lines.append(f"wrote the thickness map (nm), {shape2d[0]} x {shape2d[1]}, to {output}")
    print("\n".join(lines))
    return 0


def _value(given, recorded, option, what, source):
    """The user's value, else the file's; a differing file value is overridden with a warning."""
    from ..errors import CalibrationError

    if given is not None:
        if recorded is not None and abs(recorded - given) > 1e-6 * max(abs(given), 1.0):
            warnings.warn(f"{source}: the file records {what} {recorded:g}, using the given {option} {given:g}",
                          stacklevel=2)
        return given
    if recorded is None:
        raise CalibrationError(f"{option} is needed: {source or 'the spectrum'} does not record {what}")
    return recorded
