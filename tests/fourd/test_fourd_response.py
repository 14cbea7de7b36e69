"""The empirical centre-of-mass response of the 4D path: a finite camera that cuts a blurred
pattern's halo reads the deflection low; a tilt series through the same blur restores it."""

import h5py
import numpy as np
import pytest

from dpcstem import Calibration, CalibrationError
from dpcstem.fourd.response import apply_com_response, fit_com_response
from dpcstem.io.response_file import load_response, save_response
from dpcstem.response.empirical import fit_response

ALPHA, MRAD_PX, CAMERA = 2.0, 0.25, 33  # the camera holds ±4.1 mrad: the halo reaches beyond
CENTRE = (16.3, 15.8)  # the undeflected centre (column, row), off the camera's middle


def calibration():
    return Calibration(kv=200.0, alpha_mrad=ALPHA, step_x_nm=1.0, detector_rotation_deg=130.0, flip=True)


def pattern(u_mrad, v_mrad, centre=CENTRE, halo=True):
    """A disc of radius α with a soft edge and a broad halo (the plasmon-like blur; ``halo=False``:
    vacuum), moved by (u, v) mrad along the detector's axes, on the finite camera whose pixel
    ``centre`` (column, row) is the undeflected centre; supersampled 3 × 3."""
    sub = (np.arange(3) - 1) / 3.0
    k = (np.arange(CAMERA)[:, None] + sub[None, :]).ravel()
    ky, kx = np.meshgrid((k - centre[1]) * MRAD_PX - v_mrad, (k - centre[0]) * MRAD_PX - u_mrad, indexing="ij")
    r = np.hypot(kx, ky)
    disc = 0.5 * (1 - np.tanh((r - ALPHA) / 0.1))
    blur = 0.4 / (r**2 + 0.5**2) if halo else 0.0
    return (disc + blur).reshape(CAMERA, 3, CAMERA, 3).sum(axis=(1, 3))


def com(frames):
    """The centre of mass (column, row) of each frame: a plain oracle."""
    rows, cols = np.mgrid[0:CAMERA, 0:CAMERA]
    total = frames.sum(axis=(1, 2))
    return (frames * cols).sum(axis=(1, 2)) / total, (frames * rows).sum(axis=(1, 2)) / total


def frames_at(tilts_x, tilts_y, cal):
    u, v = cal.to_detector_frame(np.asarray(tilts_x, float), np.asarray(tilts_y, float))
    return np.array([pattern(a, b) for a, b in zip(u, v)])


def measured_deflection(frames, cal, centre):
    """What deflection_from_com gives with the undeflected pattern's centre of mass as reference."""
    cx, cy = com(frames)
    return cal.to_scan_frame((cx - centre[0]) * MRAD_PX, (cy - centre[1]) * MRAD_PX)


def test_a_tilt_series_through_the_blur_restores_the_deflection(tmp_path):
    cal = calibration()
    g = np.linspace(-0.6, 0.6, 9)
    tx, ty = (a.ravel() for a in np.meshgrid(g, g))
    cx, cy = com(frames_at(tx, ty, cal))
    centre = tuple(float(c[0]) for c in com(frames_at([0.0], [0.0], cal)))  # a vacuum reference's
    response = fit_com_response(tx, ty, cx, cy, cal, mrad_per_px=MRAD_PX, centre_px=centre)
    assert response.signal == "com" and response.alpha_mrad == ALPHA

    rng = np.random.default_rng(3)
    true_x, true_y = rng.uniform(-0.5, 0.5, 40), rng.uniform(-0.5, 0.5, 40)
    raw_x, raw_y = measured_deflection(frames_at(true_x, true_y, cal), cal, centre)
    peak = np.hypot(true_x, true_y).max()
    raw_error = np.max(np.hypot(raw_x - true_x, raw_y - true_y)) / peak
    scale = float((raw_x * true_x + raw_y * true_y).sum() / (true_x**2 + true_y**2).sum())
    assert scale < 0.95, f"the cut halo should make the centre of mass read low, scale {scale:.3f}"

    save_response(tmp_path / "com.npz", response)
    loaded = load_response(tmp_path / "com.npz")
    assert loaded.signal == "com"
    fixed_x, fixed_y = apply_com_response(raw_x, raw_y, loaded, cal)
    fixed_error = np.max(np.hypot(fixed_x - true_x, fixed_y - true_y)) / peak
    assert raw_error > 0.05 and fixed_error < 0.005, (raw_error, fixed_error)
    # beyond the tilts measured: NaN, never extrapolated
    out_x, _ = apply_com_response(np.array([0.9 * scale]), np.array([0.0]), loaded, cal)
    assert np.isnan(out_x).all()


def test_a_response_applies_only_to_its_own_signal():
    cal = calibration()
    g = np.linspace(-0.3, 0.3, 3)
    u, v = (a.ravel() for a in np.meshgrid(g, g))
    segments = fit_response(u, v, 0.9 * u, 0.9 * v)
    with pytest.raises(CalibrationError, match="measured on the segments signal, not on com"):
        apply_com_response(np.zeros(2), np.zeros(2), segments, cal)
    com_response = fit_response(u, v, 0.9 * u, 0.9 * v, signal="com")
    with pytest.raises(CalibrationError, match="measured on the com signal, not on segments"):
        com_response.check(cal)


# -- through the command line: calibrate-response on a 4D tilt series, then com --response ---------------

SCAN = (10, 14)
ROTATION = 130.0
UNEVEN = (13.2, 18.6)  # the undeflected centre (column, row): the camera cuts the halo unevenly


def cut_pattern(u_mrad, v_mrad):
    """The blurred pattern, its centre well off the camera's middle."""
    return pattern(u_mrad, v_mrad, UNEVEN)


def scan_truth():
    """A deflection (mrad, scan frame) over a band and a block, under half the scan; none elsewhere."""
    y, x = np.mgrid[0:SCAN[0], 0:SCAN[1]].astype(float)
    theta_x = np.where((x >= 5) & (x <= 9), 0.45 * np.sin(np.pi * (x - 4) / 6), 0.0)
    theta_y = np.where((x >= 5) & (x <= 9) & (y >= 2) & (y <= 6), -0.3, 0.0)
    return theta_x, theta_y


def write_4d(path, frames, tilts=None, **attrs):
    """A 4D scan (the calibration on the frames, as dpcstem's HDF5 reader takes it) or, with
    ``tilts`` (x, y in mrad), a tilt series (the calibration at the root, as calibrate-response
    reads it)."""
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("frames", data=np.asarray(frames, np.float32))
        (ds if tilts is None else f).attrs.update(kv=200.0, alpha_mrad=ALPHA, mrad_per_px=MRAD_PX, **attrs)
        if tilts is not None:
            f["tilt_x_mrad"], f["tilt_y_mrad"] = tilts
    return path


def test_com_response_from_the_command_line_restores_a_field_the_cut_halo_reads_low(tmp_path, capsys):
    from dpcstem.cli import main
    from dpcstem.io import load_result_arrays

    cal = calibration()
    g = np.linspace(-0.6, 0.6, 9)
    tilt_x, tilt_y = (a.ravel() for a in np.meshgrid(g, g))
    u, v = cal.to_detector_frame(tilt_x, tilt_y)
    tilts = write_4d(tmp_path / "tilts.h5", [cut_pattern(a, b) for a, b in zip(u, v)], (tilt_x, tilt_y),
                     detector_rotation_deg=ROTATION, flip=True)
    true_x, true_y = scan_truth()
    u, v = cal.to_detector_frame(true_x, true_y)
    frames = np.array([[cut_pattern(a, b) for a, b in zip(ru, rv)] for ru, rv in zip(u, v)])
    data = write_4d(tmp_path / "scan.h5", frames, step_x_nm=1.0, step_y_nm=1.0)

    assert main(["calibrate-response", str(tilts), "-o", str(tmp_path / "com.npz")]) == 0
    assert "dpcstem com" in capsys.readouterr().out
    common = ["com", str(data), "--thickness", "50", "--alpha", str(ALPHA), "--detector-rotation", str(ROTATION),
              "--flip"]
    assert main([*common, "-o", str(tmp_path / "raw.h5")]) == 0
    assert main([*common, "--response", str(tmp_path / "com.npz"), "-o", str(tmp_path / "fixed.h5")]) == 0
    printed = capsys.readouterr().out
    assert "response: empirical centre-of-mass response" in printed and "81 tilts" in printed

    peak = np.hypot(true_x, true_y).max()
    raw, _ = load_result_arrays(tmp_path / "raw.h5")
    mx, my = raw["deflection_x"][0], raw["deflection_y"][0]
    scale = float((mx * true_x + my * true_y).sum() / (true_x**2 + true_y**2).sum())
    assert scale < 0.95, f"the unevenly cut halo should make the centre of mass read low, scale {scale:.3f}"
    fixed, attrs = load_result_arrays(tmp_path / "fixed.h5")
    assert fixed["valid"][0].all()
    error = np.hypot(fixed["deflection_x"][0] - true_x, fixed["deflection_y"][0] - true_y).max() / peak
    assert error < 0.005, error
    assert attrs["response"] == "empirical" and attrs["response_signal"] == "com"
    assert attrs["response_file"] == "com.npz" and attrs["response_tilts"] == 81

    # No --alpha: the response's own α (the tilt series'), not the blurred disc's, and said so.
    no_alpha = [word for word in common if word not in ("--alpha", str(ALPHA))]
    assert main([*no_alpha, "--response", str(tmp_path / "com.npz"), "-o", str(tmp_path / "alpha.h5")]) == 0
    assert f"alpha: {ALPHA:.4g} mrad, the tilt series'" in capsys.readouterr().out
    same, attrs = load_result_arrays(tmp_path / "alpha.h5")
    assert attrs["alpha_mrad"] == ALPHA and attrs["alpha_mrad_source"] == "measured"
    np.testing.assert_allclose(same["deflection_x"][0], fixed["deflection_x"][0], equal_nan=True)

    # A vacuum reference (a sharp disc, no halo) centres the map on the vacuum's centre of mass, not
    # on the specimen's zero-tilt one the response measures from: offset, and warned.
    vacuum = write_4d(tmp_path / "vacuum.h5", np.array([[pattern(0, 0, UNEVEN, halo=False)] * SCAN[1]] * SCAN[0]),
                      step_x_nm=1.0)
    with pytest.warns(UserWarning, match="measures from the specimen's own zero-tilt centre of mass, --reference"):
        assert main([*common, "--response", str(tmp_path / "com.npz"), "--reference", str(vacuum),
                     "-o", str(tmp_path / "vacuum_ref.h5")]) == 0
    offset, _ = load_result_arrays(tmp_path / "vacuum_ref.h5")
    assert np.nanmax(np.hypot(offset["deflection_x"][0] - true_x, offset["deflection_y"][0] - true_y)) > 0.05 * peak


def test_com_refuses_a_segment_response_and_a_tilt_series_without_zero_tilt(tmp_path, capsys):
    from dpcstem.cli import main

    cal = calibration()
    segments = fit_response(*(a.ravel() for a in np.meshgrid(np.linspace(-0.3, 0.3, 3), np.linspace(-0.3, 0.3, 3))),
                            *(0.9 * a.ravel() for a in np.meshgrid(np.linspace(-0.3, 0.3, 3),
                                                                    np.linspace(-0.3, 0.3, 3))), calibration=cal)
    save_response(tmp_path / "segments.npz", segments)
    frames = np.array([[pattern(0.0, 0.0)] * 4] * 3)
    data = write_4d(tmp_path / "scan.h5", frames, step_x_nm=1.0)
    out = tmp_path / "out.h5"
    assert main(["com", str(data), "--thickness", "50", "--response", str(tmp_path / "segments.npz"),
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "segments signal, not on com" in err
    assert not out.exists()
    tilts = write_4d(tmp_path / "tilts.h5", [pattern(0.1, 0.0), pattern(-0.1, 0.0), pattern(0.0, 0.1)],
                     ([0.1, -0.1, 0.0], [0.0, 0.0, 0.1]))
    assert main(["calibrate-response", str(tilts), "-o", str(tmp_path / "com.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no frame at zero tilt" in err


def test_reconstruct_com_applies_a_response_after_the_descan():
    from dpcstem.fourd import reconstruct_com

    cal = calibration().replace(thickness_nm=50.0)
    g = np.linspace(-0.6, 0.6, 9)
    tilt_x, tilt_y = (a.ravel() for a in np.meshgrid(g, g))
    u, v = cal.to_detector_frame(tilt_x, tilt_y)
    tilts = np.array([cut_pattern(a, b) for a, b in zip(u, v)])
    cx, cy = com(tilts)
    zero = np.flatnonzero((tilt_x == 0) & (tilt_y == 0))[0]
    response = fit_com_response(tilt_x, tilt_y, cx, cy, cal, mrad_per_px=MRAD_PX, centre_px=(cx[zero], cy[zero]))
    true_x, true_y = scan_truth()
    u, v = cal.to_detector_frame(true_x, true_y)
    frames = np.array([[cut_pattern(a, b) for a, b in zip(ru, rv)] for ru, rv in zip(u, v)])
    centre = (float(cx[zero]), float(cy[zero]))
    raw = reconstruct_com(frames, cal, mrad_per_px=MRAD_PX, reference=centre)
    fixed = reconstruct_com(frames, cal, mrad_per_px=MRAD_PX, reference=centre, response=response)
    peak = np.hypot(true_x, true_y).max()
    def error(result):
        return np.hypot(result.deflection_x - true_x, result.deflection_y - true_y).max() / peak
    assert error(raw) > 0.05 and error(fixed) < 0.005, (error(raw), error(fixed))
    assert fixed.attrs["response"] == "empirical" and fixed.attrs["response_signal"] == "com"
