"""The validation cases: a command line run on a multislice reference, and the figure it
is held to against the reference's truth.

Shared by tests/contracts/test_validation.py (which holds each figure to its tolerance) and
validation/report.py (which writes docs/validation.md from the same runs). The references
and how their truth is defined: validation/README.md and the docstrings of
validation/make_*.py. Only the public command line and result-file format are used.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "validation" / "data"
VALIDATION_VENV = ROOT / "validation" / ".venv" / "bin" / "python"


def dpcstem_executable() -> str:
    """The ``dpcstem`` script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / "dpcstem")


@dataclass
class Run:
    output: dict  # result datasets and attributes
    stdout: str
    stderr: str


def run_command(args, out_dir: Path) -> subprocess.CompletedProcess:
    """Run ``dpcstem ARGS`` in ``out_dir`` as a user would; a failure raises with its message."""
    argv = [dpcstem_executable(), *[str(a) for a in args]]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=out_dir)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc


def run_cli(args, out_dir: Path, name: str, prepare=()) -> Run:
    """Run the ``prepare`` commands, then ``dpcstem ARGS -o OUT`` as a user would, and read
    the result file back."""
    for command in prepare:
        run_command(command, out_dir)
    out = out_dir / f"{name}.h5"
    argv = [dpcstem_executable(), *[str(a) for a in args], "-o", str(out), "--overwrite"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=out_dir)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    with h5py.File(out, "r") as f:
        output = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        output["attrs"] = {k: f.attrs[k] for k in f.attrs}
    return Run(output, proc.stdout, proc.stderr)


def truth(name: str) -> dict:
    """A reference file's truth maps and attributes."""
    with h5py.File(DATA / name, "r") as f:
        g = f["truth"]
        out = {k: g[k][()] for k in g}
        out["attrs"] = {k: g.attrs[k] for k in g.attrs}
    return out


def relative_error(measured, true, mask=None, scale=None) -> float:
    """max |measured − true| over ``mask`` (all pixels without it) / ``scale`` (default:
    max |true| over the mask)."""
    measured, true = np.asarray(measured, float), np.asarray(true, float)
    if mask is None:
        mask = np.ones(true.shape, bool)
    if scale is None:
        scale = np.abs(true[mask]).max()
    return float(np.nanmax(np.abs(measured - true)[mask]) / scale)


def columns(shape, x_nm_ranges, step_nm=1.0):
    """A mask of the scan columns whose x (nm) lies within any of the ranges."""
    x = np.arange(shape[1]) * step_nm
    keep = np.zeros(shape[1], bool)
    for lo, hi in x_nm_ranges:
        keep |= (x >= lo) & (x <= hi)
    return np.broadcast_to(keep, shape)


def scan_step_nm(run) -> float:
    """The scan step along x (nm) the command read from the file."""
    return float(run.output["attrs"]["step_x_nm"])


def angle_difference_deg(a, b) -> float:
    return float(abs((a - b + 180.0) % 360.0 - 180.0))


# -- the cases ---------------------------------------------------------------------------------
# Each case: the command a user runs, the figure computed from the result and the truth, the
# tolerance the "done" sets (or the figure physics allows), and what was simulated.

@dataclass(frozen=True)
class Case:
    key: str
    reference: str
    what: str
    args: tuple
    figure: str
    tolerance: float
    measure: object  # (Run, truth dict) -> float
    xfail: str = ""  # why dpcstem is known to miss the tolerance today (strict xfail)
    prepare: tuple = ()  # commands run first in the same folder (e.g. calibrate-response), each a tuple of args
    limit: bool = False  # a physical limit the case shows: the figure must EXCEED the tolerance
    # "right or warned" (DESIGN §0): where the figure misses the tolerance, the command's stderr
    # must hold a warning line containing each of these
    warns: tuple = ()


def _junction_scale(t, step_nm):
    """The peak junction field: max |E_w| 3 nm and more from the MIP steps (x = 0, 16 nm)."""
    return np.abs(t["field_x_weighted"][columns(t["field_x_weighted"].shape, [(3, 13), (19, 29)], step_nm)]).max()


def _junction_field(distance_nm):
    def measure(run, t):
        step = scan_step_nm(run)
        mask = columns(t["field_x_weighted"].shape, [(distance_nm, 16 - distance_nm),
                                                      (16 + distance_nm, 32 - distance_nm)], step)
        return relative_error(run.output["field_x"], t["field_x_weighted"], mask, _junction_scale(t, step))
    return measure


def _junction_field_all(run, t):
    return relative_error(run.output["field_x"], t["field_x_weighted"])


def _junction_potential_drop(run, t):
    """|ΔV / ΔV_w − 1|, ΔV the potential of the field-free n side (x 21–27 nm) minus the p
    side's (x 5–11 nm), both averaged."""
    shape, step = t["potential_weighted"].shape, scan_step_nm(run)
    n, p = columns(shape, [(21, 27)], step), columns(shape, [(5, 11)], step)
    def drop(v):
        return float(np.nanmean(v[n]) - np.nanmean(v[p]))
    return abs(drop(run.output["potential"]) / drop(t["potential_weighted"]) - 1)


def path_integral_x(field_x, step_nm=1.0):
    """−∫E_x dx along each row (trapezoids), V: the potential a field map sampled at the scan
    step implies, whatever integrates it (E in V/m, step in nm)."""
    e = np.asarray(field_x, float)
    steps = 0.5 * (e[:, 1:] + e[:, :-1]) * step_nm * 1e-9
    return -np.concatenate([np.zeros((e.shape[0], 1)), np.cumsum(steps, axis=1)], axis=1)


def _junction_potential_path(run, t):
    """|ΔV / ΔV_path − 1|, ΔV_path the same drop of the path integral of the truth's E_w at the
    scan step: the integration judged apart from what the scan step cannot resolve."""
    shape, step = t["potential_weighted"].shape, scan_step_nm(run)
    n, p = columns(shape, [(21, 27)], step), columns(shape, [(5, 11)], step)
    def drop(v):
        return float(np.nanmean(v[n]) - np.nanmean(v[p]))
    return abs(drop(run.output["potential"]) / drop(path_integral_x(t["field_x_weighted"], step)) - 1)


def _sphere_field(r_min_nm=0.0, r_max_nm=np.inf, kind="_weighted"):
    """max |E − E_w| (2-D) between two distances from the sphere's centre / max |E_w|
    (``kind=""``: against the unweighted field at the probe position)."""
    def measure(run, t):
        tx, ty = t[f"field_x{kind}"], t[f"field_y{kind}"]
        e = np.hypot(run.output["field_x"] - tx, run.output["field_y"] - ty)
        cx, cy = t["attrs"]["centre_xy_nm"]
        y, x = np.mgrid[0:e.shape[0], 0:e.shape[1]].astype(float)  # 1 nm steps
        r = np.hypot(x - cx, y - cy)
        mask = (r >= r_min_nm) & (r <= r_max_nm)
        return float(np.nanmax(e[mask]) / np.hypot(tx, ty).max())
    return measure


def _sphere_rotation(run, t):
    rot = float(run.output["attrs"]["detector_rotation_deg"])
    flip = bool(run.output["attrs"]["flip"])
    if flip != bool(t["attrs"]["flip"]):
        return 360.0
    return angle_difference_deg(rot, float(t["attrs"]["detector_rotation_deg"]))


def _net_field_in_layer(name, reference_0v=None):
    """max |ΔE_x − ΔE| in the layer (1 nm inside each edge) / max |ΔE| there: ΔE the probe-weighted net
    field, or with ``reference_0v`` (a file without drift) the net field at the probe position."""
    def measure(run, t1):
        width = float(t1["attrs"]["layer_width_nm"])
        x0 = float(t1["attrs"]["interface_x_nm"]) - float(t1["attrs"]["scan_origin_yx_nm"][1])  # in the scan frame
        truth_net = t1["net_field_x_weighted"] if reference_0v is None else \
            t1["field_x"] - truth(reference_0v)["field_x"]
        mask = columns(truth_net.shape, [(x0 + 1, x0 + width - 1)], scan_step_nm(run))
        index = int(np.argmin(np.abs(run.output["bias"] - float(t1["attrs"]["bias_v"]))))
        return relative_error(run.output["net_field_x"][index], truth_net, mask)
    measure.__name__ = name
    return measure


def _registered_shift(run, t1):
    """max |shift + drift| (px) over y and x: the shift registration applied to the 1 V acquisition against the
    drift the reference was made with (the shift that undoes it is minus the drift, in scan pixels)."""
    drift_px = np.asarray(t1["attrs"]["drift_yx_nm"], float) / scan_step_nm(run)
    return float(np.abs(run.output["registration_shift"][-1] + drift_px).max())


def _thick_scale(run, t):
    """|1 − k|, k the least-squares scale of the measured E_x on the probe-weighted E_w over
    the pixels where |E_w| is at least half its peak: how far low (or high) the response reads."""
    w_all = t["field_x_weighted"]
    mask = (np.abs(w_all) >= 0.5 * np.abs(w_all).max()) & np.isfinite(run.output["field_x"])
    e, w = run.output["field_x"][mask].astype(float), w_all[mask]
    return abs(1.0 - float((e * w).sum() / (w * w).sum()))


J4, J4V = DATA / "junction_4d.h5", DATA / "junction_4d_vacuum.h5"
J4F, J4FV = DATA / "junction_4d_fine.h5", DATA / "junction_4d_fine_vacuum.h5"
JS, JSV = DATA / "junction_segments.h5", DATA / "junction_segments_vacuum.h5"
SP = DATA / "sphere_segments.h5"
TS, TSV = DATA / "thick_segments.h5", DATA / "thick_segments_vacuum.h5"
TILTS_SPECIMEN, TILTS_VACUUM = DATA / "thick_tilts_specimen.h5", DATA / "thick_tilts_vacuum.h5"
T4, T4V, T4_TILTS = DATA / "thick_4d.h5", DATA / "thick_4d_vacuum.h5", DATA / "thick_4d_tilts_specimen.h5"
THICK_4D_WHAT = ("a pixelated camera (28 × 28 px of 0.31 mrad, kx −3.1 to +5.6 mrad, ky ±4.4 mrad) that cuts the "
                 "plasmon halo of the same 150 nm specimen unevenly")
THICK_ARGS = ("reconstruct", TS, "--thickness", 150, "--detector-rotation", 203.7, "--flip", "--reference", TSV)
THICK_FIGURE = "|1 − k|, k the scale of E_x on E_w (least squares) where |E_w| ≥ half its peak"
THICK_WHAT = ("four DF4-like segments (1.1–6.6 mrad, ψ 203.7°, flipped) across a smooth field (1.96·10⁸ V/m, "
              "32 nm period) through 150 nm (t/λ = 1.28, disc edge blurred by multiple plasmon scattering)")

JUNCTION_FIGURE = "max |E_x − E_w| / peak junction |E_w|"
CASES = [
    Case("4d_default", "junction_4d.h5",
         "pixelated 4D-STEM across a p-n heterojunction (MIP step), linear descan (0.16 mrad across the scan, "
         "several times the junction's deflection); defaults: no descan removed (the median centre of mass), α from the "
         "disc; right within the camera's pixel limit (4d_vacuum), or warned with how far off and the fix",
         ("com", J4, "--thickness", 50), f"{JUNCTION_FIGURE}, ≥ 3 nm from the MIP steps", 0.025,
         _junction_field(3), warns=("warning: descan: the deflection holds a plane across the scan",
                                    "--reference VACUUM", "--descan-region")),
    Case("4d_vacuum", "junction_4d.h5",
         "the same with the vacuum scan as the descan reference, ≥ 3 nm from the MIP steps; the camera's "
         "0.31 mrad pixels (disc radius 6.4 px) bound this figure: binning the same patterns 4 × 4 moves "
         "their centre of mass by 1–3·10⁶ V/m, whoever computes it",
         ("com", J4, "--thickness", 50, "--reference", J4V), f"{JUNCTION_FIGURE}, ≥ 3 nm from the MIP steps",
         0.025, _junction_field(3)),
    Case("4d_vacuum_at_steps", "junction_4d.h5",
         "the same, the whole scan (MIP steps included, where the field varies within the probe)",
         ("com", J4, "--thickness", 50, "--reference", J4V), "max |E_x − E_w| / max |E_w|, whole scan",
         0.005, _junction_field_all),
    Case("4d_vacuum_potential", "junction_4d.h5",
         "the same: iDPC potential drop across the junction (default mirror boundary)",
         ("com", J4, "--thickness", 50, "--reference", J4V), "|ΔV / ΔV_w − 1|, n side minus p side", 0.005,
         _junction_potential_drop,
         xfail="1.39% high, not reachable at a 1 nm scan step: the truth's own E_w sampled at the step and "
               "integrated the same way reads 2.21% above ΔV_w (the step undersamples the MIP step's field, a "
               "0.5 nm tanh blurred by the ~0.6 nm probe: +4.1% of the MIP's 1 V, +0.13% of the junction's 0.9 V; "
               "a fixed Airy-probe model gives +2.24%), the camera's pixel limit on the field takes 0.81% off, and "
               "the mirror boundary adds 0.25% over the DCT (a discrete path integral); see 4d_vacuum_potential_path; "
               "at a 0.2 nm step on 0.157 mrad pixels the drop is within 0.03% (4d_fine_potential)"),
    Case("4d_vacuum_potential_dct", "junction_4d.h5",
         "the same with the DCT (Neumann) integration",
         ("com", J4, "--thickness", 50, "--reference", J4V, "--potential-method", "dct"),
         "|ΔV / ΔV_w − 1|, n side minus p side", 0.005, _junction_potential_drop,
         xfail="1.14% high: the truth's own E_w at the 1 nm step integrates to 1.95% above ΔV_w (the DCT is the "
               "trapezoid path integral here), the camera's pixel limit takes 0.81% off (see 4d_vacuum_potential)"),
    Case("4d_vacuum_potential_path", "junction_4d.h5",
         "the same (default mirror boundary), against the path integral of the truth's E_w at the scan step: "
         "the integration judged apart from what a 1 nm step cannot resolve; the camera's pixel limit on the field "
         "(4d_vacuum) integrates to about 0.8% of the drop",
         ("com", J4, "--thickness", 50, "--reference", J4V),
         "|ΔV / ΔV_path − 1|, ΔV_path = −∫E_w dx (trapezoids at the scan step)", 0.01, _junction_potential_path),
    Case("4d_fine_field", "junction_4d_fine.h5",
         "the same junction scanned 4 × 160 at 0.2 nm (the ~0.6 nm probe's Nyquist step is 0.31 nm) on a camera of "
         "0.157 mrad pixels (disc radius 12.8 px), no descan, with its vacuum scan, ≥ 3 nm from the MIP steps",
         ("com", J4F, "--thickness", 50, "--reference", J4FV), f"{JUNCTION_FIGURE}, ≥ 3 nm from the MIP steps",
         0.005, _junction_field(3)),
    Case("4d_fine_field_at_steps", "junction_4d_fine.h5",
         "the same, the whole scan (MIP steps included)",
         ("com", J4F, "--thickness", 50, "--reference", J4FV), "max |E_x − E_w| / max |E_w|, whole scan",
         0.005, _junction_field_all),
    Case("4d_fine_potential", "junction_4d_fine.h5",
         "the same: iDPC potential drop across the junction (default mirror boundary), where the scan step "
         "resolves the MIP steps' field (at 0.2 nm the truth's own E_w integrates to within 0.01% of ΔV_w)",
         ("com", J4F, "--thickness", 50, "--reference", J4FV), "|ΔV / ΔV_w − 1|, n side minus p side", 0.005,
         _junction_potential_drop),
    Case("segments_collection", "junction_segments.h5",
         "the same with the collection angles and the vacuum reference",
         ("reconstruct", JS, "--thickness", 50, "--collection", 1.1, 6.6, "--reference", JSV),
         f"{JUNCTION_FIGURE}, ≥ 5 nm from the MIP steps", 0.01, _junction_field(5),
         xfail="1.14%: four segments follow the field near the probe's centre, not the probe-weighted field "
               "(the probe's tails reach the MIP steps); no response model in dpcstem accounts for the "
               "probe's shape"),
    Case("segments_near_steps", "junction_segments.h5",
         "the same, 3 nm and more from the MIP steps (the probe-size limit of segments: the field varies "
         "within the probe)",
         ("reconstruct", JS, "--thickness", 50, "--collection", 1.1, 6.6, "--reference", JSV),
         f"{JUNCTION_FIGURE}, ≥ 3 nm from the MIP steps", 0.05, _junction_field(3)),
    Case("thick_exact", "thick_segments.h5",
         f"{THICK_WHAT}; the exact (sharp-disc) response, vacuum reference: a limit, it must read low",
         THICK_ARGS, THICK_FIGURE, 0.05, _thick_scale, limit=True),
    Case("thick_response_vacuum", "thick_segments.h5",
         f"{THICK_WHAT}; empirical response from a tilt series in vacuum (dpcstem calibrate-response): a limit, "
         "it must read low as the exact response does",
         (*THICK_ARGS, "--response", "vacuum.npz"), THICK_FIGURE, 0.05, _thick_scale, limit=True,
         prepare=(("calibrate-response", TILTS_VACUUM, "--detector-rotation", 203.7, "--flip", "-o", "vacuum.npz"),)),
    Case("thick_response_specimen", "thick_segments.h5",
         f"{THICK_WHAT}; empirical response from a tilt series through the specimen (dpcstem calibrate-response)",
         (*THICK_ARGS, "--response", "specimen.npz"), THICK_FIGURE, 0.05, _thick_scale,
         prepare=(("calibrate-response", TILTS_SPECIMEN, "--detector-rotation", 203.7, "--flip", "-o",
                   "specimen.npz"),)),
    Case("thick_4d_cut", "thick_4d.h5",
         f"{THICK_4D_WHAT}; centre of mass as measured (default descan: the median centre, the field a cosine over "
         "the scan): a limit, it must read low",
         ("com", T4, "--thickness", 150), THICK_FIGURE, 0.05, _thick_scale, limit=True),
    Case("thick_4d_response", "thick_4d.h5",
         f"{THICK_4D_WHAT}; empirical centre-of-mass response from a 4D tilt series through the specimen "
         "(dpcstem calibrate-response, then com --response)",
         ("com", T4, "--thickness", 150, "--alpha", 2, "--response", "com.npz"), THICK_FIGURE, 0.01, _thick_scale,
         prepare=(("calibrate-response", T4_TILTS, "-o", "com.npz"),)),
    Case("sphere_given", "sphere_segments.h5",
         "charged sphere, detector rotated 203.7° and flipped, both given; between the sphere's surface and "
         "its screening shell (6–10 nm from the centre)",
         ("reconstruct", SP, "--detector-rotation", 203.7, "--flip"),
         "max |E − E_w| / max |E_w| (2-D), 6–10 nm from the centre", 0.01, _sphere_field(6.0, 10.0),
         xfail="2.4%: four segments follow the field near the probe's centre (within 0.98% of it, "
               "sphere_given_point), not the probe-weighted field the centre of mass gives"),
    Case("sphere_given_point", "sphere_segments.h5",
         "the same region, against the field at the probe position (unweighted)",
         ("reconstruct", SP, "--detector-rotation", 203.7, "--flip"),
         "max |E − E_point| / max |E_point| (2-D), 6–10 nm from the centre", 0.01, _sphere_field(6.0, 10.0, "")),
    Case("sphere_given_whole", "sphere_segments.h5",
         "the same over the whole scan (the sphere's surface and the shell, where the field's slope jumps "
         "within the probe: the probe-size limit of segments)",
         ("reconstruct", SP, "--detector-rotation", 203.7, "--flip"),
         "max |E − E_w| / max |E_w| (2-D), whole scan", 0.05, _sphere_field()),
    Case("sphere_fit_flip_given", "sphere_segments.h5",
         "charged sphere: rotation fitted (--fit-rotation --flip)",
         ("reconstruct", SP, "--fit-rotation", "--flip"), "|ψ_fit − ψ| in degrees (360 for the wrong flip)",
         0.2, _sphere_rotation),
    Case("sphere_fit", "sphere_segments.h5",
         "charged sphere: rotation and flip fitted (--fit-rotation)",
         ("reconstruct", SP, "--fit-rotation"), "|ψ_fit − ψ| in degrees (360 for the wrong flip)",
         0.2, _sphere_rotation),
    Case("bias_structured_drift", "bias_structured_drift_1V.h5",
         "bias series 0/1 V across a Mott–Schottky layer scanned 32 × 128 at 0.2 nm, drift (0.6, 1.7) nm, grain "
         "in patches in the sum (its field 9 times the layer's net field); default registration",
         ("bias-series", DATA / "bias_structured_drift_0V.h5", DATA / "bias_structured_drift_1V.h5"),
         "max |ΔE_x − ΔE_w| / max |ΔE_w| in the layer", 0.03, _net_field_in_layer("net_structured"),
         xfail="6.7%: registration finds the drift to 0.005 px (bias_structured_drift_shift), but the grain's field, "
               "9 times the layer's net field, makes the net map that sensitive: the truth's own E_w shifted by the "
               "registered shift misses the undrifted scan by 4.3% (by the exact shift, 0.6%); and the same scan "
               "without drift reads 5.2% (bias_plain_still_noreg: the segments' probe-size limit 1 nm from the "
               "interface)"),
    Case("bias_structured_drift_shift", "bias_structured_drift_1V.h5",
         "the same: the shift registration applies against the drift (3, 8.5) px, found on the grain that stays "
         "the same while the layer changes",
         ("bias-series", DATA / "bias_structured_drift_0V.h5", DATA / "bias_structured_drift_1V.h5"),
         "max |shift + drift| over y and x, px", 0.05, _registered_shift),
    Case("bias_structured_given_shift", "bias_structured_drift_1V.h5",
         "the same with the exact drift given (--shift): the 0.2 nm step samples the probe-limited maps (at a 1 nm "
         "step this read 699%), so the shifted maps reproduce the undrifted scan",
         ("bias-series", DATA / "bias_structured_drift_0V.h5", DATA / "bias_structured_drift_1V.h5",
          "--shift", 0, 0, "--shift", -3.0, -8.5),
         "max |ΔE_x − ΔE_w| / max |ΔE_w| in the layer", 0.03, _net_field_in_layer("net_structured_given"),
         xfail="5.3%: as the same layer without drift (5.2%, bias_plain_still_noreg): four segments follow the "
               "field near the probe's centre, and 1 nm from the interface the probe's tails reach the MIP step"),
    Case("bias_plain_drift", "bias_plain_drift_1V.h5",
         "bias series with drift (0.6, 1.7) nm and no grain: the sum holds the MIP step at the interface, which "
         "stays, and the layer, which changes; default registration shifts along x only (the specimen is uniform "
         "along y) and lands 0.067 px (0.013 nm) off, which 1 nm from the MIP step moves its field (14 times the "
         "layer's net field) by a few % of the net field, here against the segments' +5% there (the exact "
         "shift reads 5.2%, bias_plain_given_shift)",
         ("bias-series", DATA / "bias_plain_0V.h5", DATA / "bias_plain_drift_1V.h5"),
         "max |ΔE_x − ΔE_w| / max |ΔE_w| in the layer", 0.03, _net_field_in_layer("net_plain_drift"),
         warns=("warning: registration", "--shift", "--registration-image", "--no-register")),
    Case("bias_plain_given_shift", "bias_plain_drift_1V.h5",
         "the same with the exact drift given (--shift) (at a 1 nm step, which undersampled the MIP steps, this "
         "read 154%)",
         ("bias-series", DATA / "bias_plain_0V.h5", DATA / "bias_plain_drift_1V.h5",
          "--shift", 0, 0, "--shift", -3.0, -8.5),
         "max |ΔE_x − ΔE_w| / max |ΔE_w| in the layer", 0.03, _net_field_in_layer("net_plain_given"),
         xfail="5.2%: as without drift (bias_plain_still_noreg): the segments' probe-size limit 1 nm from the "
               "interface"),
    Case("bias_plain_still", "bias_plain_1V.h5",
         "bias series without drift, no grain in the sum; default registration (no shift applied); against the net "
         "field at the probe position, which four segments follow (as sphere_given_point), with the no-drift "
         "tolerance of 5%",
         ("bias-series", DATA / "bias_plain_0V.h5", DATA / "bias_plain_1V.h5"),
         "max |ΔE_x − ΔE_point| / max |ΔE_point| in the layer", 0.05,
         _net_field_in_layer("net_plain_point", "bias_plain_0V.h5")),
    Case("bias_plain_still_noreg", "bias_plain_1V.h5",
         "bias series without drift, no grain in the sum; --no-register",
         ("bias-series", DATA / "bias_plain_0V.h5", DATA / "bias_plain_1V.h5", "--no-register"),
         "max |ΔE_x − ΔE_w| / max |ΔE_w| in the layer", 0.03, _net_field_in_layer("net_plain_noreg"),
         xfail="5.2%: the segments' probe-size limit in a 5–9 nm layer 1 nm from the interface, where the probe's "
               "tails reach the MIP step (as segments_near_steps), against the probe-weighted net field (against "
               "the net field at the probe position, which four segments follow: 3.9%, bias_plain_still)"),
]
