"""`dpcstem simulate` end to end: the files it writes are read and reconstructed as a user would."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from dpcstem import physics
from dpcstem.cli import main
from dpcstem.io import read_segments

SMALL = ["--shape", "12", "40", "--step", "0.5", "--alpha", "2", "--seed", "3"]


def dpcstem(*args):
    return subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def series_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("series")
    run = dpcstem("simulate", "bias-series", "--out", out, *SMALL, "--bias", "0", "1.0", "2.2", "--drift", "0.25",
                  "-0.5", "--mip", "18", "12", "--interface-width", "2", "--gains", "1", "0.95", "1.05", "1",
                  "--offsets", "100", "90", "110", "95", "--descan-ramp", "0.05", "0", "0", "-0.03")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    return out, run.stdout


def test_bias_series_writes_one_readable_file_per_bias(series_folder):
    out, stdout = series_folder
    names = ["bias_+0.000V.h5", "bias_+1.000V.h5", "bias_+2.200V.h5"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "truth.h5", "vacuum.h5"])
    assert "wrote 5 files" in stdout and "2.200" in stdout
    for name, bias in zip(names, (0.0, 1.0, 2.2)):
        acquisition = read_segments(out / name)
        assert acquisition.segments.shape == (4, 12, 40) and acquisition.segments.dtype == np.uint16
        assert acquisition.metadata["bias_v"] == bias
        values = acquisition.calibration_values
        assert values["kv"] == 200 and values["alpha_mrad"] == 2 and values["step_y_nm"] == 0.5
        assert values["thickness_nm"] == 131 and values["detector_rotation_deg"] == 0 and values["flip"] is False
        assert "collection_outer_mrad" not in values  # not given: beyond the disc
    vacuum = read_segments(out / "vacuum.h5")
    assert "bias_v" not in vacuum.metadata
    # The vacuum shows the gains and offsets: the mean of A over B is that of 1·d + 100 over 0.95·d + 90.
    means = vacuum.segments.reshape(4, -1).mean(axis=1)
    assert means[0] / means[1] == pytest.approx((1e4 + 100) / (0.95e4 + 90), rel=2e-3)


def test_truth_file_holds_each_bias_and_the_net_maps(series_folder):
    out, _ = series_folder
    with h5py.File(out / "truth.h5", "r") as f:
        assert f["bias"][()].tolist() == [0.0, 1.0, 2.2]
        assert [s.decode() for s in f["files"][()]] == ["bias_+0.000V.h5", "bias_+1.000V.h5", "bias_+2.200V.h5"]
        assert np.allclose(f["drift_px"][()], [[0, 0], [0.25, -0.5], [0.5, -1.0]])
        for name, unit in [("field_x", "V/m"), ("charge_density", "C/m^3"), ("potential", "V"),
                           ("deflection_x", "mrad"), ("net_field_x", "V/m"), ("net_charge_density", "C/m^3")]:
            assert f[name].shape == (3, 12, 40) and f[name].attrs["units"] == unit
        assert np.all(f["net_field_x"][0] == 0)
        assert np.allclose(f["net_field_x"][2], f["field_x"][2] - f["field_x"][0])
        assert f["potential_drop"][()].tolist() == pytest.approx([0.0, 1.0, 2.2])
        widths = f["layer_width"][()]
        assert widths[2] / widths[1] == pytest.approx(np.sqrt(2.2))
        assert f["areal_charge"].attrs["units"] == "C/m^2" and f["net_areal_charge"][0] == 0
        assert f["thickness"].shape == (12, 40) and np.all(f["thickness"][()] == 131)
        assert f["mean_inner_potential"][0, 0] == pytest.approx(18.0)
        assert f["descan_x"][0, -1] - f["descan_x"][0, 0] == pytest.approx(0.05)
        assert f.attrs["layer_model"] == "MottSchottky" and f.attrs["seed"] == 3
        assert np.allclose(f.attrs["gains"], [1, 0.95, 1.05, 1])


def test_series_files_reconstruct_with_the_vacuum_reference(series_folder, tmp_path):
    out, _ = series_folder
    result = tmp_path / "result.h5"
    run = dpcstem("reconstruct", out / "bias_+2.200V.h5", "--reference", out / "vacuum.h5", "-o", result)
    assert run.returncode == 0, run.stderr
    with h5py.File(result, "r") as f:
        gains = np.array([1, 0.95, 1.05, 1])
        assert np.allclose(f.attrs["segment_gains"], gains / gains.mean(), rtol=2e-3)
        assert f.attrs["thickness_nm"] == 131 and f["field_x"].shape == (12, 40)


def test_a_simulated_layer_reconstructs_to_its_truth(tmp_path):
    out = tmp_path / "layer"
    run = dpcstem("simulate", "layer", "--out", out, *SMALL, "--bias", "1.5", "--built-in", "0.1", "--share", "0.6",
                  "--no-noise", "--thickness", "131", "270", "--interface-normal", "180")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["segments.h5", "thickness.h5", "truth.h5", "vacuum.h5"]
    result = tmp_path / "result.h5"
    run = dpcstem("reconstruct", out / "segments.h5", "--thickness-map", out / "thickness.h5", "-o", result)
    assert run.returncode == 0, run.stderr
    with h5py.File(out / "truth.h5", "r") as truth, h5py.File(result, "r") as f:
        assert truth["potential_drop"][()] == pytest.approx(0.1 + 0.6 * 1.5)
        assert truth["bias"][()] == 1.5 and truth["field_x"].shape == (12, 40)
        expected = truth["deflection_x"][()]
        assert np.abs(f["deflection_x"][()] - expected).max() < 2e-3 * np.abs(expected).max()
        # The field: the probe-weighted deflection through the local thickness.
        field = physics.field_v_per_m_from_deflection(expected, 200.0, truth["thickness"][()])
        assert np.abs(f["field_x"][()] - field).max() < 2e-3 * np.abs(field).max()
        assert np.abs(field).max() == pytest.approx(abs(truth["peak_field"][()]), rel=0.15)


def test_the_same_seed_writes_the_same_segments(tmp_path):
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main(["simulate", "layer", "--out", str(tmp_path / name), "--shape", "6", "9", "--seed", seed,
                     "--no-vacuum"]) == 0
    first, again, other = (read_segments(tmp_path / n / "segments.h5").segments for n in "abc")
    assert first.tobytes() == again.tobytes() != other.tobytes()


def test_existing_output_is_not_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", "layer", "--out", str(out), "--shape", "4", "6"]) == 0
    before = (out / "segments.h5").read_bytes()
    capsys.readouterr()
    assert main(["simulate", "layer", "--out", str(out), "--shape", "4", "6", "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "segments.h5: output exists" in err and "--overwrite" in err
    assert (out / "segments.h5").read_bytes() == before
    assert main(["simulate", "layer", "--out", str(out), "--shape", "4", "6", "--seed", "9", "--overwrite"]) == 0
    assert (out / "segments.h5").read_bytes() != before
    assert sorted(p.name for p in out.iterdir()) == ["segments.h5", "truth.h5", "vacuum.h5"]  # no temporaries


@pytest.mark.parametrize("options, message", [
    (["--dose", "-5"], "dose must be positive and finite"),
    (["--mip", "40", "10", "--interface-width", "0.2", "--no-probe"], "beyond alpha = 1 mrad"),
    (["--thickness", "1", "2", "3"], "--thickness takes one value or two"),
    (["--thickness", "0"], "thickness_nm must be positive"),
    (["--gains", "1", "1", "1", "0"], "gains must be 4 positive numbers"),
    (["--collection", "2", "3"], "collection_inner_mrad 2.0 must be smaller than alpha_mrad 1.0"),
    (["--layer", "gouy-chapman", "--counter-density", "1e25"], "--counter-density makes a two-sided"),
    (["--density", "-1"], "density_per_m3 must be positive"),
    (["--shape", "0", "5"], "--shape must be two positive numbers"),
    (["--dose", "5e5"], "beyond the uint16 range"),
    (["--oversample", "0"], "oversample must be a whole number of at least 1"),
    (["--edge-blur", "-0.1"], "edge blur must be zero or positive"),
])
def test_bad_values_give_one_line(options, message, tmp_path, capsys):
    status = main(["simulate", "layer", "--out", str(tmp_path / "x"), "--shape", "6", "8", *options])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("dpcstem: error: ") and err.count("\n") == 1 and message in err
    assert not any((tmp_path / "x").glob("*.h5"))


@pytest.mark.parametrize("options, message", [
    (["--dose", "lots"], "argument --dose: invalid float value: 'lots'"),
    (["--layer", "stern"], "argument --layer: invalid choice: 'stern'"),
    (["--gains", "1", "1"], "argument --gains: expected 4 arguments"),
])
def test_bad_option_syntax_gives_one_line(options, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "layer", "--out", str(tmp_path), *options])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err
    assert err.startswith("dpcstem: error: dpcstem simulate layer: ")


def test_series_biases_must_differ(tmp_path, capsys):
    assert main(["simulate", "bias-series", "--out", str(tmp_path), "--bias", "0", "1", "1.0004"]) == 2
    assert "--bias values must differ by at least 1 mV" in capsys.readouterr().err


def test_help_lists_both_kinds_with_units():
    run = dpcstem("simulate", "bias-series", "--help")
    assert run.returncode == 0
    for text in ("--dose E", "electrons per probe position", "--alpha MRAD", "--mip BEFORE AFTER", "in V",
                 "--drift DY DX", "in pixels", "--thickness NM"):
        assert text in run.stdout
    top = dpcstem("simulate", "--help")
    assert "layer" in top.stdout and "bias-series" in top.stdout


def test_the_printed_measured_peak_is_what_bias_series_recovers(tmp_path):
    """The simulator's table gives the layer model's peak field and the probe-weighted one a detector
    measures; a bias series of its files recovers the latter (the former is a kinked peak no probe resolves),
    and the interface it prints is the one to give."""
    run = dpcstem("simulate", "bias-series", "--shape", "48", "96", "--bias", "1.5", "--no-noise",
                  "--out", tmp_path / "s")
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line.strip().startswith("1.500")]
    model_peak, measured_peak = float(rows[0][3]), float(rows[0][4])
    assert measured_peak < 0.9 * model_peak
    assert "interface through (47.5, 23.5) nm, normal 0°" in run.stdout
    series = dpcstem("bias-series", tmp_path / "s", "--reference", tmp_path / "s" / "vacuum.h5", "--no-register",
                     "--interface", "47.5", "40", "47.5", "5", "-o", tmp_path / "series.h5")
    assert series.returncode == 0, series.stderr
    with h5py.File(tmp_path / "series.h5", "r") as f:
        recovered = float(f["layer_peak_field_v_per_m"][0])
    assert recovered == pytest.approx(measured_peak, rel=0.03)
