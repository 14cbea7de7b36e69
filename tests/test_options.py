"""ReconstructionOptions: validated when made, so a bad option never reaches a kernel."""

import numpy as np
import pytest

import dpcstem.reconstruct
from dpcstem import Calibration, CalibrationError, DPCError, InputDataError
from dpcstem.bias import reconstruct_series
from dpcstem.options import ReconstructionOptions
from dpcstem.reconstruct import reconstruct, reconstruct_deflection
from dpcstem.simulate import segments_from_deflection

CAL = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, thickness_nm=100)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Every call of the segment kernels, recorded (the kernels still run)."""
    calls = []
    for name in ("deflection_table", "deflection_linear"):
        kernel = getattr(dpcstem.reconstruct, name)

        def spy(*args, _kernel=kernel, _name=name):
            calls.append(_name)
            return _kernel(*args)

        monkeypatch.setattr(dpcstem.reconstruct, name, spy)
    return calls


def segments():
    return segments_from_deflection(np.full((6, 7), 1.0), np.zeros((6, 7)), CAL)


@pytest.mark.parametrize("changes,match", [
    (dict(potential_method="fourier"), r"potential_method must be one of 'mirror', 'dct', 'periodic', got 'fourier'"),
    (dict(charge_method="wavelet"), r"charge_method must be one of 'finite-difference', 'spectral', got 'wavelet'"),
    (dict(cutoff=-0.5), r"cutoff must be positive and finite \(low-pass cutoff in cycles/nm\), got -0\.5"),
    (dict(cutoff=float("nan")), r"cutoff must be positive and finite"),
    (dict(gains=[1.0, 1.0, 1.0]), r"gains must be 4 finite numbers \(A, B, C, D\), got \[1\.0, 1\.0, 1\.0\]"),
    (dict(gains=[1.0, 1.0, 0.0, 1.0]), r"gains must be 4 positive numbers"),
    (dict(offsets=[0.0, np.nan, 0.0, 0.0]), r"offsets must be 4 finite numbers"),
    (dict(response="exakt"), r"response must be one of \('exact', 'linear'\) or an empirical response, got 'exakt'"),
    (dict(descan_order=3), r"descan_order must be 1 \(plane\) or 2 \(quadratic\), got 3"),
    (dict(descan_order=True), r"descan_order must be 1"),
])
def test_an_invalid_option_is_refused_when_made(changes, match):
    with pytest.raises(CalibrationError, match=match):
        ReconstructionOptions(**changes)


def test_a_bias_series_with_a_misspelt_option_runs_no_kernel(kernel_calls):
    """Before, a misspelt potential_method failed after the kernel, field and divergence had run."""
    with pytest.raises(CalibrationError, match="potential_method must be one of"):
        reconstruct_series([segments(), segments()], [0.0, 1.0], CAL, potential_method="fourier",
                           register_maps=False)
    with pytest.raises(CalibrationError, match="gains must be 4 finite numbers"):
        reconstruct_series([segments(), segments()], [0.0, 1.0], CAL, gains=[1, 1], register_maps=False)
    assert kernel_calls == []
    reconstruct_series([segments(), segments()], [0.0, 1.0], CAL, register_maps=False)
    assert kernel_calls == ["deflection_table"] * 2  # the spy sees the kernel when it does run


def test_options_given_as_a_dict_are_refused_before_the_kernel(kernel_calls):
    with pytest.raises(CalibrationError, match=r"options must be a dpcstem.options.ReconstructionOptions, got dict"):
        reconstruct(segments(), CAL, options={"potential_method": "fourier"})
    assert kernel_calls == []


def test_a_calibration_that_is_not_one_is_named(kernel_calls):
    with pytest.raises(DPCError, match=r"calibration must be a dpcstem.Calibration, got dict"):
        reconstruct(segments(), {"kv": 200, "alpha_mrad": 10, "step_x_nm": 1})
    with pytest.raises(DPCError, match=r"calibration must be a dpcstem.Calibration, got dict"):
        reconstruct_deflection(np.zeros((3, 3)), np.zeros((3, 3)), {"kv": 200})
    assert kernel_calls == []


@pytest.mark.parametrize("field", ["kv", "alpha_mrad", "step_x_nm", "thickness_nm", "detector_rotation_deg"])
def test_a_bool_is_not_a_number(field):
    values = dict(kv=200, alpha_mrad=10, step_x_nm=1)
    with pytest.raises(CalibrationError, match=rf"{field} must be a number .*got True \(a bool is not a number\)"):
        Calibration(**{**values, field: True})


def test_options_are_frozen_copies():
    gains = np.array([1.0, 1.1, 0.9, 1.0])
    options = ReconstructionOptions(gains=gains)
    gains[0] = 5.0
    assert options.gains[0] == 1.0 and not options.gains.flags.writeable
    with pytest.raises(AttributeError):
        options.cutoff = 0.3  # frozen
    changed = options.replace(charge_method="spectral", cutoff=0.3)
    assert changed.cutoff == 0.3 and options.cutoff is None
    with pytest.raises(InputDataError, match="potential_reference must be a boolean mask"):
        ReconstructionOptions(potential_reference=np.ones(4, bool))


def test_the_options_reach_the_result():
    options = ReconstructionOptions(charge_method="spectral", cutoff=0.2, potential_method="dct")
    result = reconstruct(segments(), CAL, options=options)
    assert (result.attrs["charge_method"], result.attrs["potential_method"],
            result.attrs["lowpass_cutoff_per_nm"]) == ("spectral", "dct", 0.2)
    default = reconstruct(segments(), CAL)
    assert default.attrs["charge_method"] == "finite-difference" and default.attrs["potential_method"] == "mirror"
