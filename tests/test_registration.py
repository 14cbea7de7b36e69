import numpy as np
import pytest
from scipy import ndimage

from dpcstem.registration import register, shift_map


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
    assert reg.measured and not reg.constrained
    assert reg.residual_after < 2.0 < reg.residual_before


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


def test_noise_free_contrast_far_below_the_floor_is_no_structure():
    # A featureless sum of a noise-free simulation: contrast at the 1e-6 level, no noise at all.
    y, x = np.mgrid[0:96, 0:96]
    ref = 1000.0 * (1 + 1e-6 * np.sin(x / 5.0) * np.cos(y / 7.0))
    moved = 1000.0 * (1 + 1e-6 * np.sin((x - 2.0) / 5.0) * np.cos(y / 7.0))
    reg = register(ref, moved)
    assert reg.shift_px == (0.0, 0.0) and reg.source == "rejected"
    assert "no structure" in reg.reason and reg.structure_snr < 1


def test_pure_noise_is_no_structure(rng):
    ref = 1000 + rng.normal(0, 30, (96, 96))
    moved = 1000 + rng.normal(0, 30, (96, 96))
    reg = register(ref, moved)
    assert reg.shift_px == (0.0, 0.0) and not reg.measured


def test_contrast_that_changes_otherwise_than_by_a_shift_is_not_a_shift(rng):
    # A band whose contrast grows (a layer seen in the sum of an annular detector): no shift explains it.
    x = np.arange(128)
    band = np.exp(-((x - 64) / 6.0) ** 2)
    ref = np.tile(1000 * (1 + 0.01 * band), (96, 1)) + rng.normal(0, 0.3, (96, 128))
    moved = np.tile(1000 * (1 + 0.03 * band), (96, 1)) + rng.normal(0, 0.3, (96, 128))
    reg = register(ref, moved)
    assert reg.shift_px == (0.0, 0.0) and reg.source == "rejected"
    assert "does not explain" in reg.reason and reg.residual_after > 2


def test_excluded_region_is_not_registered_on(rng):
    x = np.arange(128)
    band = np.exp(-((x - 64) / 6.0) ** 2)
    ref = np.tile(1000 * (1 + 0.01 * band), (96, 1)) + rng.normal(0, 0.3, (96, 128))
    moved = np.tile(1000 * (1 + 0.03 * band), (96, 1)) + rng.normal(0, 0.3, (96, 128))
    exclude = np.zeros(ref.shape, bool)
    exclude[:, 40:90] = True
    reg = register(ref, moved, exclude=exclude)
    assert reg.shift_px == (0.0, 0.0) and "no structure" in reg.reason
