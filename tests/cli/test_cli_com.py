"""``dpcstem com``: 4D-STEM file → result file, and errors as one line with exit status 2."""

import h5py
import numpy as np
import pytest

from dpcstem import Calibration
from dpcstem.cli import main
from dpcstem.io import load_result_arrays, sha256_file
from dpcstem.simulate.fourd import write_frames
from helpers import worker_processes

CAL = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=2.0, step_y_nm=1.5, thickness_nm=80.0)
SCAN = (10, 12)


def truth():
    """A deflection over a small part of the scan (a particle), none elsewhere (mrad).

    No descan is removed by default: the undeflected pattern centre is the median centre of
    mass, which the particle's few pixels do not move, so the deflection there is kept whole.
    """
    theta_x, theta_y = np.zeros(SCAN), np.zeros(SCAN)
    theta_x[3:6, 4:7] = 0.04
    theta_y[3:6, 4:7] = -0.03
    return theta_x, theta_y


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("com")
    tx, ty = truth()
    h5 = write_frames(folder / "sim.h5", tx, ty, CAL, frame_shape=(32, 32), mrad_per_px=0.1, noise=False)
    npy = write_frames(folder / "sim.npy", tx, ty, CAL, frame_shape=(32, 32), mrad_per_px=0.1, noise=False)
    return h5, npy


def test_com_writes_the_result_layout_with_centre_of_mass(simulated, tmp_path, capsys):
    h5, _ = simulated
    out = tmp_path / "out.h5"
    assert main(["com", str(h5), "--thickness", "80", "--mask-radius", "14", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    maps, attrs = load_result_arrays(out)
    for name, unit in [("deflection_x", "mrad"), ("deflection_y", "mrad"), ("field_x", "V/m"), ("field_y", "V/m"),
                       ("charge_density", "C/m^3"), ("potential", "V"), ("com_x", "px"), ("com_y", "px"),
                       ("intensity", "counts"), ("valid", "1")]:
        assert name in maps and maps[name][1] == unit, name
        assert maps[name][0].shape == SCAN
    tx, ty = truth()
    valid = maps["valid"][0].astype(bool)
    assert valid.mean() > 0.8
    np.testing.assert_allclose(maps["deflection_x"][0][valid], tx[valid], atol=0.01 * 0.04)
    np.testing.assert_allclose(maps["deflection_y"][0][valid], ty[valid], atol=0.01 * 0.04)
    assert attrs["kv"] == 200.0 and attrs["kv_source"] == "file"
    assert attrs["step_x_nm"] == 2.0 and attrs["step_y_nm"] == 1.5
    assert attrs["thickness_nm"] == 80.0 and attrs["thickness_nm_source"] == "user"
    assert attrs["mrad_per_px"] == 0.1 and attrs["mrad_per_px_source"] == "file"
    assert attrs["alpha_mrad"] == pytest.approx(1.0, rel=0.02)
    assert attrs["alpha_mrad_source"].startswith("measured")
    assert attrs["mask_radius_px"] == 14.0 and attrs["descan_source"] == "none"
    assert attrs["sha256:sim.h5"] == sha256_file(h5)
    intensity = maps["intensity"][0]
    assert intensity.min() > 0.9 * 1e4  # the disc's counts are inside the 14 px mask


def test_com_on_npy_with_camera_length_and_a_local_cluster(simulated, tmp_path):
    _, npy = simulated
    out = tmp_path / "out.h5"
    before = worker_processes()
    status = main(["com", str(npy), "--kv", "200", "--step", "2", "1.5", "--thickness", "80", "--alpha", "1.0",
                   "--camera-length", "550", "--detector-pixel-um", "55", "--workers", "2", "-o", str(out)])
    assert status == 0
    assert worker_processes() <= before  # the cluster it started is gone
    maps, attrs = load_result_arrays(out)
    assert attrs["mrad_per_px"] == pytest.approx(0.1) and attrs["mrad_per_px_source"] == "user"
    assert attrs["alpha_mrad"] == 1.0 and attrs["alpha_mrad_source"] == "user"
    tx, _ = truth()
    valid = maps["valid"][0].astype(bool)
    np.testing.assert_allclose(maps["deflection_x"][0][valid], tx[valid], atol=0.01 * 0.04)


def test_com_with_a_vacuum_reference_and_rotation(tmp_path):
    cal = CAL.replace(detector_rotation_deg=40.0, flip=True)
    tx, ty = truth()
    ramp = [[0.02, 0.01], [-0.015, 0.03]]
    sample = write_frames(tmp_path / "sample.h5", tx + 0.02, ty - 0.01, cal, frame_shape=(32, 32), mrad_per_px=0.1,
                          noise=False, descan_px_per_step=ramp)
    vacuum = write_frames(tmp_path / "vacuum.h5", np.zeros(SCAN), np.zeros(SCAN), cal, frame_shape=(32, 32),
                          mrad_per_px=0.1, noise=False, descan_px_per_step=ramp)
    out = tmp_path / "out.h5"
    assert main(["com", str(sample), "--thickness", "80", "--detector-rotation", "40", "--flip",
                 "--reference", str(vacuum), "-o", str(out)]) == 0
    maps, attrs = load_result_arrays(out)
    valid = maps["valid"][0].astype(bool)
    # a reference keeps the uniform part of the deflection that a plane fit would remove
    np.testing.assert_allclose(maps["deflection_x"][0][valid], (tx + 0.02)[valid], atol=0.01 * 0.04)
    np.testing.assert_allclose(maps["deflection_y"][0][valid], (ty - 0.01)[valid], atol=0.01 * 0.04)
    assert attrs["descan_source"] == "vacuum" and attrs["flip"]
    assert "sha256:vacuum.h5" in attrs


@pytest.mark.parametrize("extra, message", [
    ([], "angular pixel size is needed: give --mrad-per-px"),
    (["--mrad-per-px", "0.1", "--camera-length", "100", "--detector-pixel-um", "55"], "not both"),
    (["--mrad-per-px", "-1"], "mrad_per_px must be positive"),
])
def test_angular_pixel_size_errors(simulated, tmp_path, capsys, extra, message):
    _, npy = simulated
    status = main(["com", str(npy), "--kv", "200", "--step", "2", "--thickness", "80", *extra,
                   "-o", str(tmp_path / "o.h5")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("dpcstem: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o.h5").exists()


def test_bad_inputs_exit_2_with_one_line(simulated, tmp_path, capsys):
    h5, npy = simulated
    existing = tmp_path / "exists.h5"
    existing.write_bytes(b"keep")
    cases = [
        (["com", str(h5), "--thickness", "80", "-o", str(existing)], "output exists"),
        (["com", str(h5), "-o", str(tmp_path / "a.h5")], "--thickness"),
        (["com", str(tmp_path / "missing.mib"), "--thickness", "80", "-o", str(tmp_path / "b.h5")], "not found"),
        (["com", str(npy), "--thickness", "80", "--mrad-per-px", "0.1", "-o", str(tmp_path / "c.h5")], "--kv"),
        (["com", str(h5), "--thickness", "80", "--reference", str(npy), "--raw-shape", "1", "1", "1", "1",
          "-o", str(tmp_path / "d.h5")], "raw binary files only"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("dpcstem: error: ") and message in err and err.count("\n") == 1, (argv, err)
    assert existing.read_bytes() == b"keep"
    with pytest.raises(SystemExit) as exc:
        main(["com", str(h5), "--thickness", "80", "--workers", "2", "--scheduler", "tcp://x:1", "-o", "x.h5"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_overwrite_replaces(simulated, tmp_path):
    h5, _ = simulated
    out = tmp_path / "out.h5"
    out.write_bytes(b"old")
    assert main(["com", str(h5), "--thickness", "80", "-o", str(out), "--overwrite"]) == 0
    with h5py.File(out, "r") as f:
        assert "com_x" in f


def test_help_names_every_unit(capsys):
    with pytest.raises(SystemExit):
        main(["com", "--help"])
    text = capsys.readouterr().out
    for option, unit in [("--mrad-per-px", "mrad"), ("--camera-length", "mm"), ("--detector-pixel-um", "µm"),
                         ("--mask-radius", "pixels"), ("--detector-rotation", "degrees"), ("--step", "nm")]:
        assert option in text and unit in text


def test_com_on_the_real_merlin_file(shared_data, tmp_path):
    from dpcstem.fourd import centre_of_mass
    from dpcstem.io import open_pixelated

    path = shared_data / "merlin" / "001_4x2_6bit.mib"
    out = tmp_path / "merlin.h5"
    assert main(["com", str(path), "--kv", "300", "--step", "1.5", "--thickness", "50", "--alpha", "2",
                 "--mrad-per-px", "0.05", "-o", str(out)]) == 0
    maps, attrs = load_result_arrays(out)
    in_memory = np.asarray(open_pixelated(path).data.compute())
    expected = centre_of_mass(in_memory)
    np.testing.assert_allclose(maps["com_x"][0], expected.com_x, rtol=1e-6)
    np.testing.assert_allclose(maps["com_y"][0], expected.com_y, rtol=1e-6)
    np.testing.assert_allclose(maps["intensity"][0], in_memory.sum(axis=(2, 3)), rtol=1e-6)
    assert attrs["sha256:001_4x2_6bit.mib"] == sha256_file(path)
