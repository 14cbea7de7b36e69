"""``dpcstem.workflows.series_acquisitions``: the bias-series command as one Python call."""

import h5py
import numpy as np
import pytest

import dpcstem.bias
import dpcstem.reconstruct
from dpcstem import Calibration
from dpcstem.errors import InputDataError
from dpcstem.interface import Interface
from dpcstem.simulate import MottSchottky, simulate_bias_series
from dpcstem.simulate.files import write_series
from dpcstem.workflows import series_acquisitions

POINT, NORMAL = (16.0, 12.0), 10.0
INTERFACE = Interface.from_normal(POINT, NORMAL, 20.0)
POINTS = (*INTERFACE.start_nm, *INTERFACE.end_nm)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=0.5, thickness_nm=131, detector_rotation_deg=30.0)
    layer = MottSchottky(density_per_m3=1e25, eps_r=12, potential_drop_v=0.3, sheet_nm=1.5)
    sim = simulate_bias_series(layer, cal, (48, 64), biases=(0.0, 1.0, 2.0), share=0.5, point_nm=POINT,
                               normal_deg=NORMAL, noise=False, vacuum=True, rng=1, dtype=np.float32)
    out = tmp_path_factory.mktemp("series")
    write_series(sim, out)
    return out


def test_each_acquisition_passes_through_the_segment_kernel_once(folder, tmp_path, monkeypatch):
    calls = {"series": 0, "vacuum": 0}

    def counting(key, real):
        def call(*args, **kwargs):
            calls[key] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(dpcstem.bias, "segment_deflection", counting("series", dpcstem.bias.segment_deflection))
    monkeypatch.setattr(dpcstem.reconstruct, "segment_deflection",
                        counting("vacuum", dpcstem.reconstruct.segment_deflection))
    # every stage that needs a map: vacuum, descan region, rotation fit, branch from the bias, registration
    with pytest.warns(UserWarning, match="registration: no reliable shift"):  # noise-free: nothing to register on
        outcome = series_acquisitions(folder, output=tmp_path / "out.h5", reference=folder / "vacuum.h5",
                                      descan_region=(0, 0, 4, 23), fit_rotation=True, calibration={"flip": False},
                                      biased_side="-", interface=POINTS)
    assert calls == {"series": 3, "vacuum": 1}
    with h5py.File(outcome.result, "r") as f:
        assert abs(f.attrs["detector_rotation_deg"] - 30.0) < 1.0 and f.attrs["rotation_fit_polarity"] == "bias"
        assert f.attrs["descan_source"] == "vacuum and region"
        assert f["net_field_x"].shape == (3, 48, 64)
    assert len(outcome.rows) == 2 and outcome.inputs


def test_python_callers_read_their_own_names(folder, tmp_path):
    with pytest.raises(InputDataError, match=r"biased_side .*fit_rotation=True.*interface"):
        series_acquisitions(folder, output=tmp_path / "out.h5", biased_side="-")
    with pytest.raises(InputDataError, match=r"biased_side: .* got 'up'"):
        series_acquisitions(folder, output=tmp_path / "out.h5", biased_side="up", fit_rotation=True, interface=POINTS)
    assert not (tmp_path / "out.h5").exists()


def test_the_bias_polarity_cannot_settle_a_branch_without_a_bias_change(folder, tmp_path):
    with pytest.warns(UserWarning) as caught:
        series_acquisitions(sorted(folder.glob("bias_*.h5")), output=tmp_path / "out.h5", biases=[0.0, 0.0, 0.0],
                            override_bias=True,
                            fit_rotation=True, calibration={"flip": False}, biased_side="-", interface=POINTS,
                            register=False)
    messages = [str(w.message) for w in caught]
    assert any("cannot settle the 180° branch" in m and "charge_sign_region" in m for m in messages), messages
