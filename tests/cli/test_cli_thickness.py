"""``dpcstem thickness``: numbers printed, the thickness map written, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from dpcstem import Calibration
from dpcstem.cli import main
from dpcstem.io import read_thickness_map
from lowloss import synthetic_low_loss, write_dm3

LAMBDA_LICOO2_200KV_NM = 117.334  # Malis, β = 15 mrad (hand computation in test_eels)


def _number(pattern, text):
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return [float(g) for g in match.groups()]


@pytest.fixture
def spectrum_npy(tmp_path):
    counts, _ = synthetic_low_loss(1.3, rng=np.random.default_rng(21))
    path = tmp_path / "low_loss.npy"
    np.save(path, counts)
    return path


@pytest.fixture
def image_dm3(tmp_path):
    rng = np.random.default_rng(22)
    truth = np.array([[0.3, 0.6, 1.0, 1.4], [1.8, 2.2, 2.6, 3.0], [0.5, 0.5, 2.0, 2.0]])
    cube = np.stack([synthetic_low_loss(t, rng=rng, total_counts=2e5, n=1024, step_ev=0.3)[0]
                     for t in truth.ravel()]).reshape(3, 4, 1024)
    path = tmp_path / "si.dm3"
    write_dm3(path, cube, offset_ev=-10.0, step_ev=0.3, kv=200, beta_mrad=15, alpha_mrad=20)
    return path, truth


def test_single_spectrum_prints_t_over_lambda_lambda_and_t(spectrum_npy, capsys):
    status = main(["thickness", str(spectrum_npy), "--kv", "200", "--beta", "15", "--composition", "LiCoO2",
                   "--energy-axis", "-10", "0.15"])
    out = capsys.readouterr().out
    assert status == 0
    (t_over_lambda,) = _number(r"t/λ = ([0-9.]+)\n", out)
    (lam,) = _number(r"λ = ([0-9.]+) nm \(Malis 1988; LiCoO2", out)
    (t,) = _number(r"\nt = ([0-9.]+) nm", out)
    assert abs(t_over_lambda / 1.3 - 1) < 0.02
    assert lam == pytest.approx(LAMBDA_LICOO2_200KV_NM, abs=0.05)
    assert t == pytest.approx(t_over_lambda * lam, abs=0.1)
    low, high = _number(r"zero-loss window (-[0-9.]+) to ([0-9.]+) eV", out)
    assert -5 < low < 0 < high < 5


def test_mean_energy_loss_and_density_options(spectrum_npy, capsys):
    common = [str(spectrum_npy), "--kv", "300", "--beta", "20", "--energy-axis", "-10", "0.15"]
    assert main(["thickness", *common, "--mean-energy-loss", "24.24336"]) == 0
    out = capsys.readouterr().out
    assert _number(r"λ = ([0-9.]+) nm \(Malis 1988; E_m = 24.24 eV", out)[0] == pytest.approx(108.57, abs=0.05)
    assert main(["thickness", *common, "--density", "5.06", "--alpha", "10"]) == 0
    out = capsys.readouterr().out
    assert _number(r"λ = ([0-9.]+) nm \(Iakoubovskii 2008; ρ = 5.06 g/cm³, α = 10 mrad", out)[0] == \
        pytest.approx(156.70, abs=0.05)


def test_spectrum_image_writes_the_thickness_map_that_reconstruct_reads(image_dm3, tmp_path, capsys):
    path, truth = image_dm3
    out_path = tmp_path / "thickness.h5"
    # kv and β come from the DM3 tags
    assert main(["thickness", str(path), "--composition", "LiCoO2", "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "3 x 4 spectrum image, 1024 channels" in out
    mean, std = _number(r"\nt = ([0-9.]+) ± ([0-9.]+) nm", out)
    assert mean == pytest.approx(truth.mean() * LAMBDA_LICOO2_200KV_NM, rel=0.02)
    assert std == pytest.approx(truth.std() * LAMBDA_LICOO2_200KV_NM, rel=0.05)
    assert f"to {out_path}" in out

    thickness = read_thickness_map(out_path)
    assert thickness.shape == (3, 4)
    assert np.max(np.abs(thickness / (truth * LAMBDA_LICOO2_200KV_NM) - 1)) < 0.02
    with h5py.File(out_path, "r") as f:
        assert f["thickness"].attrs["units"] == "nm"
        assert f["t_over_lambda"].attrs["units"] == "1"
        assert f["zlp_window_low_ev"].attrs["units"] == "eV"
        assert (f["zlp_window_low_ev"][()] < 0).all() and (f["zlp_window_high_ev"][()] > 0).all()
        assert f["valid"][()].all()
        assert f.attrs["kv"] == 200.0 and f.attrs["beta_mrad"] == 15.0
        assert f.attrs["mean_free_path_nm"] == pytest.approx(LAMBDA_LICOO2_200KV_NM, rel=1e-5)
        assert f.attrs["mean_free_path_formula"] == "Malis 1988" and f.attrs["composition"] == "LiCoO2"
        assert "sha256:si.dm3" in f.attrs
    calibration = Calibration(kv=200, alpha_mrad=20, step_x_nm=1.0, thickness_nm=thickness)
    assert calibration.thickness_nm.shape == (3, 4)

    # an existing map is kept without --overwrite, replaced with it
    before = out_path.read_bytes()
    assert main(["thickness", str(path), "--density", "5.06", "-o", str(out_path)]) == 2
    assert "output exists; give --overwrite" in capsys.readouterr().err
    assert out_path.read_bytes() == before
    assert main(["thickness", str(path), "--density", "5.06", "-o", str(out_path), "--overwrite"]) == 0
    capsys.readouterr()
    with h5py.File(out_path, "r") as f:
        assert f.attrs["mean_free_path_formula"] == "Iakoubovskii 2008"
        assert f.attrs["alpha_mrad"] == 20.0  # the DM3 file's convergence angle


def test_vacuum_and_dead_pixels_are_reported(tmp_path, capsys):
    rng = np.random.default_rng(23)
    cube = np.stack([synthetic_low_loss(t, rng=rng, total_counts=2e5, n=1024, step_ev=0.3)[0]
                     for t in (0.5, 1.0, 1.5, 2.0)]).reshape(2, 2, 1024)
    cube[0, 1] = synthetic_low_loss(0.0, rng=rng, total_counts=2e5, n=1024, step_ev=0.3, noise=False)[0]
    cube[1, 1] = np.nan
    np.save(tmp_path / "si.npy", cube)
    out_path = tmp_path / "t.h5"
    assert main(["thickness", str(tmp_path / "si.npy"), "--energy-axis", "-10", "0.3", "--kv", "200", "--beta", "15",
                 "--composition", "LiCoO2", "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "over 3 pixels" in out
    assert "1 of 4 pixels gave no thickness (NaN in the map)" in out
    assert "1 pixels have t <= 0 nm (vacuum)" in out
    with h5py.File(out_path, "r") as f:
        assert f["valid"][()].tolist() == [[1, 1], [1, 0]]
        assert f["thickness"][0, 1] == 0.0 and np.isnan(f["thickness"][1, 1])


def test_given_values_override_the_file_with_a_warning(image_dm3, capsys):
    path, _ = image_dm3
    with pytest.warns(UserWarning, match="records the beam energy 200, using the given --kv 300"):
        assert main(["thickness", str(path), "--kv", "300", "--composition", "LiCoO2"]) == 0
    assert "E0 = 300 keV, β = 15 mrad" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--kv", "200", "--beta", "15"], "give exactly one of --composition FORMULA, --mean-energy-loss EV or "
                                      "--density G_CM3 for the mean free path, got none"),
    (["--kv", "200", "--beta", "15", "--composition", "LiCoO2", "--density", "5"],
     "got --composition and --density"),
    (["--kv", "200", "--beta", "15", "--composition", "LiQqO2"], "unknown element symbol 'Qq'"),
    (["--kv", "200", "--beta", "15", "--composition", "LiCoO2", "--alpha", "10"], "--alpha is used by the Iakoubovskii"),
    (["--beta", "15", "--composition", "LiCoO2"], "--kv is needed: .*low_loss.npy does not record the beam energy"),
    (["--kv", "200", "--composition", "LiCoO2"], "--beta is needed: .*does not record the collection semi-angle"),
    (["--kv", "200", "--beta", "0.001", "--composition", "LiCoO2"], r"2·β·E0/E_m > 1"),
    (["--kv", "200", "--beta", "15", "--composition", "LiCoO2", "-o", "{tmp}/t.h5"],
     "-o writes a thickness map, but this is a single spectrum"),
    (["--kv", "200", "--beta", "15", "--composition", "LiCoO2", "-o", "{tmp}/t.npy"], "written as HDF5"),
    (["--kv", "200", "--beta", "15", "--composition", "LiCoO2", "-o", "{tmp}/absent/t.h5"], "does not exist"),
])
def test_bad_options_give_one_line_and_status_2(spectrum_npy, tmp_path, capsys, extra, message):
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    status = main(["thickness", str(spectrum_npy), "--energy-axis", "-10", "0.15", *extra])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("dpcstem: error: ")
    assert re.search(message, captured.err), captured.err
    assert not list(tmp_path.glob("t.*")) and not list(tmp_path.glob(".t.*"))


def test_unreadable_files_give_one_line_and_status_2(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.dm3"
    corrupt.write_bytes(b"\x00\x00\x00\x03 not really a Gatan file")
    for path, message in ((corrupt, "corrupt.dm3: cannot read it as a spectrum"),
                          (tmp_path / "absent.dm3", "absent.dm3: spectrum file not found")):
        status = main(["thickness", str(path), "--kv", "200", "--beta", "15", "--composition", "LiCoO2"])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and message in err
    np.save(tmp_path / "s.npy", np.ones(100))
    assert main(["thickness", str(tmp_path / "s.npy"), "--kv", "200", "--beta", "15", "--composition", "LiCoO2"]) == 2
    assert "has no energy axis; give --energy-axis OFFSET_EV STEP_EV" in capsys.readouterr().err


def test_command_line_program(spectrum_npy, tmp_path):
    run = [sys.executable, "-m", "dpcstem", "thickness", str(spectrum_npy), "--kv", "200", "--beta", "15",
           "--energy-axis", "-10", "0.15"]
    ok = subprocess.run([*run, "--composition", "LiCoO2"], capture_output=True, text=True, encoding="utf-8")
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"t = 1[0-9]{2}\.[0-9] nm", ok.stdout)
    bad = subprocess.run([*run, "--composition", "Li2Xx"], capture_output=True, text=True, encoding="utf-8")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [bad.stderr.strip()] and "unknown element symbol 'Xx'" in bad.stderr
    helptext = subprocess.run([sys.executable, "-m", "dpcstem", "thickness", "--help"], capture_output=True,
                              text=True, encoding="utf-8").stdout
    for unit in ("in kV", "β in mrad", "in eV", "g/cm³", "OFFSET_EV STEP_EV", "'thickness' in nm"):
        assert unit in helptext
