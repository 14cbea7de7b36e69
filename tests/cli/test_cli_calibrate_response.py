"""`dpcstem calibrate-response` end to end: a tilt series file → a response file that
`dpcstem reconstruct --response` uses, in a subprocess as a user runs it."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from dpcstem import Calibration
from dpcstem.io.response_file import load_response
from dpcstem.simulate import detect, simulate_tilt_series

KV, ALPHA, STEP, THICKNESS, BLUR = 200.0, 2.0, 0.5, 150.0, 0.15
ROTATION = 160.0


def dpcstem(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def write_tilt_series(path, calibration, *, attrs=True, drop=None):
    g = np.linspace(-0.8, 0.8, 11) * ALPHA
    tx, ty = (a.ravel() for a in np.meshgrid(g, g))
    keep = np.hypot(tx, ty) <= 0.8 * ALPHA + 1e-9
    series = simulate_tilt_series(calibration, np.column_stack([tx[keep], ty[keep]]), edge_blur=BLUR, dose=1e6)
    with h5py.File(path, "w") as f:
        for name, value in (("segments", series.segments), ("tilt_x_mrad", series.tilt_x_mrad),
                            ("tilt_y_mrad", series.tilt_y_mrad)):
            if name != drop:
                f[name] = value
        if attrs:
            f.attrs["kv"], f.attrs["alpha_mrad"] = KV, ALPHA
    return path


@pytest.fixture(scope="module")
def calibration():
    return Calibration(kv=KV, alpha_mrad=ALPHA, step_x_nm=STEP, thickness_nm=THICKNESS,
                       detector_rotation_deg=ROTATION, flip=True)


def test_a_response_from_a_blurred_tilt_series_restores_the_deflection(calibration, tmp_path):
    tilts = write_tilt_series(tmp_path / "tilts.h5", calibration)
    run = dpcstem("calibrate-response", tilts, "--detector-rotation", ROTATION, "--flip", "-o", "r.npz", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "r.npz" in run.stdout and "--response" in run.stdout
    response = load_response(tmp_path / "r.npz")
    assert response.alpha_mrad == ALPHA and len(response.tilt_u) > 60

    # An acquisition by the same blurred detector: a deflection ramp up to 0.6 α.
    x = np.linspace(-0.6, 0.6, 24) * ALPHA
    theta_x, theta_y = np.meshgrid(x, 0.4 * x)
    segments = detect(theta_x, theta_y, calibration, dose=1e7, noise=False, edge_blur=BLUR, dtype=np.float64)
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f["segments"] = segments
    common = ("reconstruct", "seg.h5", "--kv", KV, "--alpha", ALPHA, "--step", STEP, "--thickness", THICKNESS,
              "--collection", 0, 4 * ALPHA, "--detector-rotation", ROTATION, "--flip")
    errors = {}
    for name, extra in (("exact", ()), ("empirical", ("--response", "r.npz"))):
        out = dpcstem(*common, *extra, "-o", f"{name}.h5", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        with h5py.File(tmp_path / f"{name}.h5", "r") as f:
            errors[name] = np.nanmax(np.hypot(f["deflection_x"][()] - theta_x, f["deflection_y"][()] - theta_y))
            if name == "empirical":
                assert f.attrs["response"] == "empirical" and f.attrs["response_file"] == "r.npz"
    peak = 0.6 * ALPHA
    assert errors["exact"] > 0.02 * peak and errors["empirical"] < 0.005 * peak, errors


def test_the_wrong_detector_rotation_gives_a_different_response(calibration, tmp_path):
    tilts = write_tilt_series(tmp_path / "tilts.h5", calibration)
    assert dpcstem("calibrate-response", tilts, "--detector-rotation", ROTATION, "--flip", "-o", "a.npz",
                   cwd=tmp_path).returncode == 0
    run = dpcstem("calibrate-response", tilts, "-o", "b.npz", cwd=tmp_path)
    assert run.returncode == 0 and "detector rotation 0° (default" in run.stdout and "no flip (default" in run.stdout
    a, b = load_response(tmp_path / "a.npz"), load_response(tmp_path / "b.npz")
    assert np.max(np.abs(a.tilt_u - b.tilt_u)) > 0.5


@pytest.mark.parametrize("case,args,message", [
    ("no_alpha", ("--kv", KV), "--alpha is needed"),
    ("no_tilts", (), "lacks tilt_y_mrad"),
    ("not_hdf5", (), "not a readable HDF5 tilt series"),
    ("npz_suffix", ("--alpha", ALPHA), ".npz"),
])
def test_bad_tilt_series_are_refused_in_one_line(calibration, tmp_path, case, args, message):
    path = tmp_path / "tilts.h5"
    if case == "not_hdf5":
        path.write_text("not hdf5")
    else:
        write_tilt_series(path, calibration, attrs=case != "no_alpha",
                          drop="tilt_y_mrad" if case == "no_tilts" else None)
    out = "r.h5" if case == "npz_suffix" else "r.npz"
    before = path.read_bytes()
    run = dpcstem("calibrate-response", path, *args, "-o", out, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / out).exists() and path.read_bytes() == before
