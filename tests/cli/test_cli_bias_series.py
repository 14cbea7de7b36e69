"""`dpcstem bias-series` end to end, in a subprocess as a user runs it, on simulated series written to files.

Each numbered failure of the bias-series issue has a test here: registration that invents
drift (featureless sums, an annular detector whose sum shows the layer, drift without
structure), biases that disagree with the files, return sweeps, and the layer figures.
"""

import csv
import shlex
import subprocess
import sys

import h5py
import numpy as np
import pytest

from dpcstem import Calibration, physics
from dpcstem.bias import command_line
from dpcstem.interface import Interface, profile_across
from dpcstem.simulate.files import write_series
from dpcstem.simulate import MottSchottky, simulate_bias_series

STEP = 0.5
#: Convergence semi-angle, mrad: a probe of about 1.5 nm, so the 0.5 nm scan samples it finely enough
#: for a sub-pixel shift to be interpolated (a sharper probe aliases, and shifting its maps errs by percent).
ALPHA = 1.0
SHAPE = (112, 128)
POINT = (32.0, 28.0)
NORMAL = 15.0  # degrees: the layer crosses the pixel grid at every phase, as a real one does
INTERFACE = Interface.from_normal(POINT, NORMAL, 50.0)
POINTS = [*INTERFACE.start_nm, *INTERFACE.end_nm]


def dpcstem(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def make_series(folder, *, noise=True, drift=(0.0, 0.0), particles=0, adf=False, inner=None, biases=(0.0, 1.0, 2.0),
                dose=1.5e5, seed=3, rotation=None, descan=None):
    """A series as files in ``folder`` (the layer through POINT, its side along NORMAL), and its truth.

    ``rotation`` (ψ in degrees, flip): the detector's, which the files then do not record.
    """
    extra = {} if inner is None else {"collection_inner_mrad": inner, "collection_outer_mrad": ALPHA}
    if rotation is not None:
        extra.update(detector_rotation_deg=rotation[0], flip=rotation[1])
    cal = Calibration(kv=200, alpha_mrad=ALPHA, step_x_nm=STEP, thickness_nm=131, **extra)
    layer = MottSchottky(density_per_m3=1e25, eps_r=12, potential_drop_v=0.3, sheet_nm=1.5)
    sim = simulate_bias_series(layer, cal, SHAPE, biases=biases, share=0.5, point_nm=POINT, normal_deg=NORMAL,
                               drift_px=drift, dose=dose, noise=noise, rng=seed, particles=particles, adf=adf,
                               vacuum=False, dtype=np.float32, descan=descan)
    folder.mkdir(parents=True, exist_ok=True)
    for path in write_series(sim, folder):
        if rotation is not None:
            with h5py.File(path, "r+") as f:  # an instrument that records no rotation
                for name in ("detector_rotation_deg", "flip"):
                    f.attrs.pop(name, None)
    return sim


def net_field_error(sim, path, index, half_range=12.0):
    """Largest error of the net field profile across the layer, as a fraction of the true peak."""
    with h5py.File(path, "r") as f:
        fx, fy, ok = f["net_field_x"][index], f["net_field_y"][index], f["net_valid"][index].astype(bool)
    net = sim.net_truth(index)
    true = [physics.field_v_per_m_from_deflection(net[c], sim.calibration.kv, 131.0)
            for c in ("deflection_x", "deflection_y")]
    want = profile_across(INTERFACE.normal_component(*true), INTERFACE, STEP, half_range_nm=half_range, bin_nm=1.0)
    got = profile_across(INTERFACE.normal_component(fx, fy), INTERFACE, STEP, half_range_nm=half_range, bin_nm=1.0,
                         valid=ok)
    peak = np.nanmax(np.abs(want.mean))
    layer = np.abs(want.mean) > 0.1 * peak
    return float(np.nanmax(np.abs(got.mean - want.mean)[layer]) / peak)


def shifts(path):
    with h5py.File(path, "r") as f:
        return f["registration_shift"][()], [str(s) for s in f.attrs["registration_source"]]


def test_drift_on_a_structured_specimen_is_recovered(tmp_path):
    sim = make_series(tmp_path / "s", drift=(0.35, -0.55), particles=40, adf=True, dose=1e6)
    run = dpcstem("bias-series", tmp_path / "s", "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "simultaneous dark-field image" in run.stdout
    got, sources = shifts(tmp_path / "out.h5")
    assert sources == ["reference", "measured", "measured"]
    np.testing.assert_allclose(got, sim.drifts_px, atol=0.05)
    assert "warning" not in run.stderr
    for i in (1, 2):
        assert net_field_error(sim, tmp_path / "out.h5", i) < 0.03


def test_drift_on_the_segment_sum_of_a_structured_specimen_is_recovered(tmp_path):
    sim = make_series(tmp_path / "s", drift=(0.35, -0.55), particles=40, dose=1e6)
    run = dpcstem("bias-series", tmp_path / "s", "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "registration on the segment sum" in run.stdout
    got, _ = shifts(tmp_path / "out.h5")
    np.testing.assert_allclose(got, sim.drifts_px, atol=0.05)
    # the evidence, printed per acquisition and stored: the shift's standard error covers its error
    assert run.stdout.count("structure SNR") == 2 and "residual" in run.stdout and run.stdout.count(" ± ") >= 2
    with h5py.File(tmp_path / "out.h5", "r") as f:
        stderr = f["registration_shift_stderr"][1:]
    assert np.all((stderr > 0) & (stderr <= 0.1))
    assert np.all(np.abs(got[1:] - np.asarray(sim.drifts_px)[1:]).max(axis=1) <= 4 * stderr)


@pytest.mark.parametrize("noise", [False, True], ids=["noise-free", "noisy"])
def test_no_drift_and_a_featureless_sum_invents_no_shift(tmp_path, noise):
    sim = make_series(tmp_path / "s", noise=noise)
    run = dpcstem("bias-series", tmp_path / "s", "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    got, sources = shifts(tmp_path / "out.h5")
    assert np.abs(got).max() <= 0.1 or "--no-register" in run.stderr
    assert np.abs(got).max() == 0.0 and sources[1:] == ["rejected", "rejected"]
    # one warning, naming the three ways out
    assert run.stderr.count("warning") == 1
    for option in ("--shift", "--registration-image", "--no-register"):
        assert option in run.stderr
    assert "along the interface normal" not in run.stdout
    for i in (1, 2):
        assert net_field_error(sim, tmp_path / "out.h5", i) < 0.05


@pytest.mark.parametrize("interface", [False, True], ids=["sum", "sum-without-band"])
def test_an_annular_detector_whose_sum_shows_the_layer_is_not_registered_on_the_layer(tmp_path, interface):
    # β_out = α: the disc leaves the outer edge as the layer deflects it, so the sum shows the layer.
    sim = make_series(tmp_path / "s", inner=0.33, dose=1e6)
    total = [a.segments.sum(axis=0) for a in sim.acquisitions]
    contrast = np.ptp(total[2].mean(axis=0)) / total[2].mean()
    assert contrast > 1e-3  # the layer is in the sum, above its noise
    args = ["--interface", *POINTS] if interface else []
    run = dpcstem("bias-series", tmp_path / "s", *args, "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    got, _ = shifts(tmp_path / "out.h5")
    assert np.abs(got).max() <= 0.1
    for i in (1, 2):
        assert net_field_error(sim, tmp_path / "out.h5", i) < 0.05


def test_drift_without_structure_warns_and_claims_no_shift(tmp_path):
    make_series(tmp_path / "s", drift=(0.4, -0.6))
    run = dpcstem("bias-series", tmp_path / "s", "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "shift 0.00" not in run.stdout and "along the interface normal" not in run.stdout
    assert run.stdout.count("no shift applied") == 2
    assert "warning" in run.stderr and "--shift" in run.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert list(f.attrs["registration_source"][1:]) == ["rejected", "rejected"]
        assert np.isfinite(f["registration_structure_snr"][1:]).all()


def test_a_bias_that_contradicts_the_file_is_refused_unless_overridden(tmp_path):
    make_series(tmp_path / "s", noise=False, biases=(0.0, 1.0))
    files = sorted((tmp_path / "s").glob("bias_*.h5"))
    run = dpcstem("bias-series", *files, "--bias", "1", "0", "-o", tmp_path / "out.h5")
    assert run.returncode == 2
    assert "records a bias of 0 V but --bias gives 1 V" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out.h5").exists()
    run = dpcstem("bias-series", *files, "--bias", "1", "0", "--override-bias", "--no-register",
                  "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("using the given") == 2


def test_the_order_of_the_files_does_not_change_the_net_charge(tmp_path):
    make_series(tmp_path / "s", noise=False, biases=(0.0, 2.0))
    files = sorted((tmp_path / "s").glob("bias_*.h5"))
    outs = []
    for k, order in enumerate((files, files[::-1])):
        out = tmp_path / f"out{k}.h5"
        run = dpcstem("bias-series", *order, "--no-register", "--interface", *POINTS, "--half-range", 15, "-o", out)
        assert run.returncode == 0, run.stderr
        with h5py.File(out, "r") as f:
            outs.append((f["layer_bias"][()], f["layer_areal_charge_c_per_m2"][()]))
    np.testing.assert_array_equal(outs[0][0], [2.0])
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-6)
    assert outs[0][1][0] < 0  # the layer charges negatively at +2 V in this specimen


def test_a_return_sweep_keeps_each_acquisition(tmp_path):
    sim = make_series(tmp_path / "s", noise=False, biases=(0.0, 1.0, 0.0))
    run = dpcstem("bias-series", tmp_path / "s", "--no-register", "--interface", *POINTS, "--half-range", 15,
                  "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["bias"][()], [0.0, 1.0, 0.0])
        np.testing.assert_array_equal(f["acquisition_index"][()], [0, 1, 2])
        assert f.attrs["reference_index"] == 0
        charge = f["layer_areal_charge_c_per_m2"][()]
        np.testing.assert_array_equal(f["layer_index"][()], [1, 2])
    assert abs(charge[1]) < 0.01 * abs(charge[0])  # back at 0 V: reversible, no net charge left
    # the reference can be the return's 0 V map instead
    run = dpcstem("bias-series", tmp_path / "s", "--no-register", "--reference-index", 2, "-o", tmp_path / "b.h5")
    assert run.returncode == 0, run.stderr
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert f.attrs["reference_index"] == 2
    run = dpcstem("bias-series", tmp_path / "s", "--reference-index", 1, "-o", tmp_path / "c.h5")
    assert run.returncode == 2 and "--reference-index 1 is not an acquisition at the reference bias" in run.stderr
    assert sim.biases.tolist() == [0.0, 1.0, 0.0]


def test_layer_figures_are_stored_written_as_csv_and_reproduced_by_the_command(tmp_path):
    make_series(tmp_path / "s", noise=True, biases=(0.0, 1.0, 2.0))
    run = dpcstem("bias-series", tmp_path / "s", "--no-register", "--interface", *POINTS, "--table",
                  tmp_path / "t.csv", "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "normal points toward (+0.966, +0.259) = 15.0 deg" in run.stdout
    assert "half-range" in run.stdout and "from the data" in run.stdout
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_allclose(f.attrs["interface_points_nm"], POINTS)
        np.testing.assert_allclose(f.attrs["interface_normal"], [np.cos(np.radians(NORMAL)), np.sin(np.radians(NORMAL))],
                                   atol=1e-12)
        assert f.attrs["half_range_source"] == "default"
        half = float(f.attrs["half_range_nm"])
        assert 5.0 < half < 32.0  # the layer's reach, not the whole scan
        stored = {name: f[name][()] for name in f if name.startswith("layer_")}
        assert f["net_potential"].shape == (3, *SHAPE) and f["net_potential"].attrs["units"] == "V"
    with open(tmp_path / "t.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [float(r["bias_V"]) for r in table] == [1.0, 2.0]
    np.testing.assert_allclose([float(r["areal_charge_c_per_m2[C/m^2]"]) for r in table],
                               stored["layer_areal_charge_c_per_m2"], rtol=1e-12)
    assert all(float(r["areal_charge_stderr[C/m^2]"]) > 0 for r in table)
    # the command that reproduces it (as the demo prints it) gives the same table
    line = command_line(tmp_path / "s", output=tmp_path / "again.h5", interface=INTERFACE,
                        table=tmp_path / "again.csv", options=["--no-register"])
    again = subprocess.run([sys.executable, "-m", "dpcstem", *shlex.split(line)[1:]], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "t.csv").read_text()


def test_an_interface_leaving_the_scan_is_refused(tmp_path):
    make_series(tmp_path / "s", noise=False, biases=(0.0, 1.0))
    run = dpcstem("bias-series", tmp_path / "s", "--interface", 32, 10, 32, 90, "-o", tmp_path / "out.h5")
    assert run.returncode == 2
    assert "--interface: point (32, 90) nm lies outside the scan" in run.stderr
    assert not (tmp_path / "out.h5").exists()


def test_progress_goes_through_every_stage(tmp_path):
    make_series(tmp_path / "s", noise=False, biases=(0.0, 1.0))
    vacuum = tmp_path / "s" / "bias_+0.000V.h5"
    run = dpcstem("bias-series", tmp_path / "s" / "bias_+1.000V.h5", vacuum, "--reference", vacuum, "--no-register",
                  "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "bias series: vacuum reference" in run.stdout
    assert "bias series: reconstructing, registering and subtracting (2 maps)" in run.stdout


def test_registration_on_a_dataset_the_user_names(tmp_path):
    sim = make_series(tmp_path / "s", noise=False, drift=(0.3, 0.45), particles=40, adf=True, biases=(0.0, 1.0))
    files = sorted((tmp_path / "s").glob("bias_*.h5"))
    run = dpcstem("bias-series", *files, "--registration-image", "haadf", "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "registration on dataset 'haadf' of each file" in run.stdout
    got, sources = shifts(tmp_path / "out.h5")
    assert sources == ["reference", "measured"]
    np.testing.assert_allclose(got, sim.drifts_px, atol=0.05)
    run = dpcstem("bias-series", *files, "--registration-image", "nothing", "-o", tmp_path / "bad.h5")
    assert run.returncode == 2 and "no dataset 'nothing' (the registration image)" in run.stderr


# The simulator's bias raises the potential of the side the normal points away from (d < 0):
# electrons bend toward higher potential, so the net deflection along the normal is negative.
SIMULATED_BIASED_SIDE = "-"


def test_a_rotation_fitted_on_the_reference_is_settled_by_the_bias_polarity(tmp_path):
    sim = make_series(tmp_path / "s", rotation=(200.0, True), dose=1e6)
    # a layer varies along one direction only: it fixes the angle, not the flip, which the user gives
    common = ["--fit-rotation", "--flip", "--interface", *POINTS, "--no-register"]
    run = dpcstem("bias-series", tmp_path / "s", *common, "--biased-side", SIMULATED_BIASED_SIDE,
                  "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "180° branch from the polarity of the bias" in run.stdout and "warning" not in run.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert abs((f.attrs["detector_rotation_deg"] - 200.0 + 180.0) % 360.0 - 180.0) < 1.0
        assert bool(f.attrs["flip"]) and f.attrs["detector_rotation_deg_source"] == "fitted"
        assert f.attrs["flip_source"] == "user"
        assert f.attrs["rotation_fit_polarity"] == "bias" and f.attrs["rotation_bias_significance"] > 10
    for i in (1, 2):
        assert net_field_error(sim, tmp_path / "out.h5", i) < 0.05
    # the other side stated: the other branch, the field inverted
    run = dpcstem("bias-series", tmp_path / "s", *common, "--biased-side", "+", "-o", tmp_path / "other.h5")
    assert run.returncode == 0, run.stderr
    with h5py.File(tmp_path / "other.h5", "r") as f:
        assert abs((f.attrs["detector_rotation_deg"] - 20.0 + 180.0) % 360.0 - 180.0) < 1.0
    assert net_field_error(sim, tmp_path / "other.h5", 2) > 1.5


def test_a_rotation_fitted_without_a_known_sign_is_warned_as_a_guess(tmp_path):
    make_series(tmp_path / "s", rotation=(200.0, True), biases=(0.0, 2.0), dose=1e6)
    run = dpcstem("bias-series", tmp_path / "s", "--fit-rotation", "--flip", "--no-register", "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "is a guess" in run.stderr and "--charge-sign-region" in run.stderr
    assert "fitted on the reference acquisition, applied to all" in run.stdout
    run = dpcstem("bias-series", tmp_path / "s", "--biased-side", "-", "-o", tmp_path / "bad.h5")
    assert run.returncode == 2 and "--biased-side" in run.stderr and "--fit-rotation" in run.stderr


def test_a_descan_region_on_the_reference_removes_the_descan_from_every_bias_and_leaves_the_net_maps(tmp_path):
    from dpcstem.simulate import Descan

    sim = make_series(tmp_path / "s", noise=False, descan=Descan(linear_mrad=((0.05, -0.03), (0.04, 0.06))))
    # field-free at every bias: the far side of the scan from the layer
    far = ["--descan-region", 0, 0, 8, SHAPE[0] * STEP]
    plain = dpcstem("bias-series", tmp_path / "s", "--no-register", "--descan-order", 1, "-o", tmp_path / "plain.h5")
    fitted = dpcstem("bias-series", tmp_path / "s", "--no-register", "--descan-order", 1, *far, "-o",
                     tmp_path / "fitted.h5")
    assert plain.returncode == 0 and fitted.returncode == 0, fitted.stderr
    assert "fitted over the descan region of the reference acquisition" in fitted.stdout
    with h5py.File(tmp_path / "plain.h5", "r") as a, h5py.File(tmp_path / "fitted.h5", "r") as b:
        assert b.attrs["descan_source"] == "region" and a.attrs["descan_source"] == "none"
        np.testing.assert_allclose(b["net_deflection_x"][2], a["net_deflection_x"][2], atol=1e-6)
        removed = b["deflection_x"][0] - a["deflection_x"][0]  # minus the descan surface, the same for all
        for i in (1, 2):
            np.testing.assert_allclose(b["deflection_x"][i] - a["deflection_x"][i], removed, atol=1e-5)
        # what was removed is the instrument's descan (a plane the simulator added), not field
        descan_x, descan_y = sim.descan(SHAPE)
        assert np.ptp(descan_x) > 0.05
        np.testing.assert_allclose(-removed, descan_x, atol=0.02 * np.ptp(descan_x))
        np.testing.assert_allclose(a["deflection_y"][1] - b["deflection_y"][1], descan_y, atol=0.02 * np.ptp(descan_y))


def test_a_detector_that_collects_the_whole_disc_registers_on_its_whole_sum(tmp_path):
    # The specimen's only bias-independent structure is at the interface (a thickness step that
    # scatters). A detector with no hole and no outer edge collects the whole disc at any
    # deflection, so its sum does not show the layer: leaving the interface band out of the
    # registration (needed for an annular detector) would leave nothing to register on.
    from dpcstem.simulate import StepThickness

    cal = Calibration(kv=200, alpha_mrad=ALPHA, step_x_nm=STEP, thickness_nm=131)
    layer = MottSchottky(density_per_m3=1e25, eps_r=12, potential_drop_v=0.3, sheet_nm=1.5)
    drift = (0.3, -0.45)
    sim = simulate_bias_series(layer, cal, SHAPE, biases=(0.0, 1.0, 2.0), share=0.5, point_nm=POINT,
                               normal_deg=NORMAL, drift_px=drift, dose=1e6, rng=5, vacuum=False, dtype=np.float32,
                               thickness=StepThickness(131.0, 171.0, width_nm=2.0, point_nm=POINT, normal_deg=NORMAL),
                               scattering_mfp_nm=150.0)
    (tmp_path / "s").mkdir()
    write_series(sim, tmp_path / "s")
    run = dpcstem("bias-series", tmp_path / "s", "--thickness", 131, "--interface", *POINTS, "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "the segment sum (whole: with no hole" in run.stdout
    got, sources = shifts(tmp_path / "out.h5")
    assert sources == ["reference", "measured", "measured"]
    normal = np.array([np.sin(np.radians(NORMAL)), np.cos(np.radians(NORMAL))])  # (y, x)
    # the structure runs along the interface: the shift is measured across it, as the drift's component there
    np.testing.assert_allclose(got @ normal, sim.drifts_px @ normal, atol=0.05)


def test_an_assumed_rotation_is_judged_by_the_curl_it_leaves_on_the_reference(tmp_path):
    # noise-free: on a noisy 1-D layer the divergence's noise hides the curl an assumed rotation leaves
    make_series(tmp_path / "s", rotation=(200.0, True), biases=(0.0, 1.0), noise=False)
    run = dpcstem("bias-series", tmp_path / "s", "--no-register", "-o", tmp_path / "out.h5")
    assert run.returncode == 0, run.stderr
    assert "assumed detector rotation 0° and flip off (the file records none): rms curl/div" in run.stdout
    assert "detector rotation: the assumed 0° leaves a curl" in run.stderr and "--fit-rotation" in run.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f.attrs["rotation_curl_ratio"] > 3 * f.attrs["rotation_best_curl_ratio"]
