"""Results as HyperSpy signals: calibrated axes, units, and a result file read back."""

import h5py
import numpy as np
import pytest

from dpcstem.errors import UnreadableFileError
from dpcstem.io.results import load_result_arrays, write_result
from dpcstem.io.signals import load_result, result_to_signals, write_nexus_view


def _maps(shape=(5, 7), seed=0):
    rng = np.random.default_rng(seed)
    return {
        "deflection_x": (rng.normal(size=shape).astype(np.float32), "mrad"),
        "deflection_y": (rng.normal(size=shape).astype(np.float32), "mrad"),
        "field_x": (rng.normal(size=shape).astype(np.float32) * 1e7, "V/m"),
        "charge_density": (rng.normal(size=shape).astype(np.float32) * 1e5, "C/m^3"),
        "potential": (rng.normal(size=shape).astype(np.float32), "V"),
        "valid": (np.ones(shape, np.uint8), "1"),
    }


def _check_image_axes(signal, ny, nx, step_x, step_y):
    y, x = signal.axes_manager.signal_axes[1], signal.axes_manager.signal_axes[0]
    assert (x.name, x.size, x.units, x.offset) == ("x", nx, "nm", 0.0)
    assert (y.name, y.size, y.units, y.offset) == ("y", ny, "nm", 0.0)
    assert x.scale == pytest.approx(step_x)
    assert y.scale == pytest.approx(step_y)


def test_single_result_round_trips_through_load_result(tmp_path):
    maps = _maps()
    attrs = {"kv": 200.0, "alpha_mrad": 20.0, "step_x_nm": 0.5, "step_y_nm": 0.25, "thickness_nm": 100.0}
    path = write_result(tmp_path / "out.h5", maps, attrs)
    signals = load_result(path)
    assert set(signals) == set(maps)
    for name, (array, unit) in maps.items():
        s = signals[name]
        assert type(s).__name__ == "Signal2D"
        assert s.axes_manager.navigation_dimension == 0
        np.testing.assert_array_equal(s.data, array)
        _check_image_axes(s, 5, 7, 0.5, 0.25)
        assert s.metadata.General.title == name
        assert s.metadata.General.original_filename == "out.h5"
        assert s.original_metadata.kv == 200.0
    assert signals["field_x"].metadata.Signal.quantity == "Field x (V/m)"
    assert signals["deflection_y"].metadata.Signal.quantity == "Deflection y (mrad)"
    assert signals["charge_density"].metadata.Signal.quantity == "Charge density (C/m^3)"
    assert signals["potential"].metadata.Signal.quantity == "Potential (V)"
    assert signals["valid"].metadata.Signal.quantity == "Valid"


def test_bias_series_gets_a_bias_axis(tmp_path):
    n, ny, nx = 3, 4, 6
    rng = np.random.default_rng(1)
    maps = {
        "field_x": (rng.normal(size=(n, ny, nx)).astype(np.float32), "V/m"),
        "net_charge_density": (rng.normal(size=(n, ny, nx)).astype(np.float32), "C/m^3"),
        "bias": (np.array([0.0, 0.5, 1.0]), "V"),
        "registration_shift": (np.zeros((n, 2)), "px"),
    }
    path = write_result(tmp_path / "series.h5", maps, {"step_x_nm": 1.5, "step_y_nm": 1.5})
    signals = load_result(path)
    assert set(signals) == {"field_x", "net_charge_density"}  # bias and shifts are not images
    s = signals["net_charge_density"]
    np.testing.assert_array_equal(s.data, maps["net_charge_density"][0])
    bias_axis = s.axes_manager.navigation_axes[0]
    assert (bias_axis.name, bias_axis.units, bias_axis.size) == ("bias", "V", 3)
    np.testing.assert_allclose(bias_axis.axis, [0.0, 0.5, 1.0])
    assert bias_axis.scale == pytest.approx(0.5)
    _check_image_axes(s, ny, nx, 1.5, 1.5)
    assert s.metadata.Signal.quantity == "Net charge density (C/m^3)"


def test_unequal_bias_steps_give_a_non_uniform_axis():
    maps = {"field_x": (np.zeros((3, 2, 2)), "V/m"), "bias": (np.array([-1.0, 0.0, 2.5]), "V")}
    s = result_to_signals(maps, {"step_x_nm": 1.0})["field_x"]
    axis = s.axes_manager.navigation_axes[0]
    assert axis.name == "bias" and axis.units == "V"
    np.testing.assert_allclose(axis.axis, [-1.0, 0.0, 2.5])
    _check_image_axes(s, 2, 2, 1.0, 1.0)  # step_y defaults to step_x


def test_reconstruction_to_signals_and_back(tmp_path):
    """A reconstructed result, written and read back, keeps its values, units and scan step."""
    from dpcstem import Calibration
    from dpcstem.reconstruct import reconstruct
    from dpcstem.simulate import segments_from_deflection

    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=0.8, step_y_nm=1.2, thickness_nm=50)
    y, x = np.mgrid[0:6, 0:9]
    tx, ty = 0.1 * np.sin(x / 3.0), 0.05 * np.cos(y / 2.0)
    result = reconstruct(segments_from_deflection(tx, ty, cal), cal)
    path = write_result(tmp_path / "r.h5", result.maps(), cal.to_attrs())
    signals = load_result(path)
    np.testing.assert_allclose(signals["deflection_x"].data, tx, atol=1e-4)
    np.testing.assert_array_equal(signals["field_y"].data, result.field_y)
    _check_image_axes(signals["field_y"], 6, 9, 0.8, 1.2)
    assert signals["field_y"].metadata.Signal.quantity == "Field y (V/m)"


def test_load_result_of_a_bad_file(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"missing\.h5: not a readable dpcstem result file"):
        load_result(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(UnreadableFileError, match=r"bad\.h5: not a readable dpcstem result file"):
        load_result(bad)


def test_nexus_view_opens_in_hyperspy_with_axes(tmp_path):
    import hyperspy.api as hs

    maps = _maps(shape=(4, 3))
    maps["net_field_x"] = (np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3), "V/m")
    maps["bias"] = (np.array([0.0, 2.0]), "V")
    attrs = {"step_x_nm": 0.5, "step_y_nm": 0.25}
    path = tmp_path / "nx.h5"
    with h5py.File(path, "w") as f:
        for name, (array, unit) in maps.items():
            f[name] = array
            f[name].attrs["units"] = unit
        write_nexus_view(f, maps, attrs)
    with h5py.File(path, "r") as f:  # a link, not a copy
        assert f["hyperspy/field_x/field_x"].id == f["field_x"].id
    loaded = hs.load(path, file_format="NeXus", nxdata_only=True)
    by_title = {s.metadata.General.title: s for s in loaded}
    assert set(by_title) == {"deflection_x", "deflection_y", "field_x", "charge_density", "potential", "valid",
                             "net_field_x"}
    s = by_title["field_x"].as_signal2D((0, 1))
    np.testing.assert_array_equal(s.data, maps["field_x"][0])
    _check_image_axes(s, 4, 3, 0.5, 0.25)
    series = by_title["net_field_x"].as_signal2D((0, 1))
    np.testing.assert_array_equal(series.data, maps["net_field_x"][0])
    bias = series.axes_manager.navigation_axes[0]
    assert (bias.name, bias.units) == ("bias", "V")
    np.testing.assert_allclose(bias.axis, [0.0, 2.0])
    # The root datasets the result contract names are untouched by the view.
    arrays, _ = load_result_arrays(path)
    np.testing.assert_array_equal(arrays["field_x"][0], maps["field_x"][0])
