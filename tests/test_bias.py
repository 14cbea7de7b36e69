import numpy as np
import pytest
from scipy import ndimage

from dpcstem import Calibration, InputDataError
from dpcstem.bias import check_biases, reconstruct_series, register, shift_map


def textured_image(rng, shape):
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), 3.0, mode="wrap")
    return 1.0 + 0.2 * smooth / smooth.std()


@pytest.mark.parametrize("shift", [(0.6, -1.3), (-2.25, 0.4), (0.0, 3.1)])
def test_registration_recovers_a_subpixel_drift(shift, rng):
    # Content enters and leaves the field of view, as it does in a drifting scan.
    scene = textured_image(rng, (140, 140))
    ref = scene[20:116, 20:116]
    moved = ndimage.shift(scene, shift, order=3, mode="nearest")[20:116, 20:116]
    moved = moved + rng.normal(0, 0.004, moved.shape)
    reg = register(ref, moved)
    # The returned shift brings the moved image back: it is minus the drift.
    np.testing.assert_allclose(reg.shift_px, np.negative(shift), atol=0.05)
    assert not reg.constrained


def test_registration_invents_no_shift_along_a_straight_interface(rng):
    x = np.arange(128)
    profile = np.tanh((x - 60) / 4.0)
    ref = np.tile(profile, (96, 1))  # structure across x only
    moved = np.tile(np.tanh((x - 60 - 1.4) / 4.0), (96, 1))
    ref = ref + rng.normal(0, 0.01, ref.shape)
    moved = moved + rng.normal(0, 0.01, moved.shape)
    reg = register(ref, moved)
    assert reg.constrained
    assert reg.shift_px[1] == pytest.approx(-1.4, abs=0.1)
    assert abs(reg.shift_px[0]) < 0.01  # none invented along the interface


def test_shift_map_marks_pixels_that_leave_the_scan():
    values = np.arange(20.0).reshape(4, 5)
    shifted, ok = shift_map(values, (0.0, 1.0))
    assert not ok[:, 0].any() and ok[:, 1:].all()
    np.testing.assert_allclose(shifted[:, 1:], values[:, :-1], atol=1e-12)


def test_bias_checks():
    with pytest.raises(InputDataError, match="duplicate bias values"):
        check_biases([0, 1, 1], 3, 0.0)
    with pytest.raises(InputDataError, match="needs 3 biases, got 2"):
        check_biases([0, 1], 3, 0.0)
    with pytest.raises(InputDataError, match="reference bias 0.5 V is not among"):
        check_biases([0, 1], 2, 0.5)
    biases, ref = check_biases([1.0, 0.0, 2.0], 3, 0.0)
    assert ref == 1


def test_series_with_shapes_that_differ_is_refused():
    cal = Calibration(kv=200, alpha_mrad=1, step_x_nm=1, thickness_nm=100)
    with pytest.raises(InputDataError, match="different shapes"):
        reconstruct_series([np.ones((4, 5, 5)), np.ones((4, 5, 6))], [0, 1], cal)
