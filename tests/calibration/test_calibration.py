import math

import numpy as np
import pytest

from dpcstem import Calibration, CalibrationError

BASE = dict(kv=200, alpha_mrad=10, step_x_nm=0.5, thickness_nm=100)


def test_defaults_and_derived_values():
    cal = Calibration(**BASE)
    assert cal.step_y_nm == 0.5
    assert cal.collection_inner_mrad == 0 and cal.collection_outer_mrad is None
    assert cal.outer_over_alpha == math.inf
    assert cal.pv_over_e_v == pytest.approx(343741, rel=1e-5)


@pytest.mark.parametrize("field,value,match", [
    ("kv", 0, "kv must be positive"),
    ("kv", -200, "kv must be positive"),
    ("alpha_mrad", 0, "alpha_mrad must be positive"),
    ("alpha_mrad", -1, "alpha_mrad must be positive"),
    ("thickness_nm", -5, "thickness_nm must be positive"),
    ("thickness_nm", 0, "thickness_nm must be positive"),
    ("step_x_nm", float("nan"), "step_x_nm must be positive and finite"),
    ("detector_rotation_deg", float("nan"), "detector_rotation_deg must be a finite angle"),
    ("eps_r", -3, "eps_r must be positive"),
    ("kv", "abc", "kv must be a number"),
])
def test_each_bad_value_is_named(field, value, match):
    with pytest.raises(CalibrationError, match=match):
        Calibration(**{**BASE, field: value})


def test_alpha_above_outer_collection_angle_is_refused():
    with pytest.raises(CalibrationError, match="alpha_mrad 10.0 is above collection_outer_mrad 8.0"):
        Calibration(**BASE, collection_outer_mrad=8.0)


def test_inner_angle_reaching_alpha_is_refused():
    with pytest.raises(CalibrationError, match="inside the detector's hole"):
        Calibration(**BASE, collection_inner_mrad=12.0)


def test_frame_matrix_rotation_and_flip():
    """Columns are the A and B axes in scan (x, y): A at ψ, B at ψ+90° (ψ−90° with flip)."""
    cal = Calibration(**BASE, detector_rotation_deg=90)
    np.testing.assert_allclose(cal.frame_matrix, [[0, -1], [1, 0]], atol=1e-15)
    flipped = Calibration(**BASE, detector_rotation_deg=90, flip=True)
    np.testing.assert_allclose(flipped.frame_matrix, [[0, 1], [1, 0]], atol=1e-15)
    assert not cal.frame_matrix.flags.writeable


@pytest.mark.parametrize("rotation,flip", [(0.0, False), (33.0, False), (-120.0, True), (270.0, True)])
def test_to_detector_frame_inverts_to_scan_frame(rotation, flip, rng):
    cal = Calibration(**BASE, detector_rotation_deg=rotation, flip=flip)
    x, y = rng.normal(size=(2, 7, 5))
    u, v = cal.to_detector_frame(x, y)
    np.testing.assert_allclose(np.hypot(u, v), np.hypot(x, y), rtol=1e-12)  # a rotation keeps lengths
    back = cal.to_scan_frame(u, v)
    np.testing.assert_allclose(back, (x, y), atol=1e-12)
    # segment A's axis lies at azimuth ψ from scan +x toward +y, whatever the flip
    ax, ay = cal.to_scan_frame(1.0, 0.0)
    assert math.isclose(math.atan2(ay, ax), math.atan2(math.sin(math.radians(rotation)),
                                                       math.cos(math.radians(rotation))), abs_tol=1e-12)
    bx, by = cal.to_scan_frame(0.0, 1.0)
    assert math.isclose(ax * by - ay * bx, -1.0 if flip else 1.0)  # the flip makes the frame left-handed


def test_thickness_map_is_validated_and_frozen():
    t = np.full((4, 5), 100.0)
    cal = Calibration(**{**BASE, "thickness_nm": t})
    assert not cal.thickness_nm.flags.writeable
    t[0, 0] = -1
    with pytest.raises(CalibrationError, match="1 pixels that are not positive"):
        Calibration(**{**BASE, "thickness_nm": t})


def test_attrs_round_trip():
    cal = Calibration(**BASE, collection_inner_mrad=2, collection_outer_mrad=30, detector_rotation_deg=-12.5,
                      flip=True, eps_r=20, sources={"kv": "file"})
    back = Calibration.from_attrs(cal.to_attrs())
    for name in ("kv", "alpha_mrad", "collection_inner_mrad", "collection_outer_mrad", "detector_rotation_deg",
                 "flip", "step_x_nm", "step_y_nm", "thickness_nm", "eps_r"):
        assert getattr(back, name) == getattr(cal, name)
    assert back.sources == cal.sources
    assert back.sources["kv"] == "file" and back.sources["flip"] == "user"
