"""`dpcstem reconstruct` end to end, in a subprocess as a user runs it."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

from dpcstem import Calibration, physics
from dpcstem.simulate import MottSchottky, deflection_from_truth, layer_truth, segments_from_deflection

KV, ALPHA, STEP, THICKNESS = 200.0, 1.0, 0.5, 131.0
OPTIONS = ["--kv", str(KV), "--alpha", str(ALPHA), "--step", str(STEP), "--thickness", str(THICKNESS),
           "--collection", "0", "inf"]


def dpcstem(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def acquisition():
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=2.0)
    truth = layer_truth(layer, (24, 48), STEP, normal_deg=0.0)
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP, thickness_nm=THICKNESS)
    segments = segments_from_deflection(tx, ty, cal, dose=2e5, rng=np.random.default_rng(1), dtype=np.uint16)
    return segments, truth


def write_input(kind, segments, folder):
    if kind == "npy":
        path = folder / "seg.npy"
        np.save(path, segments)
    elif kind == "tiff":
        path = folder / "seg.tif"
        tifffile.imwrite(path, segments, photometric="minisblack")
    elif kind == "h5":
        path = folder / "seg.h5"
        with h5py.File(path, "w") as f:
            f["segments"] = segments
    return path


def check_result(path, truth, shape):
    with h5py.File(path, "r") as f:
        for name, unit in [("deflection_x", "mrad"), ("deflection_y", "mrad"), ("field_x", "V/m"),
                           ("field_y", "V/m"), ("charge_density", "C/m^3"), ("potential", "V")]:
            assert f[name].shape == shape and f[name].dtype == np.float32
            assert f[name].attrs["units"] == unit
        assert f["valid"].dtype == np.uint8
        assert f.attrs["kv"] == KV and f.attrs["thickness_nm"] == THICKNESS and f.attrs["step_y_nm"] == STEP
        assert "dpcstem_version" in f.attrs
        assert any(k.startswith("sha256:") for k in f.attrs)
        field = f["field_x"][()]
    peak = np.abs(truth.field_x).max()
    assert np.abs(np.nanmean(field, axis=0) - truth.field_x.mean(axis=0)).max() < 0.05 * peak


@pytest.mark.parametrize("kind", ["npy", "tiff", "h5"])
def test_round_trip_for_each_format(kind, acquisition, tmp_path):
    segments, truth = acquisition
    source = write_input(kind, segments, tmp_path)
    before = source.read_bytes()
    run = dpcstem("reconstruct", source, *OPTIONS, "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "masked pixels: 0 of 1152" in run.stdout
    check_result(tmp_path / "out.h5", truth, segments.shape[1:])
    assert source.read_bytes() == before  # inputs are never modified


def test_bad_pixels_are_counted_in_the_summary(acquisition, tmp_path):
    segments, _ = acquisition
    seg = segments.astype(np.float32)
    seg[:, 5, 5] = np.nan
    seg[:, 10, 20] = 0
    np.save(tmp_path / "seg.npy", seg)
    run = dpcstem("reconstruct", tmp_path / "seg.npy", *OPTIONS, "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "masked pixels: 2 of 1152: 2 with a zero or non-finite segment sum" in run.stdout


def one_line_error(run, *fragments):
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpcstem: error:"), run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in run.stderr


def test_wrong_number_of_segments(tmp_path):
    np.save(tmp_path / "three.npy", np.ones((3, 4, 4)))
    one_line_error(dpcstem("reconstruct", tmp_path / "three.npy", *OPTIONS, "-o", tmp_path / "o.h5"),
                   "three.npy", "4")


def test_segments_of_different_shapes(tmp_path):
    for name, shape in zip("ABCD", [(4, 4), (4, 4), (4, 5), (4, 4)]):
        tifffile.imwrite(tmp_path / f"{name}.tif", np.ones(shape, np.uint16))
    files = ",".join(str(tmp_path / f"{n}.tif") for n in "ABCD")
    one_line_error(dpcstem("reconstruct", files, *OPTIONS, "-o", tmp_path / "o.h5"), "shape")


def test_four_image_files_given_as_four_arguments_are_the_four_segments(acquisition, tmp_path):
    """`dpcstem reconstruct A.tif B.tif C.tif D.tif` (what a shell glob gives) reads as the comma form does."""
    for name, image in zip("ABCD", acquisition[0]):
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
    files = [tmp_path / f"{n}.tif" for n in "ABCD"]
    spaced = dpcstem("reconstruct", *files, *OPTIONS, "-o", tmp_path / "spaced.h5")
    commas = dpcstem("reconstruct", ",".join(map(str, files)), *OPTIONS, "-o", tmp_path / "commas.h5")
    assert spaced.returncode == 0 and commas.returncode == 0, spaced.stderr + commas.stderr
    with h5py.File(tmp_path / "spaced.h5", "r") as a, h5py.File(tmp_path / "commas.h5", "r") as b:
        np.testing.assert_array_equal(a["field_x"][()], b["field_x"][()])
    one_line_error(dpcstem("reconstruct", *files[:2], *OPTIONS, "-o", tmp_path / "two.h5"), "four image files",
                   "got 2 files")


def test_file_that_is_not_what_its_name_says(tmp_path):
    (tmp_path / "fake.npy").write_text("this is a text file\n")
    one_line_error(dpcstem("reconstruct", tmp_path / "fake.npy", *OPTIONS, "-o", tmp_path / "o.h5"), "fake.npy")
    (tmp_path / "fake.tif").write_text("this is a text file\n")
    one_line_error(dpcstem("reconstruct", tmp_path / "fake.tif", *OPTIONS, "-o", tmp_path / "o.h5"), "fake.tif")


@pytest.mark.parametrize("option,value,fragment", [("--thickness", "-5", "thickness_nm must be positive"),
                                                   ("--alpha", "0", "alpha_mrad must be positive"),
                                                   ("--alpha", "-1", "alpha_mrad must be positive")])
def test_absurd_calibration(acquisition, tmp_path, option, value, fragment):
    np.save(tmp_path / "seg.npy", acquisition[0])
    opts = list(OPTIONS)
    opts[opts.index(option) + 1] = value
    one_line_error(dpcstem("reconstruct", tmp_path / "seg.npy", *opts, "-o", tmp_path / "o.h5"), fragment)


def test_existing_output_is_kept_without_overwrite(acquisition, tmp_path):
    np.save(tmp_path / "seg.npy", acquisition[0])
    out = tmp_path / "o.h5"
    out.write_bytes(b"precious")
    one_line_error(dpcstem("reconstruct", tmp_path / "seg.npy", *OPTIONS, "-o", out), "o.h5", "--overwrite")
    assert out.read_bytes() == b"precious"
    run = dpcstem("reconstruct", tmp_path / "seg.npy", *OPTIONS, "-o", out, "--overwrite")
    assert run.returncode == 0, run.stderr
    assert h5py.is_hdf5(out)


def test_input_with_no_valid_pixel(tmp_path):
    np.save(tmp_path / "zero.npy", np.zeros((4, 3, 3), np.uint16))
    one_line_error(dpcstem("reconstruct", tmp_path / "zero.npy", *OPTIONS, "-o", tmp_path / "o.h5"),
                   "no pixel could be reconstructed")
    assert not (tmp_path / "o.h5").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "zero.npy"]  # no temporary file left behind


def test_missing_calibration_option(acquisition, tmp_path):
    np.save(tmp_path / "seg.npy", acquisition[0])
    one_line_error(dpcstem("reconstruct", tmp_path / "seg.npy", "--alpha", "1", "--step", "1", "--thickness", "10",
                           "-o", tmp_path / "o.h5"), "--kv")


def test_step_accepts_x_then_y(acquisition, tmp_path):
    np.save(tmp_path / "seg.npy", acquisition[0])
    run = dpcstem("reconstruct", tmp_path / "seg.npy", "--kv", "200", "--alpha", "1", "--step", "0.5", "0.75",
                  "--thickness", "131", "--collection", "0", "inf", "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    with h5py.File(tmp_path / "o.h5") as f:
        assert (f.attrs["step_x_nm"], f.attrs["step_y_nm"]) == (0.5, 0.75)


def test_thickness_field_relation_reaches_the_file(acquisition, tmp_path):
    """Doubling the thickness halves the field (E = −(pv/e)·θ/t)."""
    np.save(tmp_path / "seg.npy", acquisition[0])
    fields = []
    for t in ("100", "200"):
        opts = list(OPTIONS)
        opts[opts.index("--thickness") + 1] = t
        assert dpcstem("reconstruct", tmp_path / "seg.npy", *opts, "-o", tmp_path / f"{t}.h5").returncode == 0
        with h5py.File(tmp_path / f"{t}.h5") as f:
            fields.append(f["field_x"][()])
    np.testing.assert_allclose(fields[1], fields[0] / 2, rtol=1e-5, atol=1e-3)
    assert physics.pv_over_e_v(KV) > 0


def test_thickness_map_option(acquisition, tmp_path):
    segments, _ = acquisition
    np.save(tmp_path / "seg.npy", segments)
    np.save(tmp_path / "t.npy", np.full(segments.shape[1:], 262.0))
    opts = [o for o in OPTIONS]
    i = opts.index("--thickness")
    opts[i : i + 2] = ["--thickness-map", str(tmp_path / "t.npy")]
    assert dpcstem("reconstruct", tmp_path / "seg.npy", *opts, "-o", tmp_path / "map.h5").returncode == 0
    assert dpcstem("reconstruct", tmp_path / "seg.npy", *OPTIONS, "-o", tmp_path / "one.h5").returncode == 0
    with h5py.File(tmp_path / "map.h5") as f, h5py.File(tmp_path / "one.h5") as g:
        assert f.attrs["thickness_nm"] == "map"
        np.testing.assert_allclose(f["field_x"][()], g["field_x"][()] * THICKNESS / 262.0, rtol=1e-5, atol=1e-3)
    np.save(tmp_path / "bad.npy", np.full((3, 3), 100.0))
    opts[i + 1] = str(tmp_path / "bad.npy")
    one_line_error(dpcstem("reconstruct", tmp_path / "seg.npy", *opts, "-o", tmp_path / "bad.h5"),
                   "thickness map shape (3, 3)")


def bumps_deflection(shape, peak_mrad=0.3, seed=3):
    """θ ∝ ∇V of Gaussian potential bumps (positive charges): a curl-free map with structure in 2-D."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    gx, gy = np.zeros(shape), np.zeros(shape)
    for cx, cy in zip(rng.uniform(8, shape[1] - 8, 7), rng.uniform(8, shape[0] - 8, 7)):
        bump = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 18.0)
        gx -= (x - cx) / 9.0 * bump
        gy -= (y - cy) / 9.0 * bump
    scale = peak_mrad / np.hypot(gx, gy).max()
    return scale * gx, scale * gy


def test_fit_rotation_finds_the_detector_rotation_and_records_it(tmp_path):
    tx, ty = bumps_deflection((64, 72))
    cal = Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP, thickness_nm=THICKNESS, detector_rotation_deg=37.0,
                      flip=True)
    np.save(tmp_path / "seg.npy", segments_from_deflection(tx, ty, cal, dose=1e5, rng=np.random.default_rng(0),
                                                           dtype=np.uint16))
    run = dpcstem("reconstruct", tmp_path / "seg.npy", *OPTIONS, "--fit-rotation", "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    assert "fitted detector rotation 37." in run.stdout or "fitted detector rotation 36.9" in run.stdout
    with h5py.File(tmp_path / "o.h5") as f:
        assert f.attrs["detector_rotation_deg"] == pytest.approx(37.0, abs=0.5)
        assert bool(f.attrs["flip"]) and bool(f.attrs["rotation_fit_flip"])
        assert f.attrs["rotation_fit_curl_ratio"] < 0.5 * f.attrs["rotation_fit_curl_ratio_other_flip"]
        np.testing.assert_allclose(np.nanmean(f["deflection_x"][()] - tx), 0.0, atol=2e-3)


def test_uncertainty_maps_profiles_and_descan_region_reach_the_file(acquisition, tmp_path):
    segments, truth = acquisition
    np.save(tmp_path / "seg.npy", segments)
    width = segments.shape[2] * STEP
    run = dpcstem("reconstruct", tmp_path / "seg.npy", *OPTIONS, "--dose", "2e5", "--interface", 11.75, 0, 11.75, 11.5,
                  "--descan-region", 0, 0, 5, 11.5, "--descan-order", 1, "-o", tmp_path / "o.h5")
    assert run.returncode == 0, run.stderr
    assert "layer width" in run.stdout and "areal charge" in run.stdout
    with h5py.File(tmp_path / "o.h5") as f:
        for name, unit in [("deflection_x_uncertainty", "mrad"), ("field_x_uncertainty", "V/m"),
                           ("charge_density_uncertainty", "C/m^3"), ("profile_distance", "nm"),
                           ("profile_field", "V/m")]:
            assert f[name].attrs["units"] == unit
        assert np.all(f["field_x_uncertainty"][()][np.isfinite(f["field_x"][()])] > 0)
        assert f.attrs["descan_order"] == 1
        profile = f["profile_field"][()]
    assert np.nanmax(np.abs(profile)) == pytest.approx(np.abs(truth.field_x).max(), rel=0.1)
    assert width > 11.75
    one_line_error(dpcstem("reconstruct", tmp_path / "seg.npy", *OPTIONS, "--descan-region", 100, 100, 120, 120,
                           "-o", tmp_path / "bad.h5"), "--descan-region", "holds no pixel")
