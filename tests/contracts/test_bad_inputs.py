"""Bad inputs, through the Python API and the command line, and the table of what each gets.

Every case below is run by ``test_bad_input`` (which checks the exception class and message,
the exit status and the one line the command prints, or what a masked result reports) and
the same outcomes, as the run produced them, make the table ``docs/bad_inputs.md``:
``test_table_of_bad_inputs_is_current`` fails when the committed table differs from the
run. Rewrite it with ``DPCSTEM_UPDATE_DOCS=1 python -m pytest tests/contracts/test_bad_inputs.py``.

Command-line cases run ``dpcstem.cli.main`` in this process, in a folder of their own,
with relative file names, so the messages hold no temporary paths.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

import dpcstem
from dpcstem import Calibration
from dpcstem.options import ReconstructionOptions
from dpcstem.bias import reconstruct_series
from dpcstem.cli import main
from dpcstem.errors import (
    CalibrationError,
    DPCError,
    InputDataError,
    InsufficientMemoryError,
    MissingMetadataError,
    OutputExistsError,
    UnreadableFileError,
)
from dpcstem.io import read_segments
from dpcstem.fourd import bright_field_disc, centre_of_mass, quadrant_labels, reconstruct_com, virtual_segments
from dpcstem.reconstruct import reconstruct, reconstruct_deflection
from dpcstem.simulate import segments_from_deflection

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad_inputs.md"
UPDATE = os.environ.get("DPCSTEM_UPDATE_DOCS") == "1"

KV, ALPHA, STEP, THICKNESS = 200.0, 10.0, 1.0, 100.0
CAL = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP, thickness_nm=THICKNESS)
EDGES = ["--collection", "0", "inf"]
GOOD = ["--kv", "200", "--alpha", "10", "--step", "1", "--thickness", "100", *EDGES]
COM = ["--kv", "200", "--step", "1", "--thickness", "100", "--mrad-per-px", "0.5"]
THICK = ["--kv", "200", "--beta", "10", "--composition", "LiCoO2"]


# -- data ---------------------------------------------------------------------------------

def segments(shape=(8, 8), dtype=np.float64, scale=1e4):
    """Noiseless segments A, B, C, D of a uniform 1 mrad deflection along x, in counts."""
    tx = np.full(shape, 1.0)
    ty = np.linspace(-0.5, 0.5, shape[0] * shape[1]).reshape(shape)
    seg = segments_from_deflection(tx, ty, CAL) * scale
    return seg.astype(dtype) if np.dtype(dtype).kind == "f" else np.round(seg).astype(dtype)


def frames(shape=(4, 5, 16, 16), dtype=np.uint16, counts=100):
    """4D-STEM frames with a bright-field disc of radius 4 px at the centre."""
    y, x = np.indices(shape[2:])
    disc = ((y - shape[2] / 2) ** 2 + (x - shape[3] / 2) ** 2 < 16) * counts
    return np.broadcast_to(disc, shape).astype(dtype)


def spectrum(n=200):
    """A low-loss spectrum: zero-loss peak at 0 eV and a plasmon shoulder, channel 0 at -2 eV, 0.1 eV wide."""
    e = np.arange(n) * 0.1 - 2.0
    return np.exp(-0.5 * (e / 0.3) ** 2) * 1e4 + np.where(e > 1.0, 100.0, 0.0)


def write_h5(path, attrs=None, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


def cut(path, fraction=0.5):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return path


# -- how a case is run and described --------------------------------------------------------

@dataclass
class Outcome:
    kind: str          # "raised", "exit" or "ok"
    text: str          # the table's "what it gets"
    error: BaseException | None = None
    status: int | None = None
    stderr: str = ""
    value: object = None


def api(call):
    """Run an API call: the exception it raises or what it returns."""
    def run(d):
        try:
            value = call(d)
        except Exception as exc:  # noqa: BLE001 - the table records whatever happens
            return Outcome("raised", f"`{type(exc).__name__}`: {exc}", error=exc)
        return Outcome("ok", "", value=value)
    return run


def cli(*argv, prepare=None):
    """Run ``dpcstem ARGV`` in the case's folder: exit status and the one line it prints."""
    def run(d):
        if prepare is not None:
            prepare(d)
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                status = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse refuses an option value
                status = exc.code
        lines = [line for line in err.getvalue().splitlines() if line.strip() and not _PROGRESS.search(line)]
        shown = lines[-1] if lines else "(nothing on stderr)"
        if status == 1:
            shown = " / ".join(lines)
        return Outcome("exit", f"exit {status}: `` {shown} ``", status=status, stderr="\n".join(lines),
                       value=out.getvalue())
    return run


_PROGRESS = re.compile(r"\d+%\|")  # a tqdm progress bar line, not a message


@dataclass
class Case:
    section: str
    what: str                  # the bad input, in words
    run: object                # d -> Outcome
    expect: object             # exception class, exit status, or "ok"
    match: str                 # regex the message (or the description) must match
    describe: object = None    # for "ok": (value, d) -> text, asserting what it states

    @property
    def via(self):
        return "CLI" if self.expect in (0, 1, 2) else "API"

    @property
    def id(self):
        return re.sub(r"[^a-z0-9]+", "-", f"{self.section} {self.what}".lower()).strip("-")[:80]


# -- what a masked result reports -----------------------------------------------------------

def masked(pixel):
    def describe(result, d):
        n = result.attrs["n_bad_input"]
        ok = bool(result.valid[pixel])
        assert not ok and n >= 1 and np.isnan(result.charge_density[pixel])
        assert np.isfinite(result.charge_density[result.valid]).all()
        return (f"masked and counted: `n_bad_input` = {n} of {result.valid.size} pixels; the pixel is NaN "
                f"and invalid in every map")
    return describe


def kept(pixel):
    def describe(result, d):
        assert result.valid[pixel] and result.attrs["n_bad_input"] == 0
        return (f"kept: the segment sum is positive, so the pixel is reconstructed "
                f"(θx = {result.deflection_x[pixel]:.3g} mrad); `n_bad_input` = 0")
    return describe


def saturated_description(result, d):
    n = result.attrs.get("n_saturated")
    if n is None or result.valid[2, 3]:
        return (f"**not flagged**: `n_saturated` {n}, the pixel reconstructed as θx = "
                f"{result.deflection_x[2, 3]:.3g} mrad (1 mrad elsewhere)")
    assert np.isnan(result.charge_density[2, 3]) and result.valid.sum() == result.valid.size - 1
    return f"masked and counted: `n_saturated` = {n}; the pixel is NaN and invalid in every map, the others valid"


def same_as_float(result, d):
    reference = reconstruct(np.asarray(d["float"], np.float64), CAL)
    error = float(np.nanmax(np.abs(result.deflection_x - reference.deflection_x)))
    assert error < 1e-6 and result.valid.all()
    return "no overflow: every pixel valid, the deflection equals that of the same counts as float64"


def intensity_exact(sums, d):
    expected = 256 * 256 * 65535
    assert sums.intensity[0, 0] == expected
    return f"no overflow: Σ I = {sums.intensity[0, 0]:.0f} counts per frame, exact (256² × 65535)"


def segments_exact(values, d):
    expected = float(d["quadrant"]) * 65535
    got = values[:, 0, 0]
    if np.all(got == expected):
        return f"no overflow: each quadrant sums to {expected:.0f} counts, exact"
    return f"**wrong**: each quadrant sums to {got[0]:.0f} counts instead of {expected:.0f}"


def nan_frame_masked(result, d):
    assert not result.valid[1, 1] and result.valid.sum() > 0
    return f"masked and counted: the frame's pixel is invalid, {result.n_invalid} of {result.valid.size} invalid"


def nothing_written(expected_files):
    """The folder holds only the inputs after a failed run: no result, no temporary file."""
    def check(outcome, d):
        left = sorted(p.name for p in d.iterdir())
        assert left == sorted(expected_files), left
        return " (nothing written)"
    return check


# -- the cases ------------------------------------------------------------------------------

def _save(name, array):
    def prepare(d):
        np.save(d / name, array)
    return prepare


def _seg_with(**changes):
    def make(d):
        seg = segments()
        for (i, y, x), value in changes.get("set", {}).items():
            if i is None:
                seg[:, y, x] = value
            else:
                seg[i, y, x] = value
        return seg
    return make


def _segment_response(name):
    """An empirical response of the segments' signal (a 3 × 3 tilt series of a linear response)."""
    def prepare(d):
        from dpcstem.io.response_file import save_response
        from dpcstem.response.empirical import fit_response

        u, v = (a.ravel() for a in np.meshgrid(np.linspace(-0.3, 0.3, 3), np.linspace(-0.3, 0.3, 3)))
        save_response(d / name, fit_response(u, v, 0.9 * u, 0.9 * v))
    return prepare


def _prepare_all(*steps):
    def prepare(d):
        for step in steps:
            step(d)
    return prepare


def _h5(name, attrs=None, **datasets):
    def prepare(d):
        write_h5(d / name, attrs, **{k: (v() if callable(v) else v) for k, v in datasets.items()})
    return prepare


def _text(name, text="this is not a data file\n"):
    def prepare(d):
        (d / name).write_text(text)
    return prepare


def _tiff(name, pages):
    def prepare(d):
        tifffile.imwrite(d / name, pages, photometric="minisblack")
    return prepare


def _cut(name, fraction=0.5):
    def prepare(d):
        cut(d / name, fraction)
    return prepare


def _uint16_near_max(d):
    seg = segments(scale=1.0)
    seg = np.round(60000 + seg / seg.max() * 5534)  # 60000 .. 65534: near the maximum, never at it
    d["float"] = seg
    return reconstruct(seg.astype(np.uint16), CAL)


def _saturated(d):
    seg = segments(dtype=np.uint16, scale=3e4)
    seg[0, 2, 3] = 65535
    return reconstruct(seg, CAL)


def _virtual_segments_saturated(d):
    labels = quadrant_labels((512, 512), (255.5, 255.5), 400)
    d["quadrant"] = int((labels == 1).sum())
    return virtual_segments(np.full((1, 1, 512, 512), 65535, np.uint16), labels)


def _nan_frame(d):
    data = frames(dtype=np.float32)
    data[1, 1] = np.nan
    return reconstruct_com(data, CAL, mrad_per_px=0.5)


def _series(biases, shapes=None, **kw):
    shapes = shapes or [(8, 8)] * len(biases)
    return api(lambda d: reconstruct_series([segments(shape) for shape in shapes], biases, CAL, **kw))


class _Dict(dict):
    """Per-case scratch space for the describe functions (keys set by the call)."""


def _with_scratch(call):
    def run(d):
        scratch = _Dict()
        outcome = api(lambda _: call(scratch))(d)
        outcome.scratch = scratch
        return outcome
    return run


def _internal_error(d):
    """A reader that fails in a way no user input explains: the handler's short message."""
    import dpcstem.io.segments as module

    original = module.read_segments

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure inside a reader")

    module.read_segments = broken
    try:
        np.save(d / "seg.npy", segments())
        return cli("reconstruct", "seg.npy", *GOOD, "-o", "out.h5")(d)
    finally:
        module.read_segments = original


def _two_h5(first_attrs, second_attrs):
    def prepare(d):
        write_h5(d / "a.h5", first_attrs, segments=segments())
        write_h5(d / "b.h5", second_attrs, segments=segments())
    return prepare



def _output_inputs(d):
    """The inputs of the output cases: segments, a second bias-series file, a vacuum, a 4D file."""
    write_h5(d / "seg.h5", {"bias_v": 0.0}, segments=segments())
    write_h5(d / "b.h5", {"bias_v": 1.0}, segments=segments())
    write_h5(d / "vacuum.h5", segments=segments())
    write_h5(d / "f.h5", frames=frames())


def _with_env(name, value, run):
    """Run a case with an environment variable set."""
    def with_env(d):
        before = os.environ.get(name)
        os.environ[name] = value
        try:
            return run(d)
        finally:
            if before is None:
                del os.environ[name]
            else:
                os.environ[name] = before
    return with_env


def _symlink(target, name):
    def prepare(d):
        os.symlink(target, d / name)
    return prepare


def _hard_link(target, name):
    def prepare(d):
        os.link(d / target, d / name)
    return prepare


def _fifo(name):
    def prepare(d):
        os.mkfifo(d / name)
    return prepare


CASES = [
    # segment arrays
    Case("segments", "segments of two dimensions (ny, nx)", api(lambda d: reconstruct(segments()[0], CAL)),
         InputDataError, r"segments must have shape \(4, ny, nx\).*got shape \(8, 8\)"),
    Case("segments", "three segments (3, ny, nx)", api(lambda d: reconstruct(segments()[:3], CAL)),
         InputDataError, r"shape \(4, ny, nx\).*got shape \(3, 8, 8\)"),
    Case("segments", "an empty scan (4, 0, 8)", api(lambda d: reconstruct(np.zeros((4, 0, 8)), CAL)),
         InputDataError, r"segments is empty \(shape \(4, 0, 8\)\)"),
    Case("segments", "complex segments", api(lambda d: reconstruct(segments().astype(complex), CAL)),
         InputDataError, r"must hold numbers, got dtype complex128"),
    Case("segments", "an array of text", api(lambda d: reconstruct(np.full((4, 2, 2), "a"), CAL)),
         InputDataError, r"must hold numbers, got dtype <U1"),
    Case("segments", "one NaN segment value", api(lambda d: reconstruct(_seg_with(set={(0, 2, 3): np.nan})(d), CAL)),
         "ok", r"masked and counted", masked((2, 3))),
    Case("segments", "one +inf segment value", api(lambda d: reconstruct(_seg_with(set={(1, 2, 3): np.inf})(d), CAL)),
         "ok", r"masked and counted", masked((2, 3))),
    Case("segments", "negative counts: all four segments of a pixel negative",
         api(lambda d: reconstruct(_seg_with(set={(None, 2, 3): -50.0})(d), CAL)), "ok", r"masked and counted",
         masked((2, 3))),
    Case("segments", "a pixel whose four segments are zero",
         api(lambda d: reconstruct(_seg_with(set={(None, 2, 3): 0.0})(d), CAL)), "ok", r"masked and counted",
         masked((2, 3))),
    Case("segments", "one slightly negative segment value (dark-offset noise) in a bright pixel",
         api(lambda d: reconstruct(_seg_with(set={(3, 2, 3): -3.0})(d), CAL)), "ok", r"kept", kept((2, 3))),
    Case("segments", "an all-zero acquisition", api(lambda d: reconstruct(np.zeros((4, 8, 8), np.uint16), CAL)),
         InputDataError, r"no pixel could be reconstructed"),
    Case("segments", "every pixel NaN", api(lambda d: reconstruct(np.full((4, 8, 8), np.nan), CAL)),
         InputDataError, r"no pixel could be reconstructed"),
    Case("segments", "a segment at the uint16 maximum 65535 (saturated)", _with_scratch(_saturated), "ok",
         r"masked and counted: `n_saturated` = 1", saturated_description),
    Case("segments", "uint16 segments near 65535 (four summed exceed the type)", _with_scratch(_uint16_near_max),
         "ok", r"no overflow", same_as_float),
    Case("segments", "a scan of one pixel (1 × 1)", api(lambda d: reconstruct(segments()[:, :1, :1], CAL)),
         InputDataError, r"."),
    Case("segments", "three gains for four segments", api(lambda d: ReconstructionOptions(gains=[1, 1, 1])),
         CalibrationError, r"gains must be 4 finite numbers \(A, B, C, D\), got \[1, 1, 1\]"),
    Case("segments", "a negative gain", api(lambda d: ReconstructionOptions(gains=[1, 1, 1, -1])),
         CalibrationError, r"gains must be 4 positive numbers \(A, B, C, D\), got \[1, 1, 1, -1\]"),
    Case("segments", "a vacuum reference with no counts",
         api(lambda d: reconstruct(segments(), CAL, vacuum=np.zeros((4, 8, 8)))), InputDataError,
         r"vacuum reference segment means must be positive"),
    Case("segments", "a thickness map (3, 3) for an 8 × 8 scan",
         api(lambda d: reconstruct(segments(), CAL.replace(thickness_nm=np.full((3, 3), 50.0)))), CalibrationError,
         r"thickness map shape \(3, 3\) does not match the scan \(8, 8\)"),
    Case("segments", "an unknown response model", api(lambda d: ReconstructionOptions(response="bogus")),
         CalibrationError, r"response must be one of \('exact', 'linear'\).*got 'bogus'"),
    Case("segments", "deflection maps of shapes (3, 3) and (3, 4)",
         api(lambda d: reconstruct_deflection(np.zeros((3, 3)), np.zeros((3, 4)), CAL)), InputDataError,
         r"one shape, got \(3, 3\), \(3, 4\)"),
    Case("segments", "None as the segments", api(lambda d: reconstruct(None, CAL)),
         InputDataError, r"shape \(4, ny, nx\)"),
    Case("segments", "a file declaring (4, 200000, 200000) float64 (more than memory)",
         api(lambda d: read_segments(_huge(Path("huge.h5")))),
         InsufficientMemoryError, r"huge\.h5: dataset 'segments' needs .* GiB but only .* GiB of memory is free"),

    # calibration
    *[Case("calibration", what, api(lambda d, kw=kw: Calibration(**{**dict(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP,
                                                                          thickness_nm=THICKNESS), **kw})),
           CalibrationError, match) for what, kw, match in [
        ("kV = 0", dict(kv=0), r"kv must be positive and finite \(accelerating voltage in kV\), got 0\.0"),
        ("kV negative", dict(kv=-200), r"kv must be positive and finite .*got -200\.0"),
        ("kV NaN", dict(kv=float("nan")), r"kv must be positive and finite .*got nan"),
        ("kV given in volts (200000)", dict(kv=200000), r"kv 200000 is outside 1 to 5000: kv is the accelerating voltage in kV"),
        ("kV as text", dict(kv="200 kV"), r"kv must be a number .*got '200 kV'"),
        ("α = 0", dict(alpha_mrad=0), r"alpha_mrad must be positive"),
        ("α given in µrad (20000)", dict(alpha_mrad=20000), r"alpha_mrad 20000 is outside 0\.1 to 200: alpha_mrad is the convergence semi-angle in mrad"),
        ("α above the outer collection angle", dict(collection_outer_mrad=5.0),
         r"alpha_mrad 10\.0 is above collection_outer_mrad 5\.0"),
        ("inner collection angle reaching α", dict(collection_inner_mrad=10.0),
         r"collection_inner_mrad 10\.0 must be smaller than alpha_mrad 10\.0"),
        ("outer collection angle below the inner", dict(collection_inner_mrad=2.0, collection_outer_mrad=1.0),
         r"collection_outer_mrad 1\.0 must exceed collection_inner_mrad 2\.0"),
        ("negative inner collection angle", dict(collection_inner_mrad=-1.0),
         r"collection_inner_mrad must be zero or positive and finite .*got -1\.0"),
        ("zero thickness", dict(thickness_nm=0), r"thickness_nm must be positive and finite .*got 0\.0"),
        ("negative thickness", dict(thickness_nm=-131), r"thickness_nm must be positive .*got -131\.0"),
        ("a thickness map with a zero pixel", dict(thickness_nm=np.array([[100.0, 0.0], [100.0, 100.0]])),
         r"thickness_nm map has 1 pixels that are not positive and finite"),
        ("a thickness map of one dimension", dict(thickness_nm=np.ones(3)),
         r"a thickness map must be 2-D \(ny, nx\), got shape \(3,\)"),
        ("detector rotation NaN", dict(detector_rotation_deg=float("nan")),
         r"detector_rotation_deg must be a finite angle in degrees, got nan"),
        ("detector rotation infinite", dict(detector_rotation_deg=float("inf")),
         r"detector_rotation_deg must be a finite angle in degrees, got inf"),
        ("negative step", dict(step_x_nm=-1), r"step_x_nm must be positive and finite \(scan step in nm\), got -1\.0"),
        ("zero step along y", dict(step_y_nm=0), r"step_y_nm must be positive .*got 0\.0"),
        ("relative permittivity 0", dict(eps_r=0), r"eps_r must be positive .*got 0\.0"),
        ("flip given as the text 'no'", dict(flip="no"), r"flip must be True or False, got 'no'"),
    ]],

    # dpcstem reconstruct
    *[Case("reconstruct", what, cli("reconstruct", "seg.npy", *args, "-o", "out.h5", prepare=_save("seg.npy", segments())),
           2, match) for what, args, match in [
        ("--kv 0", ["--kv", "0", "--alpha", "10", "--step", "1", "--thickness", "100", *EDGES],
         r"--kv: kv must be positive and finite \(accelerating voltage in kV\), got 0\.0"),
        ("--kv in volts", ["--kv", "200000", "--alpha", "10", "--step", "1", "--thickness", "100", *EDGES],
         r"--kv: kv 200000 is outside 1 to 5000: kv is the accelerating voltage in kV"),
        ("α above the outer collection angle", [*GOOD, "--collection", "0", "5"],
         r"--alpha and --collection: alpha_mrad 10\.0 is above collection_outer_mrad 5\.0"),
        ("--thickness 0", ["--kv", "200", "--alpha", "10", "--step", "1", "--thickness", "0", *EDGES],
         r"--thickness: thickness_nm must be positive"),
        ("--detector-rotation nan", [*GOOD, "--detector-rotation", "nan"],
         r"--detector-rotation: detector_rotation_deg must be a finite angle in degrees, got nan"),
        ("--step -1", ["--kv", "200", "--alpha", "10", "--step", "-1", "--thickness", "100", *EDGES],
         r"--step: step_x_nm must be positive and finite \(scan step in nm\), got -1\.0"),
        ("--step with three values", ["--kv", "200", "--alpha", "10", "--step", "1", "2", "3", "--thickness", "100"],
         r"--step takes one or two values \(x then y\) in nm, got 3"),
        ("no --kv and none recorded in the file", ["--alpha", "10", "--step", "1", "--thickness", "100", *EDGES],
         r"--kv is needed: seg\.npy does not record kv"),
        ("nothing the file does not record given", ["--thickness", "100"],
         r"--kv, --alpha, --step, --collection INNER OUTER are needed: seg\.npy does not record kv, alpha_mrad, "
         r"step_x_nm, the collection angles"),
        ("no thickness", ["--kv", "200", "--alpha", "10", "--step", "1", *EDGES],
         r"thickness_nm is needed for the field and charge density \(give --thickness NM\)"),
        ("--thickness and --thickness-map both", [*GOOD, "--thickness-map", "seg.npy"],
         r"give --thickness or --thickness-map, not both"),
        ("--dataset with a .npy file", [*GOOD, "--dataset", "segments"],
         r"seg\.npy: dataset='segments' applies to HDF5 files only"),
        ("--response file that does not exist", [*GOOD, "--response", "missing.npz"],
         r"missing\.npz: no such response file"),
    ]],
    Case("reconstruct", "--cutoff -1 (a negative low-pass cutoff)",
         cli("reconstruct", "seg.npy", *GOOD, "--charge-method", "spectral", "--cutoff", "-1", "-o", "out.h5",
             prepare=_save("seg.npy", segments())), 2, r"--cutoff must be a positive number of cycles/nm .*got -1\.0"),
    Case("reconstruct", "--kv abc (not a number)", cli("reconstruct", "seg.npy", "--kv", "abc", "-o", "out.h5",
                                                     prepare=_save("seg.npy", segments())), 2,
         r"dpcstem: error: dpcstem reconstruct: argument --kv: invalid float value: 'abc' \(see dpcstem reconstruct --help\)"),
    Case("reconstruct", "a file recording kv = -200",
         cli("reconstruct", "seg.h5", "--alpha", "10", "--step", "1", "--thickness", "100", *EDGES, "-o", "out.h5",
             prepare=_h5("seg.h5", {"kv": -200.0}, segments=segments)), 2,
         r"seg\.h5 records kv = -200\.0 \(give --kv to override it\): kv must be positive"),
    Case("reconstruct", "a missing file", cli("reconstruct", "missing.npy", *GOOD, "-o", "out.h5"), 2,
         r"missing\.npy: segments file not found"),
    Case("reconstruct", "a folder as the input", cli("reconstruct", ".", *GOOD, "-o", "out.h5"), 2,
         r"\.: segments file is a folder, not a file"),
    Case("reconstruct", "a .txt file", cli("reconstruct", "seg.txt", *GOOD, "-o", "out.h5", prepare=_text("seg.txt")),
         2, r"seg\.txt: unknown segments file type '\.txt'; give \.npy, \.tif, \.h5"),
    Case("reconstruct", "a text file named .npy",
         cli("reconstruct", "seg.npy", *GOOD, "-o", "out.h5", prepare=_text("seg.npy")), 2,
         r"seg\.npy: not a readable \.npy array file \(it does not start with the NumPy header\)"),
    Case("reconstruct", "a text file named .h5",
         cli("reconstruct", "seg.h5", *GOOD, "-o", "out.h5", prepare=_text("seg.h5")), 2,
         r"seg\.h5: not a readable HDF5 file \(.*file signature not found"),
    Case("reconstruct", "a text file named .tif",
         cli("reconstruct", "seg.tif", *GOOD, "-o", "out.h5", prepare=_text("seg.tif")), 2,
         r"seg\.tif: not a readable TIFF file \(not a TIFF file"),
    Case("reconstruct", "a text file named .emd",
         cli("reconstruct", "seg.emd", *GOOD, "-o", "out.h5", prepare=_text("seg.emd")), 2,
         r"seg\.emd: not a readable HDF5/EMD file"),
    Case("reconstruct", "a text file named .dm3",
         cli("reconstruct", "seg.dm3", *GOOD, "-o", "out.h5", prepare=_text("seg.dm3")), 2,
         r"seg\.dm3: not a readable Gatan DigitalMicrograph file"),
    Case("reconstruct", "an HDF5 file without a 'segments' dataset",
         cli("reconstruct", "seg.h5", *GOOD, "-o", "out.h5", prepare=_h5("seg.h5", images=np.zeros((2, 8, 8)))), 2,
         r"seg\.h5: dataset 'segments' \(the \(4, ny, nx\) segment stack\) not found; the file holds images \(2, 8, 8\)"),
    Case("reconstruct", "an HDF5 'segments' dataset of shape (3, ny, nx)",
         cli("reconstruct", "seg.h5", *GOOD, "-o", "out.h5", prepare=_h5("seg.h5", segments=lambda: segments()[:3])), 2,
         r"seg\.h5:segments: segments must be an array of shape \(4, ny, nx\).*got shape \(3, 8, 8\)"),
    Case("reconstruct", "a TIFF of three pages",
         cli("reconstruct", "seg.tif", *GOOD, "-o", "out.h5", prepare=_tiff("seg.tif", segments(dtype=np.uint16)[:3])),
         2, r"seg\.tif: a segments TIFF holds 4 pages in the order A, B, C, D, got 3 page\(s\)"),
    Case("reconstruct", "four image files of different shapes",
         cli("reconstruct", "a.npy,b.npy,c.npy,d.npy", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(*(_save(f"{n}.npy", segments()[i][: 4 if n == "b" else 8]) for i, n in
                                    enumerate("abcd")))), 2,
         r"the four segments must have one shape \(ny, nx\), got A \(8, 8\), B \(4, 8\), C \(8, 8\), D \(8, 8\)"),
    Case("reconstruct", "three image files", cli("reconstruct", "a.npy,b.npy,c.npy", *GOOD, "-o", "out.h5",
                                               prepare=_prepare_all(*(_save(f"{n}.npy", segments()[0]) for n in "abc"))),
         2, r"four single-image files A,B,C,D are needed .*got 3"),
    Case("reconstruct", "an HDF5 segments file cut in half",
         cli("reconstruct", "seg.h5", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_h5("seg.h5", segments=segments), _cut("seg.h5"))), 2,
         r"seg\.h5: not a readable HDF5 file \(.*truncated file"),
    Case("reconstruct", "a .npy file cut in half",
         cli("reconstruct", "seg.npy", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_save("seg.npy", segments()), _cut("seg.npy"))), 2,
         r"seg\.npy: not a readable \.npy array file"),
    Case("reconstruct", "a TIFF file cut in half",
         cli("reconstruct", "seg.tif", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_tiff("seg.tif", segments(dtype=np.uint16)), _cut("seg.tif"))), 2,
         r"seg\.tif: damaged TIFF file"),
    Case("reconstruct", "an existing output without --overwrite",
         cli("reconstruct", "seg.npy", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_save("seg.npy", segments()), _text("out.h5", "an earlier result"))), 2,
         r"out\.h5: output exists; give --overwrite to replace it"),
    Case("reconstruct", "a folder as the output", cli("reconstruct", "seg.npy", *GOOD, "-o", ".", "--overwrite",
                                                    prepare=_save("seg.npy", segments())), 2,
         r"\.: the output is a folder, not a regular file; it is never replaced, even with --overwrite"),
    Case("reconstruct", "an output in a folder that does not exist",
         cli("reconstruct", "seg.npy", *GOOD, "-o", "missing/out.h5", prepare=_save("seg.npy", segments())), 2,
         r"missing/out\.h5: folder missing does not exist"),
    Case("reconstruct", "a vacuum reference with no counts",
         cli("reconstruct", "seg.npy", *GOOD, "--reference", "vacuum.npy", "-o", "out.h5",
             prepare=_prepare_all(_save("seg.npy", segments()), _save("vacuum.npy", np.zeros((4, 8, 8))))), 2,
         r"--reference vacuum\.npy: vacuum reference segment means must be positive"),
    Case("reconstruct", "a thickness map of the wrong shape",
         cli("reconstruct", "seg.npy", "--kv", "200", "--alpha", "10", "--step", "1", "--thickness-map", "t.npy",
             *EDGES, "-o", "out.h5",
             prepare=_prepare_all(_save("seg.npy", segments()), _save("t.npy", np.full((3, 3), 50.0)))),
         2, r"thickness map shape \(3, 3\) does not match the scan \(8, 8\)"),
    Case("reconstruct", "a thickness map of another kind (.txt)",
         cli("reconstruct", "seg.npy", "--kv", "200", "--alpha", "10", "--step", "1", "--thickness-map", "t.txt",
             "-o", "out.h5", prepare=_prepare_all(_save("seg.npy", segments()), _text("t.txt"))), 2,
         r"`` dpcstem: error: t\.txt: thickness map must be \.npy, \.tif or \.h5, got '\.txt' ``$"),
    Case("reconstruct", "an HDF5 thickness map without a 'thickness' dataset",
         cli("reconstruct", "seg.npy", "--kv", "200", "--alpha", "10", "--step", "1", "--thickness-map", "t.h5",
             "-o", "out.h5", prepare=_prepare_all(_save("seg.npy", segments()), _h5("t.h5", map=np.ones((8, 8))))),
         2, r"`` dpcstem: error: t\.h5: no dataset 'thickness' \(nm\) in the file ``$"),
    Case("reconstruct", "an internal error (a reader failing on no fault of the input)", _internal_error, 1,
         r"dpcstem <version>: internal error: RuntimeError: simulated failure inside a reader / "
         r"Rerun with --debug for the traceback, and report it\."),

    # bias series, API
    Case("bias series", "a reference index at another bias", _series([0.0, 1.0], reference_index=1), InputDataError,
         r"reference_index 1 is not an acquisition at the reference bias 0 V \(those are \[0\]\)"),
    Case("bias series", "fewer biases than acquisitions", api(lambda d: reconstruct_series([segments()] * 3, [0, 1], CAL)),
         InputDataError, r"a bias series of 3 acquisitions needs 3 biases, got 2"),
    Case("bias series", "no acquisition at the reference bias", _series([1.0, 2.0]), InputDataError,
         r"the reference bias 0\.0 V is not among the biases \[1\.0, 2\.0\] V"),
    Case("bias series", "a NaN bias", _series([0.0, float("nan")]), InputDataError,
         r"biases must be finite numbers in V, got \[0\.0, nan\]"),
    Case("bias series", "acquisitions of different shapes", _series([0.0, 1.0], shapes=[(8, 8), (4, 8)]),
         InputDataError, r"the acquisitions of a bias series have different shapes: \[\(4, 4, 8\), \(4, 8, 8\)\]"),
    Case("bias series", "no acquisition", api(lambda d: reconstruct_series([], [], CAL)), InputDataError,
         r"a bias series needs at least one acquisition"),
    Case("bias series", "one registration shift for two acquisitions", _series([0.0, 1.0], shifts_px=[(0, 0)]),
         InputDataError, r"give one finite shift \(dy, dx\) in pixels per acquisition, 2 in all"),

    # dpcstem bias-series
    Case("bias-series", "files recording no bias and no --bias",
         cli("bias-series", "a.npy", "b.npy", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_save("a.npy", segments()), _save("b.npy", segments()))), 2,
         r"no bias recorded in a\.npy, b\.npy: give --bias V\.\.\. \(one per FILE\)"),
    Case("bias-series", "one file of two without a recorded bias, no --bias",
         cli("bias-series", "a.h5", "b.h5", *GOOD, "-o", "out.h5", prepare=_two_h5({"bias_v": 0.0}, {})), 2,
         r"no bias recorded in b\.h5: give --bias"),
    Case("bias-series", "a --bias that contradicts a file's",
         cli("bias-series", "a.h5", "b.h5", "--bias", "0", "2", *GOOD, "-o", "out.h5",
             prepare=_two_h5({"bias_v": 0.0}, {"bias_v": 1.0})),
         2, r"b\.h5 records a bias of 1 V but --bias gives 2 V for it: leave out --bias"),
    Case("bias-series", "a file whose bias_v is text",
         cli("bias-series", "a.h5", "b.h5", *GOOD, "-o", "out.h5",
             prepare=_two_h5({"bias_v": 0.0}, {"bias_v": "two volts"})), 2,
         r"bias series file 2 of 2: b\.h5: attribute 'bias_v' must be one number \(the applied bias in V\), "
         r"got 'two volts'"),
    Case("bias-series", "--reference-index at another bias",
         cli("bias-series", "a.npy", "b.npy", "--bias", "0", "1", "--reference-index", "1", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_save("a.npy", segments()), _save("b.npy", segments()))), 2,
         r"--reference-index 1 is not an acquisition at the reference bias 0 V"),
    Case("bias-series", "an interface leaving the scan",
         cli("bias-series", "a.npy", "b.npy", "--bias", "0", "1", "--interface", "1", "1", "30", "1", *GOOD,
             "-o", "out.h5", prepare=_prepare_all(_save("a.npy", segments()), _save("b.npy", segments()))), 2,
         r"--interface: point \(30, 1\) nm lies outside the scan"),
    Case("bias-series", "one --bias for two files",
         cli("bias-series", "a.npy", "b.npy", "--bias", "0", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_save("a.npy", segments()), _save("b.npy", segments()))), 2,
         r"a bias series of 2 acquisitions needs 2 biases, got 1"),
    Case("bias-series", "a --reference-bias no file has",
         cli("bias-series", "a.npy", "b.npy", "--bias", "1", "2", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_save("a.npy", segments()), _save("b.npy", segments()))), 2,
         r"the reference bias 0\.0 V is not among the biases \[1\.0, 2\.0\] V \(give --reference-bias\)"),
    Case("bias-series", "the second of three files damaged",
         cli("bias-series", "a.npy", "b.h5", "c.npy", "--bias", "0", "1", "2", *GOOD, "-o", "out.h5",
             prepare=_prepare_all(_save("a.npy", segments()), _text("b.h5"), _save("c.npy", segments()))), 2,
         r"bias series file 2 of 3: b\.h5: not a readable HDF5 file"),
    Case("bias-series", "an acquisition with no counts",
         cli("bias-series", "a.npy", "b.npy", "--bias", "0", "1", *GOOD, "--detector-rotation", "0", "--no-flip", "-o",
             "out.h5",
             prepare=_prepare_all(_save("a.npy", segments()), _save("b.npy", np.zeros((4, 8, 8))))), 2,
         r"b\.npy \(1 V\): no pixel could be reconstructed .*nothing was written"),

    # 4D-STEM, API
    Case("4D-STEM", "frames of three dimensions", api(lambda d: centre_of_mass(frames()[0])), InputDataError,
         r"4D-STEM frames must be \(scan_y, scan_x, ky, kx\) with no empty axis, got shape \(5, 16, 16\)"),
    Case("4D-STEM", "an empty scan", api(lambda d: centre_of_mass(frames()[:0])), InputDataError,
         r"no empty axis, got shape \(0, 5, 16, 16\)"),
    Case("4D-STEM", "complex frames", api(lambda d: centre_of_mass(frames().astype(complex))), InputDataError,
         r"must hold real numbers \(counts\), got dtype complex128"),
    Case("4D-STEM", "a mask of another shape than the frames",
         api(lambda d: centre_of_mass(frames(), mask=np.ones((3, 3), bool))), InputDataError,
         r"mask shape \(3, 3\) does not match the frames \(16, 16\)"),
    Case("4D-STEM", "all-zero frames", api(lambda d: bright_field_disc(frames(counts=0))), InputDataError,
         r"the first frames hold no counts: the bright-field disc cannot be found"),
    Case("4D-STEM", "a negative angular pixel size", api(lambda d: reconstruct_com(frames(), CAL, mrad_per_px=-0.5)),
         CalibrationError, r"mrad_per_px must be positive and finite \(mrad per detector pixel\), got -0\.5"),
    Case("4D-STEM", "a frame of NaN", _with_scratch(_nan_frame), "ok", r"masked and counted", nan_frame_masked),
    Case("4D-STEM", "uint16 frames at 65535 (256 × 256): summed intensity",
         api(lambda d: centre_of_mass(np.full((1, 1, 256, 256), 65535, np.uint16))), "ok", r"no overflow",
         intensity_exact),
    Case("4D-STEM", "uint16 frames at 65535 (512 × 512): virtual quadrant sums",
         _with_scratch(_virtual_segments_saturated), "ok", r"no overflow", segments_exact),

    # dpcstem com
    *[Case("com", what, cli("com", *args, prepare=prepare), 2, match) for what, args, prepare, match in [
        ("a raw file whose declared shape exceeds its size",
         ["f.raw", *COM, "--raw-shape", "4", "5", "32", "32", "--raw-dtype", "<u2", "-o", "out.h5"],
         lambda d: frames().tofile(d / "f.raw"),
         r"f\.raw: 10240 bytes, too small for shape \(4, 5, 32, 32\) of uint16 after 0 header bytes "
         r"\(40960 bytes needed\)"),
        ("a raw file without --raw-shape", ["f.raw", *COM, "-o", "out.h5"], lambda d: frames().tofile(d / "f.raw"),
         r"f\.raw: a raw binary file needs shape=\(scan_y, scan_x, ky, kx\) and dtype="),
        ("--raw-dtype c16 (complex)",
         ["f.raw", *COM, "--raw-shape", "4", "5", "16", "16", "--raw-dtype", "c16", "-o", "out.h5"],
         lambda d: frames().tofile(d / "f.raw"), r"f\.raw: raw dtype must be an integer or float type"),
        ("--raw-offset -10",
         ["f.raw", *COM, "--raw-shape", "4", "5", "16", "16", "--raw-dtype", "<u2", "--raw-offset", "-10", "-o",
          "out.h5"], lambda d: frames().tofile(d / "f.raw"),
         r"f\.raw: raw header offset must be zero or more bytes, got -10"),
        ("a stack of frames without --scan-shape", ["f.npy", *COM, "-o", "out.h5"],
         _save("f.npy", frames().reshape(20, 16, 16)),
         r"f\.npy: the file holds 20 frames without a scan shape; give scan_shape=\(scan_y, scan_x\) "
         r"\(--scan-shape NY NX\)"),
        ("--scan-shape that does not match the frames", ["f.npy", *COM, "--scan-shape", "3", "5", "-o", "out.h5"],
         _save("f.npy", frames().reshape(20, 16, 16)), r"f\.npy: scan_shape 3x5 = 15 frames, the file has 20"),
        ("--scan-shape -4 -5", ["f.npy", *COM, "--scan-shape", "-4", "-5", "-o", "out.h5"],
         _save("f.npy", frames().reshape(20, 16, 16)),
         r"f\.npy: scan_shape must be two positive sizes \(scan_y, scan_x\), got \(-4, -5\)"),
        ("one frame (2-D)", ["f.npy", *COM, "-o", "out.h5"], _save("f.npy", frames()[0, 0]),
         r"f\.npy: frames of shape \(16, 16\); 4D-STEM data is \(scan_y, scan_x, ky, kx\)"),
        ("all-zero frames", ["f.npy", *COM, "-o", "out.h5"], _save("f.npy", frames(counts=0)),
         r"the first frames hold no counts"),
        ("all-NaN frames", ["f.npy", *COM, "-o", "out.h5"], _save("f.npy", np.full((4, 5, 16, 16), np.nan, np.float32)),
         r"the first frames hold no counts"),
        ("--mrad-per-px 0", ["f.npy", "--kv", "200", "--step", "1", "--thickness", "100", "--mrad-per-px", "0",
                             "-o", "out.h5"], _save("f.npy", frames()),
         r"--mrad-per-px: mrad_per_px must be positive and finite, got 0\.0"),
        ("no angular pixel size", ["f.npy", "--kv", "200", "--step", "1", "--thickness", "100", "-o", "out.h5"],
         _save("f.npy", frames()), r"the detector's angular pixel size is needed: give --mrad-per-px X"),
        ("--mask-radius -2", ["f.npy", *COM, "--mask-radius", "-2", "-o", "out.h5"], _save("f.npy", frames()),
         r"argument --mask-radius: expected a radius in detector pixels, above 0 and at most 1e\+06, got -2"),
        ("--workers 0", ["f.npy", *COM, "--workers", "0", "-o", "out.h5"], _save("f.npy", frames()),
         r"workers must be a whole number of at least 1, got 0"),
        ("a --reference of another scan shape", ["f.npy", *COM, "--reference", "r.npy", "-o", "out.h5"],
         _prepare_all(_save("f.npy", frames()), _save("r.npy", frames()[:2])),
         r"--reference r\.npy: shape \(2, 5, 16, 16\) differs from the data's \(4, 5, 16, 16\)"),
        ("a --response measured on segments", ["f.npy", *COM, "--response", "seg.npz", "-o", "out.h5"],
         _prepare_all(_save("f.npy", frames()), _segment_response("seg.npz")),
         r"the empirical response \(seg\.npz\) was measured on the segments signal, not on com"),
        ("a text file named .mib", ["f.mib", *COM, "-o", "out.h5"], _text("f.mib"),
         r"f\.mib: cannot read it as a \.mib 4D-STEM file"),
        ("a text file named .hspy", ["f.hspy", *COM, "-o", "out.h5"], _text("f.hspy"),
         r"f\.hspy: not a readable HDF5 file"),
        ("an HDF5 file without a 4-D dataset", ["f.h5", *COM, "-o", "out.h5"], _h5("f.h5", image=np.zeros((8, 8))),
         r"f\.h5: no 4-D dataset \(scan_y, scan_x, ky, kx\) in the file"),
        ("an angular pixel size 1000 times too large (α measured above 200 mrad)",
         ["f.npy", "--kv", "200", "--step", "1", "--thickness", "100", "--mrad-per-px", "1000", "-o", "out.h5"],
         _save("f.npy", frames()), r"alpha measured from the data as .* mrad \(give --alpha to override it\): "
                                   r"alpha_mrad .* is outside 0\.1 to 200"),
        ("--cutoff 0", ["f.npy", *COM, "--charge-method", "spectral", "--cutoff", "0", "-o", "out.h5"],
         _save("f.npy", frames()), r"--cutoff must be a positive number of cycles/nm .*got 0\.0"),
    ]],

    # dpcstem thickness
    *[Case("thickness", what, cli("thickness", *args, prepare=prepare), 2, match) for what, args, prepare, match in [
        ("no mean-free-path option", ["s.npy", "--energy-axis", "-2", "0.1", "--kv", "200", "--beta", "10"],
         _save("s.npy", spectrum()), r"give exactly one of --composition FORMULA, --mean-energy-loss EV or "
                                     r"--density G_CM3 for the mean free path, got none"),
        ("a .npy spectrum without --energy-axis", ["s.npy", *THICK], _save("s.npy", spectrum()),
         r"s\.npy: a \.npy array has no energy axis; give --energy-axis OFFSET_EV STEP_EV"),
        ("--kv 0", ["s.npy", "--energy-axis", "-2", "0.1", "--kv", "0", "--beta", "10", "--composition", "LiCoO2"],
         _save("s.npy", spectrum()), r"kv must be positive and finite \(in kV\), got 0\.0"),
        ("--beta -10", ["s.npy", "--energy-axis", "-2", "0.1", "--kv", "200", "--beta", "-10", "--composition",
                        "LiCoO2"], _save("s.npy", spectrum()), r"beta_mrad must be positive and finite"),
        ("an energy step of 0", ["s.npy", "--energy-axis", "-2", "0", *THICK], _save("s.npy", spectrum()),
         r"the energy axis needs a finite offset and a positive step in eV, got \(-2\.0, 0\.0\)"),
        ("an unknown element", ["s.npy", "--energy-axis", "-2", "0.1", "--kv", "200", "--beta", "10",
                                "--composition", "Xx2"], _save("s.npy", spectrum()),
         r"composition 'Xx2': unknown element symbol 'Xx'"),
        ("a spectrum of zeros", ["s.npy", "--energy-axis", "-2", "0.1", *THICK], _save("s.npy", np.zeros(200)),
         r"s\.npy: no positive zero-loss intensity found within ±5 eV of 0 eV"),
        ("a spectrum of NaN", ["s.npy", "--energy-axis", "-2", "0.1", *THICK], _save("s.npy", np.full(200, np.nan)),
         r"s\.npy: no positive zero-loss intensity found"),
        ("an empty spectrum", ["s.npy", "--energy-axis", "-2", "0.1", *THICK], _save("s.npy", np.zeros(0)),
         r"s\.npy: a spectrum needs at least 3 energy channels, got shape \(0,\)"),
        ("a .txt file", ["s.txt", *THICK], _text("s.txt"), r"s\.txt: \.txt is not a format RosettaSciIO reads"),
        ("a text file named .dm3", ["s.dm3", *THICK], _text("s.dm3"), r"s\.dm3: cannot read it as a spectrum"),
        ("-o with a name not ending in .h5", ["s.npy", "--energy-axis", "-2", "0.1", *THICK, "-o", "t.txt"],
         _save("s.npy", spectrum()), r"t\.txt: the thickness map is written as HDF5; give a name ending in \.h5"),
        ("-o for a single spectrum", ["s.npy", "--energy-axis", "-2", "0.1", *THICK, "-o", "t.h5"],
         _save("s.npy", spectrum()), r"s\.npy: -o writes a thickness map, but this is a single spectrum"),
        ("--density 0", ["s.npy", "--energy-axis", "-2", "0.1", "--kv", "200", "--beta", "10", "--density", "0"],
         _save("s.npy", spectrum()), r"density_g_cm3 must be positive and finite"),
    ]],

    # outputs (DESIGN.md §4); a full disk, signals and racing writers: tests/contracts/test_outputs.py
    *[Case("outputs", what, cli(*args, prepare=_prepare_all(_output_inputs, *extra)), 2, match)
      for what, args, extra, match in [
        ("-o the segments file, with --overwrite", ["reconstruct", "seg.h5", *GOOD, "-o", "seg.h5", "--overwrite"], (),
         r"seg\.h5: the output is an input; it is never replaced, even with --overwrite"),
        ("-o a symbolic link to the segments, with --overwrite",
         ["reconstruct", "seg.h5", *GOOD, "-o", "link.h5", "--overwrite"], (_symlink("seg.h5", "link.h5"),),
         r"link\.h5: the output is an input \(the same file as input seg\.h5\)"),
        ("-o a hard link to a bias-series file, with --overwrite",
         ["bias-series", "seg.h5", "b.h5", "--bias", "0", "1", *GOOD, "-o", "hard.h5", "--overwrite"],
         (_hard_link("b.h5", "hard.h5"),), r"hard\.h5: the output is an input \(the same file as input b\.h5\)"),
        ("-o the --reference vacuum, with --overwrite",
         ["reconstruct", "seg.h5", *GOOD, "--reference", "vacuum.h5", "-o", "vacuum.h5", "--overwrite"], (),
         r"vacuum\.h5: the output is an input"),
        ("-o the 4D file of com, with --overwrite", ["com", "f.h5", *COM, "-o", "f.h5", "--overwrite"], (),
         r"f\.h5: the output is an input"),
        ("-o /dev/null, with --overwrite", ["reconstruct", "seg.h5", *GOOD, "-o", "/dev/null", "--overwrite"], (),
         r"/dev/null: the output is a character device, not a regular file; it is never replaced"),
        ("-o a FIFO, with --overwrite", ["reconstruct", "seg.h5", *GOOD, "-o", "fifo.h5", "--overwrite"],
         (_fifo("fifo.h5"),), r"fifo\.h5: the output is a FIFO \(named pipe\), not a regular file"),
        ("-o a dangling symbolic link, without --overwrite", ["reconstruct", "seg.h5", *GOOD, "-o", "dangling.h5"],
         (_symlink("nowhere.h5", "dangling.h5"),), r"dangling\.h5: a symbolic link exists; give --overwrite"),
        ("-o in a folder that is a file", ["reconstruct", "seg.h5", *GOOD, "-o", "seg.h5/out.h5"], (),
         r"seg\.h5/out\.h5: seg\.h5 is not a folder"),
        ("-o a name of 300 characters", ["reconstruct", "seg.h5", *GOOD, "-o", "x" * 296 + ".h5"], (),
         r"x+…: the file name is too long \(299 bytes; this filesystem allows 255\)"),
        ("-o out.tif (not what the writer produces)", ["reconstruct", "seg.h5", *GOOD, "-o", "out.tif"], (),
         r"out\.tif: the result is written as HDF5; give a name ending in \.h5"),
        ("demo --out an existing file", ["demo", "--out", "seg.h5"], (),
         r"seg\.h5: --out must be a folder, and this is a file"),
    ]],

    # the command line itself
    *[Case("command line", what, cli(*args, prepare=_prepare_all(_output_inputs)), 2, match)
      for what, args, match in [
        ("a file name that is not UTF-8", ["reconstruct", "seg\udcff.h5", *GOOD, "-o", "out.h5"],
         r"seg\\xff\.h5: the name is not valid UTF-8"),
        ("--interface 0 0 1e300 5", ["reconstruct", "seg.h5", *GOOD, "--interface", "0", "0", "1e300", "5",
                                     "-o", "out.h5"], r"argument --interface: expected a position in nm"),
        ("--half-range 0", ["reconstruct", "seg.h5", *GOOD, "--interface", "0", "0", "5", "5", "--half-range", "0",
                            "-o", "out.h5"], r"argument --half-range: expected a length in nm, above 0"),
        ("--dose 1e-300", ["reconstruct", "seg.h5", *GOOD, "--dose", "1e-300", "-o", "out.h5"],
         r"argument --dose: expected electrons per probe position, at least 1"),
        ("--counts-per-electron 1e300", ["reconstruct", "seg.h5", *GOOD, "--counts-per-electron", "1e300",
                                         "-o", "out.h5"], r"argument --counts-per-electron: expected detector counts"),
        ("--mask-radius 1e300", ["com", "f.h5", *COM, "--mask-radius", "1e300", "-o", "out.h5"],
         r"argument --mask-radius: expected a radius in detector pixels"),
        ("a missing option value (--kv at the end)", ["reconstruct", "seg.h5", "--kv"],
         r"dpcstem reconstruct: argument --kv: expected one argument \(see dpcstem reconstruct --help\)"),
        ("an unknown subcommand", ["recon", "seg.h5"], r"dpcstem: error: argument COMMAND: invalid choice: 'recon'"),
    ]],
    Case("command line", "a bias series of 4 acquisitions of 64 x 64 with DPCSTEM_MEMORY_LIMIT=1M",
         _with_env("DPCSTEM_MEMORY_LIMIT", "1M", cli("bias-series", *[f"s{i}.npy" for i in range(4)], "--bias", "0", "1",
                                                     "2", "3", *GOOD, "-o", "out.h5",
                                                     prepare=_prepare_all(*[_save(f"s{i}.npy", segments((64, 64)))
                                                                            for i in range(4)]))), 2,
         r"a bias series of 4 acquisitions of 64 x 64 needs .* GiB but only .* GiB of memory is free "
         r"\(DPCSTEM_MEMORY_LIMIT\)"),
]


def _huge(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("segments", shape=(4, 200000, 200000), dtype=np.float64, chunks=(1, 256, 256))
    return path


_OUTCOMES = {}


def run_case(case, workspace) -> Outcome:
    """Run a case once (in its own folder, as the working directory) and keep its outcome."""
    if case.id in _OUTCOMES:
        return _OUTCOMES[case.id]
    folder = workspace / case.id
    folder.mkdir()
    previous = Path.cwd()
    os.chdir(folder)
    try:
        outcome = case.run(folder)
        if outcome.kind == "ok" and case.describe is not None:
            scratch = getattr(outcome, "scratch", {})
            outcome.text = case.describe(outcome.value, scratch)
    finally:
        os.chdir(previous)
    outcome.text = _plain(outcome.text, folder)
    _OUTCOMES[case.id] = outcome
    return outcome


def _plain(text, folder):
    """The outcome without what differs from run to run: paths, free memory, the version."""
    text = text.replace(str(folder.resolve()) + os.sep, "").replace(str(folder) + os.sep, "")
    text = re.sub(r"\d+\.\d+ GiB", "<n> GiB", text)
    text = text.replace(f"dpcstem {dpcstem.__version__}", "dpcstem <version>")
    return text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("bad_inputs")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, workspace):
    outcome = run_case(case, workspace)
    if isinstance(case.expect, type):
        assert outcome.kind == "raised", f"expected {case.expect.__name__}, got {outcome.kind}: {outcome.text}"
        assert isinstance(outcome.error, DPCError)
        assert isinstance(outcome.error, case.expect), outcome.text
        assert re.search(case.match, str(outcome.error)), (case.match, str(outcome.error))
        assert "\n" not in str(outcome.error)
    elif case.expect == "ok":
        assert outcome.kind == "ok", outcome.text
        assert re.search(case.match, outcome.text), outcome.text
    else:
        assert outcome.status == case.expect, outcome.text
        lines = outcome.stderr.splitlines()
        if case.expect == 2:
            assert len(lines) == 1 and lines[0].startswith("dpcstem: error: "), outcome.stderr
        else:
            assert len(lines) == 2 and "internal error" in lines[0] and "--debug" in lines[1]
        assert re.search(case.match, outcome.text), (case.match, outcome.text)


@pytest.mark.parametrize("what, inputs", [("the second of three files damaged", ["a.npy", "b.h5", "c.npy"]),
                                          ("an acquisition with no counts", ["a.npy", "b.npy"])])
def test_bias_series_that_fails_on_one_file_writes_nothing(what, inputs, workspace):
    case = next(c for c in CASES if c.what == what and c.section == "bias-series")
    run_case(case, workspace)
    assert sorted(p.name for p in (workspace / case.id).iterdir()) == inputs  # no result, no temporary file


def test_internal_error_shows_the_traceback_with_debug(tmp_path, monkeypatch):
    import dpcstem.io.segments as module

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure inside a reader")

    monkeypatch.setattr(module, "read_segments", broken)
    monkeypatch.chdir(tmp_path)
    np.save("seg.npy", segments())
    with pytest.raises(RuntimeError, match="simulated failure inside a reader"):
        main(["--debug", "reconstruct", "seg.npy", *GOOD, "-o", "out.h5"])
    assert not (tmp_path / "out.h5").exists()


def test_every_error_class_is_a_dpc_error():
    for cls in (InputDataError, CalibrationError, UnreadableFileError, MissingMetadataError, OutputExistsError,
                InsufficientMemoryError):
        assert issubclass(cls, DPCError)
    assert str(MissingMetadataError("a.h5: no dataset 'x'")) == "a.h5: no dataset 'x'"  # not quoted like a KeyError


def test_saturated_segments_are_masked_and_counted():
    seg = segments(dtype=np.uint16, scale=3e4)
    seg[0, 2, 3] = 65535
    seg[2, 5, 5] = 65535
    result = reconstruct(seg, CAL)
    assert result.attrs["n_saturated"] == 2
    assert not result.valid[2, 3] and not result.valid[5, 5]
    assert result.valid.sum() == 62  # the saturated pixels only


def test_virtual_segments_of_saturated_uint16_frames_do_not_wrap():
    labels = quadrant_labels((512, 512), (255.5, 255.5), 400)
    values = virtual_segments(np.full((1, 1, 512, 512), 65535, np.uint16), labels)
    expected = np.array([(labels == k).sum() for k in (1, 2, 3, 4)], float) * 65535
    np.testing.assert_array_equal(values[:, 0, 0], expected)


def test_bias_series_names_the_acquisition_that_cannot_be_reconstructed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("a.npy", segments())
    np.save("b.npy", np.zeros((4, 8, 8)))
    assert main(["bias-series", "a.npy", "b.npy", "--bias", "0", "1", *GOOD, "--detector-rotation", "0", "--no-flip",
                 "-o", "out.h5"]) == 2
    assert re.search(r"b\.npy|file 2 of 2|1(\.0)? V", capsys.readouterr().err.splitlines()[-1])


# -- known faults, outside the files these tests may change ---------------------------------

def test_bias_series_refuses_files_recording_different_calibrations(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_h5(tmp_path / "a.h5", {"bias_v": 0.0, "kv": 200.0, "step_x_nm": 1.0}, segments=segments())
    write_h5(tmp_path / "b.h5", {"bias_v": 1.0, "kv": 300.0, "step_x_nm": 2.0}, segments=segments())
    status = main(["bias-series", "a.h5", "b.h5", "--alpha", "10", "--thickness", "100", *EDGES, "-o", "out.h5"])
    assert status == 2
    assert re.search(r"b\.h5.*kv", capsys.readouterr().err)


@pytest.mark.parametrize("shape", [(1, 1), (1, 8)])
def test_scan_too_small_for_a_divergence_is_named(shape):
    with pytest.raises(InputDataError, match=r"neighbour|at least 2"):
        reconstruct(segments()[:, : shape[0], : shape[1]], CAL)


@pytest.mark.parametrize("option", ["valid", "potential_reference"])
def test_masks_of_the_wrong_shape_are_named(option):
    with pytest.raises(InputDataError, match=option):
        mask = np.ones((2, 2), bool)
        given = dict(valid=mask) if option == "valid" else dict(options=ReconstructionOptions(potential_reference=mask))
        reconstruct_deflection(np.zeros((3, 3)), np.zeros((3, 3)), CAL, **given)


@pytest.mark.parametrize("shift", [(1.0,), (np.nan, 0.0)])
def test_malformed_registration_shift_is_named(shift):
    with pytest.raises(InputDataError, match=r"shift"):
        reconstruct_series([segments(), segments()], [0.0, 1.0], CAL, shifts_px=[(0.0, 0.0), shift])


@pytest.mark.parametrize("cutoff", [-1.0, 0.0, float("nan")])
def test_spectral_cutoff_must_be_positive(cutoff):
    with pytest.raises(DPCError, match=r"cutoff"):
        reconstruct(segments(), CAL, options=ReconstructionOptions(charge_method="spectral", cutoff=cutoff))


# -- the table --------------------------------------------------------------------------------

def table(outcomes) -> str:
    lines = [
        "# Bad inputs and what each gets",
        "",
        "Generated by `tests/contracts/test_bad_inputs.py` from the outcomes of its run (do not edit by hand;",
        "`DPCSTEM_UPDATE_DOCS=1 python -m pytest tests/contracts/test_bad_inputs.py` rewrites it, and the test",
        "fails when this file differs from what the code does). *API* is a call of the Python",
        "library; *CLI* is the `dpcstem` command, whose one line on stderr is shown with its exit status",
        "(2 for a bad input, 1 for an internal error). File names are relative to the folder the case",
        "ran in; `<n> GiB` stands for the free memory of the machine.",
        "",
        "Truncated and corrupted files of every supported format are tried more widely by",
        "`tests/contracts/test_corrupt_files.py` (each file cut at many points and with bytes flipped). A full disk,",
        "signals while an output is written, two commands racing for one output, read-only folders and the",
        "umask are tried through the command line in subprocesses by `tests/contracts/test_outputs.py` and",
        "`tests/contracts/test_interrupt.py`.",
    ]
    sections = []
    for case in CASES:
        if case.section not in sections:
            sections.append(case.section)
    counts = {}
    for case in CASES:
        outcome = outcomes[case.id]
        key = type(outcome.error).__name__ if outcome.kind == "raised" else (
            f"exit {outcome.status}" if outcome.kind == "exit" else "handled (masked or exact)")
        counts[key] = counts.get(key, 0) + 1
    lines += ["", f"{len(CASES)} cases: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + "."]
    for section in sections:
        lines += ["", f"## {section}", "", "| bad input | via | what it gets |", "|---|---|---|"]
        for case in CASES:
            if case.section == section:
                text = outcomes[case.id].text.replace("|", "\\|")
                lines.append(f"| {case.what} | {case.via} | {text} |")
    return "\n".join(lines) + "\n"


def test_table_of_bad_inputs_is_current(workspace):
    outcomes = {case.id: run_case(case, workspace) for case in CASES}
    text = table(outcomes)
    if UPDATE:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
    assert DOC.is_file(), f"{DOC} is missing: run with DPCSTEM_UPDATE_DOCS=1 to write it"
    assert DOC.read_text(encoding="utf-8") == text, (
        f"{DOC} differs from what the code does now: review the change and rerun with DPCSTEM_UPDATE_DOCS=1")


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
