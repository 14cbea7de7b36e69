"""Never silently wrong: each path a user types gives the right number, a refusal or a warning.

Every test drives the command line in a subprocess as a user would, on an acquisition made
with a known answer, and holds the result to it (the numbered cases of DESIGN.md §0's list:
detector geometry, descan, the rotation's 180° branch, dark offsets, values outside
physics, conflicts between a file and the user, the options com shares).
"""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from dpcstem import Calibration, physics
from dpcstem.io import write_segments
from dpcstem.simulate import MottSchottky, deflection_from_truth, layer_truth, segments_from_deflection
from dpcstem.simulate.fourd import write_frames

KV, ALPHA, STEP, THICKNESS = 200.0, 1.0, 0.5, 131.0
SHAPE = (24, 48)
GIVEN = ["--kv", str(KV), "--alpha", str(ALPHA), "--step", str(STEP), "--thickness", str(THICKNESS)]
NO_EDGES = ["--collection", "0", "inf"]


def dpcstem(*args):
    return subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], capture_output=True, text=True)


def refused(run, *fragments):
    """Exit 2 with one line on stderr naming each fragment."""
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpcstem: error:"), run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def warned(run, *fragments):
    """Exit 0 with a one-line warning on stderr naming each fragment."""
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("dpcstem: warning:")]
    assert any(all(f in line for f in fragments) for line in lines), run.stderr


def attrs_and(path, *names):
    with h5py.File(path, "r") as f:
        return dict(f.attrs), [f[name][()] for name in names]


@pytest.fixture(scope="module")
def layer():
    """A depletion layer across x at the scan centre (field along x), and its truth."""
    truth = layer_truth(MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=2.0), SHAPE, STEP,
                        normal_deg=0.0)
    return truth, deflection_from_truth(truth, KV, THICKNESS)


def peak_error(path, truth, valid_name="valid"):
    """Error of the peak of the column-mean field profile, as a fraction of the true peak."""
    _, (fx, ok) = attrs_and(path, "field_x", valid_name)
    got = np.nanmean(np.where(ok.astype(bool), fx, np.nan), axis=0)
    want = truth.field_x.mean(axis=0)
    return abs(got[np.argmax(np.abs(want))] - want[np.argmax(np.abs(want))]) / np.abs(want).max()


# -- 1. detector geometry ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def df4(layer, tmp_path_factory):
    """A DF4-like detector: collection 0.6–3.4 mrad, α 1.05 mrad, ψ 30°."""
    truth, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=1.05, step_x_nm=STEP, collection_inner_mrad=0.6,
                      collection_outer_mrad=3.4, detector_rotation_deg=30.0)
    path = tmp_path_factory.mktemp("df4") / "df4.npy"
    np.save(path, segments_from_deflection(tx, ty, cal))
    return path, truth


def test_a_geometry_the_file_does_not_record_is_required(df4, tmp_path):
    path, _ = df4
    options = ["--kv", KV, "--alpha", 1.05, "--step", STEP, "--thickness", THICKNESS]
    refused(dpcstem("reconstruct", path, *options, "-o", tmp_path / "o.h5"), "--collection", "0 inf")
    assert not (tmp_path / "o.h5").exists()


def test_the_df4_geometry_given_gives_the_peak_field(df4, tmp_path):
    path, truth = df4
    run = dpcstem("reconstruct", path, "--kv", KV, "--alpha", 1.05, "--step", STEP, "--thickness", THICKNESS,
                  "--collection", 0.6, 3.4, "--detector-rotation", 30, "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    assert peak_error(tmp_path / "o.h5", truth) < 0.02


def test_an_assumed_rotation_is_printed_with_its_curl_and_warned(df4, tmp_path):
    path, _ = df4
    run = dpcstem("reconstruct", path, "--kv", KV, "--alpha", 1.05, "--step", STEP, "--thickness", THICKNESS,
                  "--collection", 0.6, 3.4, "-o", tmp_path / "o.h5")
    warned(run, "detector rotation", "--fit-rotation", "--detector-rotation")
    assert "assumed detector rotation 0° and flip off" in run.stdout and "rms curl/div" in run.stdout


def test_every_calibration_value_has_its_source_in_the_file(layer, tmp_path):
    _, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    write_segments(tmp_path / "a.h5", segments_from_deflection(tx, ty, cal), {"kv": KV, "alpha_mrad": ALPHA})
    run = dpcstem("reconstruct", tmp_path / "a.h5", "--step", STEP, "--thickness", THICKNESS, *NO_EDGES,
                  "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    attrs, _ = attrs_and(tmp_path / "o.h5")
    expected = {"kv": "file", "alpha_mrad": "file", "step_x_nm": "user", "step_y_nm": "user", "thickness_nm": "user",
                "collection_inner_mrad": "user", "collection_outer_mrad": "user", "detector_rotation_deg": "default",
                "flip": "default", "eps_r": "default", "descan": "none", "offsets": "default", "gains": "default"}
    assert {k: attrs[f"{k}_source"] for k in expected} == expected


def test_an_outer_edge_the_file_does_not_record_is_printed_as_assumed(layer, tmp_path):
    _, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    write_segments(tmp_path / "a.h5", segments_from_deflection(tx, ty, cal), {"collection_inner_mrad": 0.0})
    run = dpcstem("reconstruct", tmp_path / "a.h5", *GIVEN, "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    assert "collection angles 0 mrad to no outer edge (assumed" in run.stdout and "--collection" in run.stdout
    attrs, _ = attrs_and(tmp_path / "o.h5")
    assert attrs["collection_inner_mrad_source"] == "file" and attrs["collection_outer_mrad_source"] == "default"


# -- 2. descan ----------------------------------------------------------------------------------

def test_reconstruct_says_no_descan_was_removed_and_a_region_removes_it(layer, tmp_path):
    truth, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    descan = 0.3 * np.abs(tx).max()  # a uniform descan, a third of the layer's peak deflection
    np.save(tmp_path / "s.npy", segments_from_deflection(tx + descan, ty, cal))
    run = dpcstem("reconstruct", tmp_path / "s.npy", *GIVEN, *NO_EDGES, "-o", tmp_path / "none.h5")
    assert run.returncode == 0 and "descan: none removed" in run.stdout and "--descan-region" in run.stdout
    assert peak_error(tmp_path / "none.h5", truth) > 0.2  # what the line warns of
    run = dpcstem("reconstruct", tmp_path / "s.npy", *GIVEN, *NO_EDGES, "--descan-region", 0, 0, 4, 12,
                  "--descan-order", 1, "-o", tmp_path / "region.h5")
    assert run.returncode == 0, run.stderr
    attrs, _ = attrs_and(tmp_path / "region.h5")
    assert attrs["descan_source"] == "region"
    assert peak_error(tmp_path / "region.h5", truth) < 0.02


def test_reconstruct_warns_of_a_plane_across_the_scan_that_no_descan_removed(layer, tmp_path):
    """A linear descan (the beam walking with the scan position) left in the map is warned, with the
    field it makes in V/m; the same layer without it is not."""
    truth, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    walk = 0.6 * np.abs(tx).max() * (xx / SHAPE[1] + 0.5 * yy / SHAPE[0])
    np.save(tmp_path / "walk.npy", segments_from_deflection(tx + walk, ty - 0.5 * walk, cal))
    run = dpcstem("reconstruct", tmp_path / "walk.npy", *GIVEN, *NO_EDGES, "-o", tmp_path / "walk.h5")
    warned(run, "descan: the deflection holds a plane across the scan", "V/m", "--reference", "--descan-region")
    attrs, (fx, fy) = attrs_and(tmp_path / "walk.h5", "field_x", "field_y")
    error = np.nanmax(np.hypot(fx - truth.field_x, fy - truth.field_y))
    assert 0.5 * attrs["descan_plane_field_v_per_m"] < error < 1.5 * attrs["descan_plane_field_v_per_m"]
    np.save(tmp_path / "still.npy", segments_from_deflection(tx, ty, cal))
    run = dpcstem("reconstruct", tmp_path / "still.npy", *GIVEN, *NO_EDGES, "-o", tmp_path / "still.h5")
    assert run.returncode == 0 and "descan: the deflection holds a plane" not in run.stderr, run.stderr
    assert "descan check: no plane across the scan that stands out" in run.stdout


@pytest.fixture(scope="module")
def junction_4d(layer, tmp_path_factory):
    _, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP, thickness_nm=THICKNESS)
    path = tmp_path_factory.mktemp("junction") / "frames.h5"
    return write_frames(path, tx, ty, cal, frame_shape=(32, 32), mrad_per_px=0.1, noise=False)


def test_com_keeps_the_junction_field_by_default(layer, junction_4d, tmp_path):
    truth, _ = layer
    run = dpcstem("com", junction_4d, "--thickness", THICKNESS, "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    assert "descan: none removed" in run.stdout
    assert peak_error(tmp_path / "o.h5", truth) < 0.03
    attrs, _ = attrs_and(tmp_path / "o.h5")
    assert attrs["descan_source"] == "none"


def test_the_series_fits_a_descan_region_once_on_the_reference_acquisition(tmp_path, layer):
    _, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    for bias in (0.0, 1.0):  # a descan of 0.05 mrad along x in both
        write_segments(tmp_path / f"b{bias}.h5", segments_from_deflection(tx + 0.05, ty, cal), {"bias_v": bias})
    run = dpcstem("bias-series", tmp_path / "b0.0.h5", tmp_path / "b1.0.h5", *GIVEN, *NO_EDGES, "--no-register",
                  "--descan-region", 0, 0, 4, 12, "--descan-order", 1, "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    assert "fitted over the descan region of the reference acquisition" in run.stdout
    attrs, (dx,) = attrs_and(tmp_path / "o.h5", "deflection_x")
    assert attrs["descan_source"] == "region"
    for i in (0, 1):
        np.testing.assert_allclose(dx[i], tx, atol=0.02 * np.abs(tx).max())


# -- 3. the 180° branch of the fitted rotation ------------------------------------------------

@pytest.fixture(scope="module")
def negative_blob(tmp_path_factory):
    """Compact negative charge (the skew picks the wrong branch), on a detector at 200° with flip."""
    y, x = np.mgrid[0:32, 0:32] * STEP
    r2 = (x - 8) ** 2 + (y - 8) ** 2
    tx, ty = 0.02 * (x - 8) * np.exp(-r2 / 8), 0.02 * (y - 8) * np.exp(-r2 / 8)  # outward: a potential dip
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP, detector_rotation_deg=200.0, flip=True)
    path = tmp_path_factory.mktemp("blob") / "blob.npy"
    np.save(path, segments_from_deflection(tx, ty, cal))
    return path, tx, ty


def test_a_guessed_branch_is_warned_and_a_known_sign_settles_it(negative_blob, tmp_path):
    path, tx, ty = negative_blob
    run = dpcstem("reconstruct", path, *GIVEN, *NO_EDGES, "--fit-rotation", "-o", tmp_path / "guess.h5")
    warned(run, "180° branch", "guess", "--charge-sign-region")
    run = dpcstem("reconstruct", path, *GIVEN, *NO_EDGES, "--fit-rotation", "--charge-sign-region", 7, 7, 9, 9, "-",
                  "-o", tmp_path / "sign.h5")
    assert run.returncode == 0, run.stderr
    attrs, (dx, ok) = attrs_and(tmp_path / "sign.h5", "deflection_x", "valid")
    assert attrs["detector_rotation_deg"] == pytest.approx(200.0, abs=0.5) and attrs["flip"]
    assert attrs["detector_rotation_deg_source"] == "fitted" and attrs["rotation_fit_polarity"] == "charge sign"
    ok = ok.astype(bool)
    np.testing.assert_allclose(dx[ok], tx[ok], atol=0.02 * np.abs(tx).max())


def test_no_flip_with_fit_rotation_fixes_the_flip(negative_blob, tmp_path):
    path, _, _ = negative_blob
    run = dpcstem("reconstruct", path, *GIVEN, *NO_EDGES, "--fit-rotation", "--no-flip", "--charge-sign-region",
                  7, 7, 9, 9, "-", "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    attrs, _ = attrs_and(tmp_path / "o.h5")
    assert not attrs["flip"] and attrs["flip_source"] == "user"


# -- 4. dark offsets ----------------------------------------------------------------------------

def test_a_black_level_is_set_by_offsets_or_a_dark_scan(layer, tmp_path):
    truth, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    black = 0.1 * 0.25  # 10 % of a segment's counts (the disc's quarter at a dose of 1)
    np.save(tmp_path / "s.npy", segments_from_deflection(tx, ty, cal, offsets=[black] * 4))
    np.save(tmp_path / "dark.npy", np.full((4, 8, 8), black))
    run = dpcstem("reconstruct", tmp_path / "s.npy", *GIVEN, *NO_EDGES, "-o", tmp_path / "default.h5")
    assert run.returncode == 0 and "segment offsets: 0 counts assumed" in run.stdout and "--dark" in run.stdout
    assert peak_error(tmp_path / "default.h5", truth) > 0.05  # the black level the line names
    for option in (["--offsets", black, black, black, black], ["--dark", tmp_path / "dark.npy"]):
        out = tmp_path / f"{option[0][2:]}.h5"
        run = dpcstem("reconstruct", tmp_path / "s.npy", *GIVEN, *NO_EDGES, *option, "-o", out)
        assert run.returncode == 0, run.stderr
        assert peak_error(out, truth) < 0.01
        attrs, _ = attrs_and(out)
        assert attrs["offsets_source"] == {"--offsets": "user", "--dark": "dark"}[option[0]]


# -- 5. values outside physics --------------------------------------------------------------------

@pytest.mark.parametrize("option, value, fragment", [
    ("--thickness", "1.31e-7", "thickness_nm 1.31e-07 is outside 1 to 5000"),
    ("--thickness", "1e-300", "thickness_nm"),
    ("--thickness", "131000", "µm"),
    ("--alpha", "0.00105", "alpha_mrad 0.00105 is outside 0.1 to 200"),
    ("--step", "5e-10", "step_x_nm"),
])
def test_a_unit_slip_is_refused_naming_it(layer, tmp_path, option, value, fragment):
    _, (tx, ty) = layer
    np.save(tmp_path / "s.npy", segments_from_deflection(tx, ty, Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)))
    options = list(GIVEN)
    options[options.index(option) + 1] = value
    refused(dpcstem("reconstruct", tmp_path / "s.npy", *options, *NO_EDGES, "-o", tmp_path / "o.h5"), option, fragment)
    assert not (tmp_path / "o.h5").exists()


def test_a_field_beyond_physics_is_warned(tmp_path):
    cal = Calibration(kv=KV, alpha_mrad=10.0, step_x_nm=STEP)
    y, x = np.mgrid[0:16, 0:16]
    np.save(tmp_path / "s.npy", segments_from_deflection(np.sin(x / 3.0), np.cos(y / 3.0), cal))
    run = dpcstem("reconstruct", tmp_path / "s.npy", "--kv", KV, "--alpha", 10, "--step", STEP, "--thickness", 1,
                  *NO_EDGES, "--detector-rotation", 0, "--no-flip", "-o", tmp_path / "o.h5")
    warned(run, "field: max |E|", "1e+11 V/m", "thickness")


# -- 6. a file and the user disagree ------------------------------------------------------------

def test_a_reference_of_other_optics_or_scan_is_refused(layer, tmp_path):
    _, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    np.save(tmp_path / "s.npy", segments_from_deflection(tx, ty, cal))
    flat = segments_from_deflection(np.zeros(SHAPE), np.zeros(SHAPE), cal)
    write_segments(tmp_path / "kv300.h5", flat, {"kv": 300.0})
    np.save(tmp_path / "small.npy", flat[:, :8, :8])
    common = [tmp_path / "s.npy", *GIVEN, *NO_EDGES]
    refused(dpcstem("reconstruct", *common, "--reference", tmp_path / "kv300.h5", "-o", tmp_path / "o.h5"),
            "--reference", "kv 300")
    refused(dpcstem("reconstruct", *common, "--reference", tmp_path / "small.npy", "-o", tmp_path / "o.h5"),
            "--reference", "8 x 8", "24 x 48", "never extrapolated")
    for bias in (0.0, 1.0):
        write_segments(tmp_path / f"b{bias}.h5", segments_from_deflection(tx, ty, cal), {"bias_v": bias})
    refused(dpcstem("bias-series", tmp_path / "b0.0.h5", tmp_path / "b1.0.h5", *GIVEN, *NO_EDGES, "--no-register",
                    "--reference", tmp_path / "small.npy", "-o", tmp_path / "o.h5"), "--reference", "8 x 8")


def test_a_series_recording_two_permittivities_is_refused(layer, tmp_path):
    _, (tx, ty) = layer
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    for bias, eps in ((0.0, 12.0), (1.0, 30.0)):
        write_segments(tmp_path / f"b{bias}.h5", segments_from_deflection(tx, ty, cal), {"bias_v": bias, "eps_r": eps})
    refused(dpcstem("bias-series", tmp_path / "b0.0.h5", tmp_path / "b1.0.h5", *GIVEN, *NO_EDGES,
                    "-o", tmp_path / "o.h5"), "eps_r", "--eps-r")


def test_no_flip_turns_off_a_recorded_flip(negative_blob, tmp_path):
    _, tx, ty = negative_blob
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP)
    write_segments(tmp_path / "f.h5", segments_from_deflection(tx, ty, cal), {"flip": 1, "detector_rotation_deg": 0.0})
    run = dpcstem("reconstruct", tmp_path / "f.h5", *GIVEN, *NO_EDGES, "--no-flip", "-o", tmp_path / "o.h5")
    warned(run, "flip", "True", "False")
    attrs, (dy, ok) = attrs_and(tmp_path / "o.h5", "deflection_y", "valid")
    assert not attrs["flip"] and attrs["flip_source"] == "user"
    ok = ok.astype(bool)
    np.testing.assert_allclose(dy[ok], ty[ok], atol=0.02 * np.abs(ty).max())


# -- 9. com has the options reconstruct has ---------------------------------------------------

def test_com_takes_the_options_of_reconstruct(layer, junction_4d, tmp_path):
    truth, _ = layer
    run = dpcstem("com", junction_4d, "--thickness", THICKNESS, "--fit-rotation", "--no-flip", "--descan-region",
                  0, 0, 4, 12, "--descan-order", 1, "--potential-reference", 0, 0, 4, 12, "--interface", 12, 0, 12, 11,
                  "--dose", 1e4, "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    assert "σθ = α/(2√N)" in run.stdout and "peak field" in run.stdout
    attrs, (sigma, pot, ok) = attrs_and(tmp_path / "o.h5", "deflection_x_uncertainty", "potential", "valid")
    assert attrs["descan_source"] == "region" and attrs["detector_rotation_deg_source"] == "fitted"
    ok = ok.astype(bool)
    np.testing.assert_allclose(np.nanmedian(sigma[ok]), attrs["alpha_mrad"] / (2 * np.sqrt(1e4)), rtol=1e-5)
    assert abs(np.nanmean(pot[:24, :8][ok[:24, :8]])) < 1e-3 * np.nanmax(np.abs(pot))
    assert peak_error(tmp_path / "o.h5", truth) < 0.03
    assert physics  # the units of the truth and the file are the same (V/m)
