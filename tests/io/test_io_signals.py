"""Results as HyperSpy signals: dpcstem's signal types through ``hs.load`` and ``load_result``, and pyxem.

The result files are made by the command line, as a user makes them: ``dpcstem reconstruct``
for one acquisition and ``dpcstem bias-series`` for a series, with the biases given in
increasing order and out of order.
"""

import shutil
from pathlib import Path
import warnings

import h5py
import numpy as np
import pytest

from dpcstem import Calibration
from dpcstem.cli import main
from dpcstem.errors import InputDataError, UnreadableFileError
from dpcstem.io import load_result, load_result_arrays, write_result
from dpcstem.io.signals import ChargeDensityMap, DeflectionMap, FieldMap, PotentialMap, from_beam_shift
from dpcstem.simulate import MottSchottky, simulate_bias_series
from dpcstem.simulate.files import write_series

STEP_X, STEP_Y = 0.5, 0.75
BIASES = (0.0, 1.0, 2.5)  # unequal steps: a non-uniform bias axis
CAL = ["--kv", "200", "--alpha", "1.5", "--step", str(STEP_X), str(STEP_Y), "--thickness", "131", "--collection", "0", "inf"]


@pytest.fixture(scope="module")
def acquisitions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    cal = Calibration(kv=200, alpha_mrad=1.5, step_x_nm=STEP_X, step_y_nm=STEP_Y, thickness_nm=131)
    layer = MottSchottky(density_per_m3=1e25, eps_r=12, potential_drop_v=0.3, sheet_nm=1.5)
    sim = simulate_bias_series(layer, cal, (32, 24), biases=BIASES, share=0.5, point_nm=(6.0, 12.0),
                               normal_deg=15.0, rng=3)
    files = write_series(sim, folder, seed=3)
    return folder, [str(f) for f in files[:len(BIASES)]]


@pytest.fixture(scope="module")
def single(acquisitions, tmp_path_factory):
    _, files = acquisitions
    out = tmp_path_factory.mktemp("single") / "single.h5"
    with pytest.warns(UserWarning, match="plane across the scan"):  # the simulated descan, left in: warned
        assert main(["reconstruct", files[1], *CAL, "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module", params=["in order", "out of order"])
def series(request, acquisitions, tmp_path_factory):
    _, files = acquisitions
    order = [0, 1, 2] if request.param == "in order" else [2, 0, 1]
    folder = tmp_path_factory.mktemp("result")
    if request.param == "out of order":
        # Acquired in the order 2.5, 0, 1 V: copies that record no acquisition index, so the
        # order given is the order of acquisition, and the biases are not increasing.
        copies = []
        for i in order:
            copy = folder / Path(files[i]).name
            shutil.copyfile(files[i], copy)
            with h5py.File(copy, "r+") as f:
                del f.attrs["acquisition_index"]
            copies.append(str(copy))
        inputs = copies
    else:
        inputs = [files[i] for i in order]
    out = folder / "series.h5"
    assert main(["bias-series", *inputs, *CAL, "--no-register", "-o", str(out)]) == 0
    return out, [BIASES[i] for i in order]


def _hs_load(path):
    import hyperspy.api as hs

    loaded = hs.load(path, file_format="hspy")  # a list, or one signal where the file holds one
    return {s.metadata.General.title: s for s in (loaded if isinstance(loaded, list) else [loaded])}


def _check_image_axes(signal, shape):
    x, y = signal.axes_manager.signal_axes
    assert (x.name, x.units, x.size, x.offset) == ("x", "nm", shape[-1], 0.0)
    assert (y.name, y.units, y.size, y.offset) == ("y", "nm", shape[-2], 0.0)
    assert (x.scale, y.scale) == (pytest.approx(STEP_X), pytest.approx(STEP_Y))


def _check_metadata(signal, quantity, unit, path):
    assert signal.metadata.Signal.quantity == quantity
    assert signal.units == unit == signal.metadata.Signal.units
    assert signal.metadata.Acquisition_instrument.TEM.beam_energy == 200.0
    assert signal.metadata.Acquisition_instrument.TEM.convergence_angle == 1.5
    calibration = signal.metadata.DPC.calibration
    assert (calibration.thickness_nm, calibration.step_y_nm, calibration.thickness_nm_source) == (131.0, STEP_Y, "user")
    provenance = signal.metadata.DPC.provenance
    assert provenance.dpcstem_version
    with h5py.File(path) as f:
        digests = {k.split(":", 1)[1]: v for k, v in f.attrs.items() if k.startswith("sha256:")}
    assert digests and provenance.sha256.as_dictionary() == digests
    assert signal.original_metadata.kv == 200.0


@pytest.mark.parametrize("how", ["hs.load", "load_result"])
def test_single_result_as_dpcstem_signals(single, how):
    signals = _hs_load(single) if how == "hs.load" else load_result(single)
    arrays, _ = load_result_arrays(single)
    assert type(signals["deflection"]) is DeflectionMap and type(signals["field"]) is FieldMap
    assert type(signals["charge_density"]) is ChargeDensityMap and type(signals["potential"]) is PotentialMap
    assert {"field_x", "field_y", "deflection_x"}.isdisjoint(signals)  # the components live in the vector maps
    field = signals["field"]
    assert field.metadata.Signal.signal_type == "electric_field"
    (component,) = field.axes_manager.navigation_axes
    assert (component.name, component.size) == ("component", 2)
    np.testing.assert_array_equal(field.data, np.stack([arrays["field_x"][0], arrays["field_y"][0]]))
    np.testing.assert_array_equal(field.inav[1].data, arrays["field_y"][0])
    np.testing.assert_array_equal(signals["charge_density"].data, arrays["charge_density"][0])
    _check_image_axes(field, arrays["field_x"][0].shape)
    _check_metadata(field, "Field (V/m)", "V/m", single)
    _check_metadata(signals["deflection"], "Deflection (mrad)", "mrad", single)
    _check_metadata(signals["charge_density"], "Charge density (C/m^3)", "C/m^3", single)
    _check_metadata(signals["potential"], "Potential (V)", "V", single)
    assert signals["charge_density"].axes_manager.navigation_dimension == 0
    if how == "load_result":
        assert signals["potential"].metadata.General.original_filename == "single.h5"


@pytest.mark.parametrize("how", ["hs.load", "load_result"])
def test_bias_series_has_the_real_biases_in_increasing_order(series, how):
    path, given = series
    signals = _hs_load(path) if how == "hs.load" else load_result(path)
    arrays, _ = load_result_arrays(path)
    np.testing.assert_array_equal(arrays["bias"][0], given)  # the file keeps the order given
    order = np.argsort(given)
    net = signals["net_field"]
    assert type(net) is FieldMap and type(signals["net_charge_density"]) is ChargeDensityMap
    component, bias = net.axes_manager.navigation_axes
    assert component.name == "component"
    assert (bias.name, bias.units, bias.size) == ("bias", "V", 3)
    np.testing.assert_array_equal(bias.axis, sorted(BIASES))
    assert not bias.is_uniform  # 0, 1.0, 2.5 V: the real values, not an index
    np.testing.assert_array_equal(net.data[:, 0], arrays["net_field_x"][0][order])
    np.testing.assert_array_equal(net.data[:, 1], arrays["net_field_y"][0][order])
    charge = signals["net_charge_density"]
    np.testing.assert_array_equal(charge.axes_manager["bias"].axis, sorted(BIASES))
    np.testing.assert_array_equal(charge.data, arrays["net_charge_density"][0][order])
    zero = charge.inav[0]  # the 0 V net map is zero by construction, wherever it was in the file
    assert np.nanmax(np.abs(zero.data)) == 0.0
    _check_image_axes(charge, arrays["net_charge_density"][0].shape)
    _check_metadata(charge, "Net charge density (C/m^3)", "C/m^3", path)
    _check_metadata(net, "Net field (V/m)", "V/m", path)
    assert net.component("y").axes_manager["bias"].units == "V"
    np.testing.assert_allclose(net.magnitude().data, np.hypot(net.data[:, 0], net.data[:, 1]), rtol=1e-6)


def test_hs_load_and_load_result_give_the_same_signals(series, tmp_path):
    path, _ = series
    moved = tmp_path / "moved.h5"  # the view refers to its own file, not to a path
    shutil.copy(path, moved)
    by_hs, by_dpcstem = _hs_load(moved), load_result(path)
    assert set(by_hs) == set(by_dpcstem)
    for name, a in by_hs.items():
        b = by_dpcstem[name]
        assert type(a) is type(b), name
        np.testing.assert_array_equal(a.data, b.data)
        for ax, bx in zip(a.axes_manager._axes, b.axes_manager._axes, strict=True):
            assert (ax.name, ax.units, ax.navigate, ax.is_uniform) == (bx.name, bx.units, bx.navigate, bx.is_uniform)
            np.testing.assert_array_equal(ax.axis, bx.axis)
        assert a.metadata.Signal.as_dictionary() == b.metadata.Signal.as_dictionary()
        assert a.metadata.DPC.as_dictionary().keys() == b.metadata.DPC.as_dictionary().keys()


def test_equally_spaced_biases_give_a_uniform_axis(tmp_path):
    maps = {"net_charge_density": (np.zeros((3, 4, 5), np.float32), "C/m^3"),
            "bias": (np.array([1.0, 0.5, 0.0]), "V")}
    path = write_result(tmp_path / "r.h5", maps, {"step_x_nm": 1.0})
    for signals in (load_result(path), _hs_load(path)):
        bias = signals["net_charge_density"].axes_manager["bias"]
        assert bias.is_uniform and (bias.offset, bias.scale, bias.units) == (0.0, 0.5, "V")


def test_load_result_of_a_bad_file(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"missing\.h5: not a readable dpcstem result file"):
        load_result(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(UnreadableFileError, match=r"bad\.h5: not a readable dpcstem result file"):
        load_result(bad)


def test_load_result_is_listed_in_dpcstem_io():
    import dpcstem.io

    assert {"load_result", "load_result_arrays", "write_result"} <= set(dir(dpcstem.io))


def test_from_beam_shift_refuses_what_it_cannot_read():
    from hyperspy.signals import Signal1D

    with pytest.raises(InputDataError, match="carry no unit; give kind='deflection'"):
        from_beam_shift(Signal1D(np.zeros((3, 4, 2))))
    with pytest.raises(InputDataError, match="one signal axis of size 2"):
        from_beam_shift(Signal1D(np.zeros((3, 4, 3))), kind="field")
    field = from_beam_shift(Signal1D(np.ones((3, 4, 2))), kind="field")
    assert type(field) is FieldMap and field.units == "V/m" and field.data.shape == (2, 3, 4)


def _pyxem():
    with warnings.catch_warnings():  # pyxem's import warns about HyperSpy internals it uses
        warnings.simplefilter("ignore")
        return pytest.importorskip("pyxem", reason="pyxem is not installed (optional extra dpcstem[pyxem])")


def test_round_trip_through_pyxem_beam_shift(series):
    pyxem = _pyxem()
    path, _ = series
    signals = load_result(path)
    for name, unit in (("deflection", "mrad"), ("net_field", "V/m")):
        signal = signals[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            shift = signal.to_beam_shift()
        assert isinstance(shift, pyxem.signals.BeamShift)
        assert shift.metadata.Signal.signal_type == "beam_shift" and shift.units == [unit, unit]
        assert shift.axes_manager.signal_shape == (2,)
        assert [a.name for a in shift.axes_manager.navigation_axes] == ["x", "y", "bias"]
        np.testing.assert_array_equal(shift.data[..., 0], signal.inav[0].data)
        back = from_beam_shift(shift)
        assert type(back) is type(signal)
        np.testing.assert_array_equal(back.data, signal.data)
        assert [a.name for a in back.axes_manager.navigation_axes] == ["component", "bias"]
        np.testing.assert_array_equal(back.axes_manager["bias"].axis, sorted(BIASES))
        assert back.units == unit
    field = pyxem.signals.BeamShift(np.ones((4, 5, 2)))  # pyxem's own field unit, MV/cm
    field.units = ["MV/cm", "MV/cm"]
    assert from_beam_shift(field).data.max() == pytest.approx(1e8)


def test_signals_go_straight_into_the_figures(single, series):
    """A map the figures expect can be a dpcstem signal (or any HyperSpy Signal2D) as loaded."""
    import matplotlib.pyplot as plt

    from dpcstem import plot

    signals = load_result(single)
    field = signals["field"]
    fig = plot.plot_vector_map(field.inav[0], field.inav[1], units=field.units, step_nm=(STEP_X, STEP_Y))
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(),
                                  plot.vector_colour_image(field.data[0], field.data[1]))
    plt.close(fig)
    charge = load_result(series[0])["net_charge_density"]
    fig = plot.plot_bias_panel(charge, charge.axes_manager["bias"].axis, units=charge.units)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["0 V", "+1 V", "+2.5 V"]
    plt.close(fig)


def test_the_package_loads_a_result_as_io_does(single):
    import dpcstem

    top, io = dpcstem.load_result(single), load_result(single)
    assert sorted(top) == sorted(io)
    np.testing.assert_array_equal(top["field"].data, io["field"].data)
