"""``dpcstem simulate``: synthetic four-segment acquisitions with their answer, as files.

``dpcstem simulate layer --out DIR`` writes one acquisition; ``dpcstem simulate
bias-series --out DIR`` writes one acquisition per bias. Each acquisition is an HDF5 file
with the dataset ``segments`` (4, ny, nx) uint16 (A, B, C, D) and the root attributes
:func:`dpcstem.io.read_segments` reads (``kv``, ``alpha_mrad``, ``step_x_nm``,
``step_y_nm``, ``thickness_nm``, ``collection_inner_mrad``, ``collection_outer_mrad``,
``detector_rotation_deg``, ``flip``, ``bias_v``), so ``dpcstem reconstruct`` and
``dpcstem bias-series`` take them as they are. Beside them: ``vacuum.h5`` (a vacuum
reference scan, same layout), ``thickness.h5`` (dataset ``thickness`` in nm, for
``--thickness-map``, written when the thickness is not uniform) and ``truth.h5``, the
answer (see :func:`dpcstem.simulate.files.write_truth`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .. import physics
from ..errors import InputDataError, OutputExistsError
from . import OneLineParser

LAYER_KINDS = ("mott-schottky", "gouy-chapman", "none")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "simulate", help="synthetic four-segment acquisitions with their answer (layer, bias series)",
        description="Simulate four-segment DPC acquisitions of a space-charge layer as an instrument makes them "
                    "(probe, descan, drift, gains, offsets, counting noise, uint16), with the truth beside them.")
    sub = p.add_subparsers(title="what to simulate", metavar="KIND", required=True, parser_class=OneLineParser)
    layer = sub.add_parser("layer", help="one acquisition of a layer at one bias",
                           description="One acquisition: DIR/segments.h5, DIR/vacuum.h5, DIR/truth.h5 "
                                       "(and DIR/thickness.h5 when the thickness is not uniform).")
    layer.add_argument("--bias", type=float, default=0.0, metavar="V", help="applied bias in V (default 0)")
    layer.add_argument("--drift", type=float, nargs=2, default=(0.0, 0.0), metavar=("DY", "DX"),
                       help="scan drift of this frame in pixels, rows then columns (default 0 0)")
    _add_common(layer)
    layer.set_defaults(run=run, series=False)
    series = sub.add_parser("bias-series", help="one acquisition per bias, the reference first, drifting",
                            description="An in-situ bias series: DIR/bias_<V>V.h5 per bias (scanned in the order "
                                        "given, the reference bias first), DIR/vacuum.h5, DIR/truth.h5 (and "
                                        "DIR/thickness.h5 when the thickness is not uniform).")
    series.add_argument("--bias", type=float, nargs="+", default=[0.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2],
                        metavar="V", help="applied biases in V (default 0 1.0 1.2 1.4 1.6 1.8 2.0 2.2)")
    series.add_argument("--reference-bias", type=float, default=0.0, metavar="V",
                        help="the reference bias in V, scanned first (default 0)")
    series.add_argument("--drift", type=float, nargs=2, default=(0.0, 0.0), metavar=("DY", "DX"),
                        help="scan drift added with every frame, in pixels, rows then columns (default 0 0)")
    _add_common(series)
    series.set_defaults(run=run, series=True)


def _add_common(p):
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the files (made if absent)")
    p.add_argument("--overwrite", action="store_true", help="replace files of the same names in DIR")
    p.add_argument("--seed", type=int, default=0, help="random seed of the counting noise (default 0)")
    g = p.add_argument_group("instrument")
    g.add_argument("--kv", type=float, default=200.0, metavar="KV", help="accelerating voltage in kV (default 200)")
    g.add_argument("--alpha", type=float, default=1.0, metavar="MRAD",
                   help="convergence semi-angle α in mrad (default 1)")
    g.add_argument("--step", type=float, nargs="+", default=[1.0], metavar="NM",
                   help="scan step in nm along x, then along y when it differs (default 1)")
    g.add_argument("--shape", type=int, nargs=2, default=(128, 256), metavar=("NY", "NX"),
                   help="scan shape, rows then columns (default 128 256)")
    g.add_argument("--collection", type=float, nargs=2, metavar=("INNER", "OUTER"),
                   help="detector inner and outer collection semi-angles in mrad (default: no hole, no outer edge)")
    g.add_argument("--detector-rotation", type=float, default=0.0, metavar="DEG",
                   help="azimuth ψ of segment A in degrees, from scan +x toward +y (default 0)")
    g.add_argument("--flip", action="store_true", help="the detector's y axis is mirrored against the scan")
    g.add_argument("--dose", type=float, default=4e4, metavar="E",
                   help="electrons per probe position in the bright-field disc (default 40000)")
    g.add_argument("--no-noise", action="store_true", help="expected counts instead of Poisson counts")
    g.add_argument("--gains", type=float, nargs=4, metavar="G", help="segment gains A B C D (default 1 1 1 1)")
    g.add_argument("--offsets", type=float, nargs=4, metavar="COUNTS",
                   help="segment dark offsets A B C D in counts (default 0 0 0 0)")
    g.add_argument("--descan", type=float, nargs=2, default=(0.0, 0.0), metavar=("X", "Y"),
                   help="descan deflection at the scan centre, θx and θy in mrad (default 0 0)")
    g.add_argument("--descan-ramp", type=float, nargs=4, default=(0.0, 0.0, 0.0, 0.0), metavar="MRAD",
                   help="descan change from edge to edge of the scan: θx along x, θx along y, θy along x, "
                        "θy along y, in mrad (default 0 0 0 0)")
    g.add_argument("--descan-quadratic", type=float, nargs=6, default=(0.0,) * 6, metavar="MRAD",
                   help="quadratic descan, θx then θy, each the coefficients of u², u·w, w² with u, w the "
                        "fractional scan position from −½ to ½, in mrad (default 0)")
    g.add_argument("--edge-blur", type=float, default=0.0, metavar="ALPHA",
                   help="blur of the bright-field disc edge, Gaussian standard deviation in units of α (default 0)")
    g.add_argument("--no-probe", action="store_true",
                   help="deflection at the probe centre instead of weighted by the Airy probe intensity")
    g.add_argument("--oversample", type=int, default=1, metavar="N",
                   help="positions per scan step at which the deflection is evaluated under the probe (default 1)")
    g.add_argument("--no-vacuum", action="store_true", help="do not write the vacuum reference scan")
    s = p.add_argument_group("specimen")
    s.add_argument("--layer", choices=LAYER_KINDS, default="mott-schottky",
                   help="space-charge layer model (default mott-schottky)")
    s.add_argument("--density", type=float, default=5e25, metavar="PER_M3",
                   help="dopant/vacancy density N (Mott–Schottky) or ion density n0 (Gouy–Chapman) in m^-3 "
                        "(default 5e25)")
    s.add_argument("--eps-r", type=float, default=12.0, metavar="X",
                   help="relative permittivity of the layer side (default 12)")
    s.add_argument("--counter-density", type=float, metavar="PER_M3",
                   help="density on the other side in m^-3: a two-sided Mott–Schottky layer")
    s.add_argument("--counter-eps-r", type=float, metavar="X", help="relative permittivity of the other side")
    s.add_argument("--sheet", type=float, default=1.0, metavar="NM",
                   help="thickness of the counter-charge slab of a one-sided layer in nm (default 1)")
    s.add_argument("--temperature", type=float, default=298.15, metavar="K",
                   help="temperature of a Gouy–Chapman layer in K (default 298.15)")
    s.add_argument("--built-in", type=float, default=0.0, metavar="V",
                   help="potential drop across the layer at zero bias, in V (default 0)")
    s.add_argument("--share", type=float, default=1.0, metavar="X",
                   help="fraction of the applied bias that drops across the layer (default 1)")
    s.add_argument("--interface-normal", type=float, default=0.0, metavar="DEG",
                   help="direction of the interface normal toward the layer side, degrees from scan +x toward +y "
                        "(default 0)")
    s.add_argument("--interface-at", type=float, nargs=2, metavar=("X", "Y"),
                   help="a point of the interface in nm from the first pixel (default: the scan centre)")
    s.add_argument("--thickness", type=float, nargs="+", default=[131.0], metavar="NM",
                   help="specimen thickness in nm, or two: before and after the interface (default 131)")
    s.add_argument("--wedge", type=float, nargs=2, metavar=("SLOPE", "DEG"),
                   help="a thickness wedge instead: thickness change per length (nm/nm) and its direction in degrees")
    s.add_argument("--mip", type=float, nargs=2, metavar=("BEFORE", "AFTER"),
                   help="mean inner potentials in V before and after the interface (default: no step)")
    s.add_argument("--interface-width", type=float, default=1.0, metavar="NM",
                   help="width of the mean-inner-potential and thickness steps in nm (default 1)")
    s.add_argument("--scattering-mfp", type=float, metavar="NM",
                   help="mean free path in nm for scattering outside the bright-field disc: the disc keeps "
                        "exp(−t/MFP) of the dose, so the segment sum shows the thickness (default: none lost)")


def _specimen(args):
    from ..simulate import (
        GouyChapman,
        MeanInnerPotential,
        MottSchottky,
        StepThickness,
        WedgeThickness,
    )

    if args.layer == "mott-schottky":
        layer = MottSchottky(density_per_m3=args.density, eps_r=args.eps_r, potential_drop_v=args.built_in,
                             counter_density_per_m3=args.counter_density, counter_eps_r=args.counter_eps_r,
                             sheet_nm=args.sheet)
    elif args.layer == "gouy-chapman":
        if args.counter_density is not None:
            raise InputDataError("--counter-density makes a two-sided Mott–Schottky layer; "
                                 "it does not apply to --layer gouy-chapman")
        layer = GouyChapman(ion_density_per_m3=args.density, eps_r=args.eps_r, potential_drop_v=args.built_in,
                            temperature_k=args.temperature, sheet_nm=args.sheet)
    else:
        layer = None
    if len(args.thickness) > 2:
        raise InputDataError(f"--thickness takes one value or two (before, after) in nm, got {len(args.thickness)}")
    if args.wedge is not None:
        if len(args.thickness) != 1:
            raise InputDataError("--wedge takes one --thickness (the thickness at the interface), not two")
        thickness = WedgeThickness(args.thickness[0], args.wedge[0], direction_deg=args.wedge[1])
    elif len(args.thickness) == 2:
        thickness = StepThickness(*args.thickness, width_nm=args.interface_width)
    else:
        thickness = args.thickness[0]
    mip = None if args.mip is None else MeanInnerPotential(*args.mip, width_nm=args.interface_width)
    return layer, thickness, mip


def _calibration(args):
    from ..calibration import Calibration
    from ..errors import CalibrationError

    if len(args.step) > 2:
        raise CalibrationError(f"--step takes one or two values (x then y) in nm, got {len(args.step)}")
    inner, outer = args.collection if args.collection is not None else (0.0, None)
    return Calibration(kv=args.kv, alpha_mrad=args.alpha, step_x_nm=args.step[0], step_y_nm=args.step[-1],
                       collection_inner_mrad=inner, collection_outer_mrad=outer,
                       detector_rotation_deg=args.detector_rotation, flip=args.flip,
                       sources={"kv": "simulation", "alpha_mrad": "simulation", "step_x_nm": "simulation"})


def _outputs(args, names):
    """Check every output before any work: the folder can be made, nothing is replaced unasked."""
    from ..io.output import check_destination, output_folder

    out = Path(args.out)
    if os.path.lexists(out) and not out.is_dir():
        raise OutputExistsError(f"{out}: --out must be a folder, and this is a file")
    paths = [out / name for name in names]
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing and not args.overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]}: output exists{more}; give --overwrite to replace")
    output_folder(out)
    for path in paths:
        check_destination(path, overwrite=args.overwrite)
    return paths


def run(args):
    import numpy as np

    from ..simulate import Descan, simulate_bias_series
    from ..simulate.files import bias_file_name, write_series

    calibration = _calibration(args)
    layer, thickness, mip = _specimen(args)
    if any(n < 1 for n in args.shape):
        raise InputDataError(f"--shape must be two positive numbers of pixels (rows, columns), got {list(args.shape)}")
    biases = list(args.bias) if args.series else [args.bias]
    reference = args.reference_bias if args.series else args.bias
    names = sorted({bias_file_name(b) for b in [reference, *biases]}) if args.series else ["segments.h5"]
    if args.series and len(names) != len({reference, *biases}):
        raise InputDataError("--bias values must differ by at least 1 mV (they name the files)")
    extra = ["truth.h5"] + ([] if args.no_vacuum else ["vacuum.h5"])
    thickness_map = len(args.thickness) == 2 or args.wedge is not None
    _outputs(args, names + extra + (["thickness.h5"] if thickness_map else []))
    quadratic = np.reshape(args.descan_quadratic, (2, 3))
    descan = Descan(offset_mrad=tuple(args.descan), linear_mrad=np.reshape(args.descan_ramp, (2, 2)).tolist(),
                    quadratic_mrad=quadratic.tolist())
    drift = args.drift if args.series else [args.drift]
    series = simulate_bias_series(
        layer, calibration, tuple(args.shape), biases, reference_bias_v=reference, drift_px=drift,
        vacuum=not args.no_vacuum, rng=args.seed, share=args.share, point_nm=args.interface_at,
        normal_deg=args.interface_normal, mip=mip, thickness=thickness, scattering_mfp_nm=args.scattering_mfp,
        probe=not args.no_probe,
        oversample=args.oversample, descan=descan, edge_blur=args.edge_blur, gains=args.gains, offsets=args.offsets,
        dose=args.dose, noise=not args.no_noise)
    out = Path(args.out)
    files = write_series(series, out, overwrite=args.overwrite, single=not args.series, seed=args.seed)
    print(summary(series, files))
    return 0


def summary(series, files) -> str:
    """The figures of each frame (the layer model's, and the peak field a detector measures) and where the files went.

    The layer model's peak field is the field at the interface; a probe of finite size
    measures it weighted by the probe's intensity (the truth's deflection, converted back),
    which is lower at a kinked peak: that column is what ``dpcstem bias-series`` should read.
    The areal charge is the layer's free charge, εr·ε0·E at the interface; the net σ that
    ``bias-series`` reports is the total charge, ε0·ΔE (the polarisation included).
    """
    kv = series.calibration.kv
    lines = [f"{'bias (V)':>9} {'drop (V)':>9} {'width (nm)':>11} {'peak field (V/m)':>17} {'as measured (V/m)':>18} "
             f"{'free areal charge (C/m^2)':>26}"]
    for acquisition in series.acquisitions:
        truth = acquisition.truth
        fig = {k: v + 0.0 for k, v in truth.figures.items() if isinstance(v, float)}  # no "-0"
        measured = math.nan
        if truth.deflection_x is not None:
            theta = np.hypot(truth.deflection_x, truth.deflection_y)
            thickness = truth.thickness_nm if truth.thickness_nm is not None else series.calibration.thickness_nm
            measured = float(np.max(np.abs(physics.field_v_per_m_from_deflection(theta, kv, thickness))))
        lines.append(f"{acquisition.bias_v:9.3f} {fig.get('potential_drop_v', math.nan):9.3f} "
                     f"{fig.get('width_nm', math.nan):11.3f} {fig.get('peak_field_v_per_m', math.nan):17.4g} "
                     f"{measured:18.4g} {fig.get('areal_charge_c_per_m2', math.nan):26.4g}")
    sheet = series.settings.get("layer_sheet_nm")
    if sheet:
        lines.append(f"drop: across the space-charge layer; its countercharge, a sheet of {sheet:g} nm, adds about "
                     f"E·{sheet:g} nm/2 to the whole potential step (what bias-series' ΔV measures)")
    point, normal = series.settings.get("interface_point_nm"), series.settings.get("interface_normal_deg")
    if point is not None and normal is not None:
        lines.append(f"interface through ({point[0]:g}, {point[1]:g}) nm, normal {normal:g}° from scan +x toward +y")
    lines.append(f"wrote {len(files)} files to {files[0].parent}: {', '.join(f.name for f in files)}")
    return "\n".join(lines)
