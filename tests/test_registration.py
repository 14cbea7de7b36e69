from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage

from dpcstem.registration import PreparedReference, register, shift_map


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_drift_of_a_fifth_of_a_short_scan_is_recovered_from_the_pixels_it_can_compare(seed):
    # A noise-free texture in a 32-row strip drifted by (3, 8.5) px, as a 0.2 nm scan drifted by (0.6, 1.7) nm:
    # near the scan's edges a smoothed value repeats the edge, which is not the same specimen in the two scans,
    # and the pixels the drift moves out of view cannot be compared; counted, they pulled the shift 0.02 px off.
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=(80, 200)), 2.0, mode="wrap")
    scene = 1.0 + 0.007 * smooth / smooth.std()
    ref = scene[20:52, 30:158]
    moved = ndimage.shift(scene, (3.0, 8.5), order=3, mode="nearest")[20:52, 30:158]
    reg = register(ref, moved)
    assert reg.measured
    np.testing.assert_allclose(reg.shift_px, (-3.0, -8.5), atol=0.01)
    assert reg.shift_stderr_px < 0.1


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


def same_registration(a, b):
    """Equal field by field (NaN equal to NaN): the same shift, decision, evidence and reason."""
    fields = a.__dataclass_fields__
    return all(getattr(a, f) == getattr(b, f) or (getattr(a, f) != getattr(a, f) and getattr(b, f) != getattr(b, f))
               for f in fields)


def test_a_prepared_reference_registers_a_series_as_the_one_shot_call_does(rng):
    # One reference, several acquisitions: drifted ones (fitted, binned first at 600 x 600), one whose layer
    # changes beyond a shift (refused), one with other pixels used (prepared afresh), and the first again.
    ref, moved = structured_series(rng, (-1.35, 0.8), noise=0.002, shape=(600, 600), margin=24)
    _, other = structured_series(rng, (0.6, -1.3), noise=0.002, shape=(600, 600), margin=24)
    grown = ref + 0.03 * np.exp(-((np.arange(600) - 300) / 8.0) ** 2)
    valid = np.ones(ref.shape, bool)
    valid[:40] = False
    calls = [(moved, None), (other, None), (grown, None), (moved, valid), (moved, None), (other, valid)]
    # A small image, fitted whole from no shift, twice: a band whose contrast grows (refused).
    x = np.arange(128)
    band = np.exp(-((x - 64) / 6.0) ** 2)
    small = np.tile(1000 * (1 + 0.01 * band), (96, 1)) + rng.normal(0, 0.3, (96, 128))
    grows = np.tile(1000 * (1 + 0.03 * band), (96, 1)) + rng.normal(0, 0.3, (96, 128))
    sources = []
    for reference, series in ((ref, calls), (small, [(grows, None), (grows, None)])):
        prepared = PreparedReference(reference)
        got = [register(prepared, image, valid=v) for image, v in series]
        expected = [register(reference, image, valid=v) for image, v in series]
        for g, e in zip(got, expected):
            assert same_registration(g, e), (g, e)
        sources.append([r.source for r in expected])
    assert sources[0].count("measured") >= 3 and "rejected" in sources[0]
    assert sources[1] == ["rejected", "rejected"]


def test_shift_map_keeps_a_float32_map_float32_where_nothing_moves():
    values = np.arange(20, dtype=np.float32).reshape(4, 5)
    valid = np.ones(values.shape, bool)
    valid[1, 2] = False
    same, ok = shift_map(values, (0.0, 0.0), valid)
    assert same.dtype == np.float32 and np.isnan(same[1, 2]) and ok.sum() == 19
    np.testing.assert_array_equal(same[valid], values[valid])
    moved, _ = shift_map(values, (0.0, 1.0), valid)
    assert moved.dtype == np.float64


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


def layer_band(x, amplitude, width_px, start=40.0):
    """Contrast of a layer in the sum image, where its field deflects the disc: falling as 1 − u/w across it."""
    u = x - start
    return amplitude * np.where((u >= 0) & (u < width_px), 1 - u / width_px, 0.0)


def structured_series(rng, drift, noise, shape=(96, 96), margin=20):
    """Two images of one specimen at two biases: texture that stays, and a layer that grows and widens with the
    bias (its contrast changes otherwise than by a shift); the second image sees the specimen moved by ``drift``."""
    big = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    scene = 0.05 * textured_image(rng, big)
    x = np.arange(big[1], dtype=float)
    images = []
    for bias, d in ((0.0, (0.0, 0.0)), (1.0, drift)):
        still = 1 + scene + layer_band(x, 0.02 + 0.04 * bias, 6 + 4 * bias, start=margin + 40.0)
        image = ndimage.shift(still, d, order=3, mode="nearest")[margin:-margin, margin:-margin]
        images.append(image + (rng.normal(0, noise, shape) if noise else 0.0))
    return images


def test_a_layer_whose_contrast_follows_the_bias_is_left_out_and_the_drift_recovered(rng):
    ref, moved = structured_series(rng, (0.6, -1.3), noise=0.002)
    reg = register(ref, moved)
    assert reg.measured and not reg.constrained, reg.reason
    np.testing.assert_allclose(reg.shift_px, (-0.6, 1.3), atol=0.05)
    assert reg.shift_stderr_px < 0.05
    # explained where the image stays the same, and by far better than no shift
    assert reg.residual_after < 2.0 < reg.residual_before


def test_a_large_image_is_fitted_binned_first_and_as_precisely(rng):
    # 600 × 600 pixels: more than registration.FIT_PIXELS times 4, so the fit starts on the image binned.
    ref, moved = structured_series(rng, (-1.35, 0.8), noise=0.002, shape=(600, 600), margin=24)
    reg = register(ref, moved)
    assert reg.measured, reg.reason
    np.testing.assert_allclose(reg.shift_px, (1.35, -0.8), atol=0.02)


def test_a_noise_free_series_without_drift_gets_no_shift_at_all(rng):
    # The growing layer would pull a least-squares shift a little; a shift that explains nothing is not applied.
    ref, moved = structured_series(rng, (0.0, 0.0), noise=0.0)
    reg = register(ref, moved)
    assert reg.measured, reg.reason
    assert reg.shift_px == (0.0, 0.0)
    assert reg.residual_after == reg.residual_before < 2.0


@pytest.mark.parametrize("noise", [0.0, 3e-4], ids=["noise-free", "noisy"])
def test_drift_where_the_only_structure_follows_the_bias_is_refused(noise, rng):
    # A featureless specimen whose sum shows only the layer, which grows and widens with the bias.
    x = np.tile(np.arange(96, dtype=float), (96, 1))
    ref = 1 + layer_band(x, 0.003, 6.0) + (rng.normal(0, noise, x.shape) if noise else 0)
    moved = 1 + layer_band(x - 1.7, 0.005, 10.0) + (rng.normal(0, noise, x.shape) if noise else 0)
    reg = register(ref, moved)
    assert reg.source == "rejected" and reg.shift_px == (0.0, 0.0)
    assert reg.reason


def test_a_shift_the_structure_cannot_fix_to_a_tenth_of_a_pixel_is_not_applied(rng):
    # Faint texture in a small image: structure above the noise, but too little to fix the shift to 0.1 px.
    scene = 1 + 0.02 * textured_image(rng, (56, 72))
    ref = scene[10:42, 10:58] + rng.normal(0, 0.004, (32, 48))
    moved = ndimage.shift(scene, (0.6, 1.7), order=3, mode="nearest")[10:42, 10:58] + rng.normal(0, 0.004, (32, 48))
    reg = register(ref, moved)
    assert reg.source == "rejected" and reg.shift_px == (0.0, 0.0)
    assert reg.shift_stderr_px > 0.1 and "fixes the shift only to" in reg.reason


# The multislice references of the validation suite (validation/make_bias_series.py): 32 × 128 scans at 0.2 nm
# of a Mott–Schottky layer whose segment sum shows the MIP step at the interface (which stays) and the layer
# (which changes with bias) and, in the structured specimen, grain in patches.
REFERENCES = Path(__file__).resolve().parents[1] / "validation" / "data"
DRIFT_PX = (3.0, 8.5)  # validation/make_bias_series.py DRIFT_YX_NM (0.6, 1.7) nm at 0.2 nm steps


def segment_sum(name):
    with h5py.File(REFERENCES / name, "r") as f:
        return f["segments"][()].astype(float).sum(axis=0)


def test_a_drifted_reference_without_grain_is_registered_along_x_only():
    # The sum's structure that stays is the MIP step, straight along y: the shift is kept to x.
    reg = register(segment_sum("bias_plain_0V.h5"), segment_sum("bias_plain_drift_1V.h5"))
    assert reg.measured and reg.constrained
    assert reg.shift_px[0] == 0.0 and reg.shift_px[1] == pytest.approx(-DRIFT_PX[1], abs=0.1)


def test_a_still_reference_without_grain_gets_no_shift():
    reg = register(segment_sum("bias_plain_0V.h5"), segment_sum("bias_plain_1V.h5"))
    assert reg.shift_px == (0.0, 0.0)


def test_the_drift_of_the_structured_reference_is_found_within_0_05_px():
    reg = register(segment_sum("bias_structured_drift_0V.h5"), segment_sum("bias_structured_drift_1V.h5"))
    assert reg.measured
    np.testing.assert_allclose(reg.shift_px, np.negative(DRIFT_PX), atol=0.05)


def test_the_noise_of_a_large_map_is_measured_on_a_sample_of_its_rows_to_its_precision():
    """A 2048² map of white noise (σ = 1.7) over a smooth structure: the noise estimates, read
    on every fourth row (NOISE_SAMPLES pixels), are within 0.5 % of σ (the median absolute
    deviation of 2²⁰ values: 0.12 % standard error)."""
    from dpcstem import registration

    rng = np.random.default_rng(11)
    y, x = np.mgrid[:2048, :2048] / 2048
    image = 50 * np.sin(3 * x) * np.cos(2 * y) + rng.normal(0, 1.7, (2048, 2048))
    use = np.ones(image.shape, bool)
    use[:100] = False
    assert registration._sampled_rows(image, use)[0].size <= registration.NOISE_SAMPLES
    assert registration._noise_sigma(image, use) == pytest.approx(1.7, rel=5e-3)
    assert registration._local_sigma(image, use) == pytest.approx(1.7, rel=5e-3)
