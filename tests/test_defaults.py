"""The defaults' table and the Python API's side of "never silently wrong"."""

import warnings
from pathlib import Path

import numpy as np
import pytest

import dpcstem.reconstruct
from dpcstem import Calibration, workflows
from dpcstem.bias import reconstruct_series
from dpcstem.calibration.core import BOUNDS
from dpcstem.errors import CalibrationError, DPCError
from dpcstem.reconstruct import reconstruct
from dpcstem.simulate import segments_from_deflection

DOCS = Path(__file__).resolve().parents[1] / "docs" / "defaults.md"


def test_docs_defaults_is_generated_from_the_table():
    assert DOCS.read_text() == workflows.defaults_markdown(), (
        "docs/defaults.md is out of date: regenerate it with "
        "python -c 'from dpcstem.workflows import defaults_markdown; print(defaults_markdown(), end=\"\")' "
        "> docs/defaults.md")
    for default in workflows.DEFAULTS:
        assert default.override.startswith("--"), default  # every default names the option that sets it


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_every_bound_refuses_both_ways(name):
    low, high, _ = BOUNDS[name]
    base = {"kv": 200.0, "alpha_mrad": 10.0, "step_x_nm": 1.0}
    for value in (low / 10, high * 10):
        with pytest.raises(CalibrationError, match=rf"{name} .* is outside"):
            Calibration(**{**base, name: value})
    Calibration(**{**base, name: low})


def test_sources_default_for_what_nobody_gave():
    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, detector_rotation_deg=12.0)
    attrs = cal.to_attrs()
    assert attrs["kv_source"] == "user" and attrs["detector_rotation_deg_source"] == "user"
    assert attrs["flip_source"] == "default" and attrs["collection_inner_mrad_source"] == "default"
    assert attrs["step_y_nm_source"] == "user"


def test_the_python_api_names_what_is_wrong():
    seg = segments_from_deflection(np.zeros((4, 4)), np.zeros((4, 4)),
                                   Calibration(kv=200, alpha_mrad=10, step_x_nm=1))
    with pytest.raises(DPCError, match="calibration must be a dpcstem.Calibration"):
        reconstruct(seg, {"kv": 200})
    with pytest.raises(DPCError, match="kv must be a number"):
        Calibration(kv=True, alpha_mrad=10, step_x_nm=1)
    with pytest.raises(DPCError, match="reference_bias_v must be a number"):
        reconstruct_series([seg, seg], [0.0, 1.0], Calibration(kv=200, alpha_mrad=10, step_x_nm=1, thickness_nm=50),
                           reference_bias_v="0")


def test_each_acquisition_passes_the_segment_kernel_once(tmp_path, monkeypatch):
    """reconstruct with a fitted rotation and uncertainty maps: one pass of the kernel."""
    y, x = np.mgrid[0:24, 0:24] * 0.5
    r2 = (x - 6) ** 2 + (y - 6) ** 2
    cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=0.5, detector_rotation_deg=35.0)
    np.save(tmp_path / "s.npy", segments_from_deflection(-0.02 * (x - 6) * np.exp(-r2 / 8),
                                                         -0.02 * (y - 6) * np.exp(-r2 / 8), cal, dose=1e6,
                                                         rng=np.random.default_rng(0)))
    calls = []
    kernel = dpcstem.reconstruct.deflection_table

    def counted(*args):
        calls.append(1)
        return kernel(*args)

    monkeypatch.setattr(dpcstem.reconstruct, "deflection_table", counted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = workflows.reconstruct_acquisition(
            tmp_path / "s.npy", calibration={"kv": 200, "alpha_mrad": 1.0, "step_x_nm": 0.5, "thickness_nm": 100,
                                             "collection_inner_mrad": 0, "collection_outer_mrad": np.inf},
            fit_rotation=True, dose=1e6)
    # the guessed branch is warned; so is the charge's field, which spans this small scan like a plane would
    assert any("180° branch" in str(w.message) for w in caught)
    assert len(calls) == 1
    assert outcome.attrs["detector_rotation_deg"] == pytest.approx(35.0, abs=1.0)
    assert "deflection_x_uncertainty" in outcome.result.extra
