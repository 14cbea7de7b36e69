"""Calibration from the data: rotation and flip, descan, empirical response.

Each known-answer test synthesises the physics (point charges, a space-charge layer, a
descan, a blurred bright-field disc), makes the segments a detector would record, and
checks that the calibration found from them is the one used to make them.
"""

import hashlib
import math

import numpy as np
import pytest
from scipy import special
from scipy.interpolate import RegularGridInterpolator

from dpcstem import Calibration, CalibrationError, InputDataError, MissingMetadataError, UnreadableFileError, physics
from dpcstem.options import ReconstructionOptions
from dpcstem.calibration.descan import PlaneCheck, check_plane, fit_descan, remove_descan, subtract_reference
from dpcstem.calibration.rotation import apply_rotation, find_rotation
from dpcstem.io.response_file import load_response, save_response
from dpcstem.response import QuadrantResponse
from dpcstem.response.empirical import EmpiricalResponse, fit_response
from dpcstem.response.geometry import difference_signals
from dpcstem.response.geometry import shift_signals as exact_signals
from dpcstem.errors import OutputExistsError
from dpcstem.reconstruct import reconstruct, segment_deflection
from dpcstem.simulate import (
    Descan,
    MottSchottky,
    blurred_segment_areas,
    deflection_from_truth,
    detect,
    layer_truth,
    segments_from_deflection,
    simulate_tilt_series,
    simulate_vacuum,
)

KV, THICKNESS = 200, 100.0
ANGLES = (0.0, 37.0, 160.0, 290.0)


# -- synthetic deflection maps ---------------------------------------------------------------

def point_charges(shape, *, sign=1.0, width_px=3.0, peak_mrad=1.0, seed=3):
    """θ = c∇φ of Gaussian potential bumps (positive charges for sign > 0), analytic gradient."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    gx = np.zeros(shape)
    gy = np.zeros(shape)
    margin = min(8.0, nx / 4, ny / 4)
    for cx, cy in zip(rng.uniform(margin, nx - margin, 7), rng.uniform(margin, ny - margin, 7), strict=True):
        bump = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width_px**2))
        gx -= (x - cx) / width_px**2 * bump
        gy -= (y - cy) / width_px**2 * bump
    scale = sign * peak_mrad / np.hypot(gx, gy).max()
    return scale * gx, scale * gy


LAYER = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=3.0)


def round_grain_layer(shape, step_nm, *, centre_nm=(-5.0, 50.0), radius_nm=40.0):
    """Deflection (mrad) of a depletion layer inside the curved surface of a round grain.

    E = E(d)·∇d with d = radius − |r − centre| the depth below the surface: a gradient
    field (curl-free) that, unlike a straight interface, is not mirror symmetric.
    """
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx] * step_nm
    rx, ry = x - centre_nm[0], y - centre_nm[1]
    r = np.hypot(rx, ry)
    depth = radius_nm - r
    fine = np.linspace(depth.min() - 1, depth.max() + 1, 20001)
    field = np.interp(depth, fine, LAYER.profile(fine).field_v_per_m)
    ex, ey = -field * rx / r, -field * ry / r
    return (physics.deflection_mrad_from_field(ex, KV, THICKNESS),
            physics.deflection_mrad_from_field(ey, KV, THICKNESS))


def measured_in_detector_frame(tx, ty, rotation, flip, *, alpha_mrad, step_nm=0.5, dose=2e4, seed=0):
    """Noisy segments at (rotation, flip), reconstructed with ψ = 0 and no flip."""
    cal = Calibration(kv=KV, alpha_mrad=alpha_mrad, step_x_nm=step_nm, detector_rotation_deg=rotation, flip=flip)
    segments = segments_from_deflection(tx, ty, cal, dose=dose, rng=np.random.default_rng(seed))
    raw = cal.replace(detector_rotation_deg=0.0, flip=False)
    mx, my, _, valid = segment_deflection(segments, raw)
    return mx, my, raw


def angle_error(found, true):
    return abs((found - true + 180.0) % 360.0 - 180.0)


# -- rotation and flip -------------------------------------------------------------------------

@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("rotation", ANGLES)
def test_rotation_and_flip_from_noisy_point_charges(rotation, flip):
    tx, ty = point_charges((64, 72))
    mx, my, raw = measured_in_detector_frame(tx, ty, rotation, flip, alpha_mrad=2.5)
    fit = find_rotation(mx, my, raw)
    assert angle_error(fit.rotation_deg, rotation) < 0.5, fit
    assert fit.flip is flip
    assert fit.polarity == "skew" and fit.charge_skew > 1
    # The wrong flip leaves most of the curl: the quality figure tells them apart.
    assert fit.curl_ratio < 0.15 and fit.curl_ratio_other_flip > 0.5


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("rotation", ANGLES)
def test_rotation_and_flip_from_a_noisy_layer_at_a_curved_interface(rotation, flip):
    tx, ty = round_grain_layer((64, 72), 0.5)
    alpha = np.hypot(tx, ty).max() / 0.5
    mx, my, raw = measured_in_detector_frame(tx, ty, rotation, flip, alpha_mrad=alpha, seed=1)
    fit = find_rotation(mx, my, raw)
    assert angle_error(fit.rotation_deg, rotation) < 0.5, fit
    assert fit.flip is flip
    assert fit.curl_ratio < 0.2 and fit.curl_ratio_other_flip > 0.5


@pytest.mark.parametrize("rotation", ANGLES)
def test_a_straight_layer_fixes_the_rotation_but_not_the_flip(rotation):
    truth = layer_truth(LAYER, (64, 72), 0.5, normal_deg=25.0)
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    alpha = np.hypot(tx, ty).max() / 0.5
    mx, my, raw = measured_in_detector_frame(tx, ty, rotation, True, alpha_mrad=alpha, seed=2)
    with pytest.warns(UserWarning, match="cannot tell the flip"):
        free = find_rotation(mx, my, raw)
    # A field along one direction is mirror symmetric: both flips are curl-free.
    assert free.curl_ratio_other_flip == pytest.approx(free.curl_ratio, rel=0.05)
    fixed = find_rotation(mx, my, raw, flip=True)
    assert fixed.flip is True
    assert angle_error(fixed.rotation_deg, rotation) < 0.5, fixed


def test_plain_central_differences_would_bias_the_angle_of_an_oblique_layer():
    """The 1-4-1 cross smoothing matters: without it a sharp layer at 25° is off by ~0.7°."""
    from dpcstem.kernels import curl, divergence

    truth = layer_truth(LAYER, (64, 72), 0.5, normal_deg=25.0)
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    cal = Calibration(kv=KV, alpha_mrad=1.0, step_x_nm=0.5)
    fit = find_rotation(tx, ty, cal, flip=False, reference=(tx, ty))
    assert angle_error(fit.rotation_deg, 0.0) < 0.05
    valid = np.ones(tx.shape, np.uint8)
    c, d = np.empty(tx.shape), np.empty(tx.shape)
    ok = np.empty(tx.shape, np.uint8)
    curl(np.ascontiguousarray(tx), np.ascontiguousarray(ty), valid, 0.5, 0.5, c, ok)
    divergence(np.ascontiguousarray(tx), np.ascontiguousarray(ty), valid, 0.5, 0.5, d, ok)
    m = np.array([[np.mean(c * c), np.mean(c * d)], [np.mean(c * d), np.mean(d * d)]])
    e = np.linalg.eigh(m)[1][:, 0]
    plain = math.degrees(math.atan2(e[1], e[0]))
    assert angle_error(plain, 0.0) % 180 > 0.5


def test_closed_form_minimum_matches_a_scan_over_angles():
    tx, ty = point_charges((40, 44), seed=7)
    mx, my, raw = measured_in_detector_frame(tx, ty, 123.0, False, alpha_mrad=2.5, dose=None)
    fit = find_rotation(mx, my, raw, flip=False)

    def smooth(f, axis):
        return (np.roll(f, 1, axis) + 4 * f + np.roll(f, -1, axis)) / 6

    def mean_square_curl(angle):
        rx, ry = apply_rotation(mx, my, rotation_deg=angle, flip=False)
        fy = smooth(ry, 0)
        fx = smooth(rx, 1)
        c = (np.roll(fy, -1, 1) - np.roll(fy, 1, 1)) / 1.0 - (np.roll(fx, -1, 0) - np.roll(fx, 1, 0)) / 1.0
        return np.mean(c[2:-2, 2:-2] ** 2)

    angles = np.arange(0.0, 180.0, 0.05)
    best = angles[np.argmin([mean_square_curl(a) for a in angles])]
    assert angle_error(fit.rotation_deg % 180, best) < 0.1
    assert angle_error(fit.rotation_deg, 123.0) < 0.05


def test_negative_charges_defeat_the_skew_assumption_and_a_known_polarity_settles_it():
    tx, ty = point_charges((64, 72), sign=-1.0)
    mx, my, raw = measured_in_detector_frame(tx, ty, 37.0, False, alpha_mrad=2.5)
    by_skew = find_rotation(mx, my, raw)
    assert angle_error(by_skew.rotation_deg, 37.0 + 180.0) < 0.5  # the stated assumption fails here
    centre = np.zeros(tx.shape, bool)
    rho_truth = -(np.gradient(tx, axis=1) + np.gradient(ty, axis=0))
    centre[rho_truth < 0.5 * rho_truth.min()] = True  # the negative cores
    by_region = find_rotation(mx, my, raw, region=centre, charge_sign=-1)
    assert by_region.polarity == "charge sign"
    assert angle_error(by_region.rotation_deg, 37.0) < 0.5
    by_reference = find_rotation(mx, my, raw, reference=(tx, ty))
    assert by_reference.polarity == "reference"
    assert angle_error(by_reference.rotation_deg, 37.0) < 0.5


def test_skew_within_its_noise_warns():
    tx, ty = point_charges((48, 48), seed=11)
    # A charge and its opposite, side by side: no skew to go by.
    sym_x = np.concatenate([tx, -tx], axis=1)
    sym_y = np.concatenate([ty, -ty], axis=1)
    cal = Calibration(kv=KV, alpha_mrad=2.5, step_x_nm=0.5)
    with pytest.warns(UserWarning, match="rests on a charge-density skew"):
        find_rotation(sym_x, sym_y, cal)


def test_rotation_found_from_a_map_reconstructed_with_another_calibration():
    tx, ty = point_charges((48, 56))
    cal = Calibration(kv=KV, alpha_mrad=2.5, step_x_nm=0.5, detector_rotation_deg=290.0, flip=True)
    segments = segments_from_deflection(tx, ty, cal, dose=2e4, rng=np.random.default_rng(4))
    guess = cal.replace(detector_rotation_deg=100.0, flip=False)
    mx, my, _, _ = segment_deflection(segments, guess)
    fit = find_rotation(mx, my, guess)
    assert fit.flip is True and angle_error(fit.rotation_deg, 290.0) < 0.5
    fixed = fit.calibration(guess)
    assert fixed.flip is True and fixed.detector_rotation_deg == fit.rotation_deg
    result = reconstruct(segments, fixed.replace(thickness_nm=THICKNESS))
    assert np.nanmax(np.abs(result.deflection_x - tx)) < 0.15
    assert set(fit.attrs()) >= {"rotation_fit_deg", "rotation_fit_flip", "rotation_fit_curl_ratio"}


@pytest.mark.parametrize("rotation,flip", [(0.0, True), (37.0, False), (160.0, True), (290.0, False)])
def test_apply_rotation_equals_reconstructing_with_that_calibration(rotation, flip):
    tx, ty = point_charges((12, 15))
    cal = Calibration(kv=KV, alpha_mrad=2.5, step_x_nm=1.0, detector_rotation_deg=rotation, flip=flip)
    segments = segments_from_deflection(tx, ty, cal)
    raw = cal.replace(detector_rotation_deg=0.0, flip=False)
    mx, my, _, _ = segment_deflection(segments, raw)
    rx, ry = apply_rotation(mx, my, rotation_deg=rotation, flip=flip)
    np.testing.assert_allclose(rx, tx, atol=2e-5)
    np.testing.assert_allclose(ry, ty, atol=2e-5)
    # From any calibration to any other.
    other = cal.replace(detector_rotation_deg=rotation + 71.0, flip=not flip)
    ox, oy, _, _ = segment_deflection(segments, other)
    bx, by = apply_rotation(ox, oy, rotation_deg=rotation, flip=flip, measured_with=other)
    np.testing.assert_allclose(bx, tx, atol=2e-5)
    np.testing.assert_allclose(by, ty, atol=2e-5)


def test_rotation_fit_refuses_what_it_cannot_use():
    cal = Calibration(kv=KV, alpha_mrad=2.5, step_x_nm=0.5)
    flat = np.full((8, 9), 0.3)
    with pytest.raises(InputDataError, match="neither divergence nor curl"):
        find_rotation(flat, flat, cal)
    tx, ty = point_charges((24, 24))
    with pytest.raises(InputDataError, match="region and charge_sign go together"):
        find_rotation(tx, ty, cal, region=np.ones(tx.shape, bool))
    with pytest.raises(InputDataError, match="charge_sign must be"):
        find_rotation(tx, ty, cal, region=np.ones(tx.shape, bool), charge_sign=2)
    with pytest.raises(InputDataError, match="region must have the scan's shape"):
        find_rotation(tx, ty, cal, region=np.ones((3, 3), bool), charge_sign=1)
    with pytest.raises(InputDataError, match="one shape"):
        find_rotation(tx, ty[:, :-1], cal)
    with pytest.raises(InputDataError, match="reference must be two maps of the scan's shape"):
        find_rotation(tx, ty, cal, reference=(tx[:3], ty[:3]))
    with pytest.raises(InputDataError, match="either region with charge_sign or reference"):
        find_rotation(tx, ty, cal, region=np.ones(tx.shape, bool), charge_sign=1, reference=(1.0, 0.0))
    with pytest.raises(InputDataError, match="valid neighbours"):
        find_rotation(np.full((1, 1), 1.0), np.full((1, 1), 1.0), cal)


# -- descan ------------------------------------------------------------------------------------

def plane(shape, coefficients):
    """c0 + c1·x + c2·y (+ c3 x² + c4 xy + c5 y²), x, y in pixels from the scan centre."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    x -= (nx - 1) / 2
    y -= (ny - 1) / 2
    terms = [np.ones(shape), x, y, x * x, x * y, y * y]
    return sum(c * t for c, t in zip(coefficients, terms, strict=False))


@pytest.mark.parametrize("order", [1, 2])
def test_descan_of_a_vacuum_scan_removed_to_within_the_noise(order):
    shape = (48, 64)
    quadratic = ((0.05, -0.03, 0.02), (-0.02, 0.01, 0.05)) if order == 2 else ((0, 0, 0), (0, 0, 0))
    descan = Descan(offset_mrad=(0.08, -0.05), linear_mrad=((0.12, -0.05), (-0.03, 0.07)), quadratic_mrad=quadratic)
    descan_x, descan_y = descan(shape)
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, detector_rotation_deg=30.0)
    segments = simulate_vacuum(cal, shape, descan=descan, dose=1e4, rng=8)
    assert segments.dtype == np.uint16
    mx, my, _, _ = segment_deflection(segments, cal)
    noise = np.std(mx - descan_x)
    corrected_x, corrected_y, fit = remove_descan(mx, my, order=order)
    surface_x, surface_y = fit.surface(shape)
    # Standard error of a least-squares surface at its worst pixel (a corner): σ·sqrt(max leverage).
    n_terms = 3 * order
    design = np.column_stack([plane(shape, np.eye(n_terms)[k]).ravel() for k in range(n_terms)])
    leverage = np.einsum("ij,jk,ik->i", design, np.linalg.inv(design.T @ design), design).max()
    assert np.sqrt(leverage) < 0.1
    assert np.abs(surface_x - descan_x).max() < 4 * noise * np.sqrt(leverage)
    assert np.abs(surface_y - descan_y).max() < 4 * noise * np.sqrt(leverage)
    assert np.std(corrected_x) == pytest.approx(noise, rel=0.02)
    assert abs(np.mean(corrected_x)) < 4 * noise / np.sqrt(corrected_x.size)
    assert fit.residual_scale_x == pytest.approx(noise, rel=0.05)
    # The x slope, in mrad per pixel: the descan's change across the scan over its width.
    x = np.arange(shape[1]) - (shape[1] - 1) / 2
    slope_error = noise / np.sqrt(shape[0] * np.sum(x**2))
    assert abs(fit.coefficients_x[1] - 0.12 / (shape[1] - 1)) < 5 * slope_error
    assert fit.attrs()["descan_order"] == order


def test_descan_fitted_outside_the_field_region_leaves_the_layer_intact():
    layer = MottSchottky(density_per_m3=2e25, eps_r=12, potential_drop_v=5.0, sheet_nm=3.0)
    shape, step = (40, 96), 0.5
    truth = layer_truth(layer, shape, step, point_nm=(12.0, 10.0), normal_deg=0.0)
    assert np.mean(truth.field_x != 0) > 0.4  # the layer fills much of the scan
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    descan_x, descan_y = plane(shape, [0.05, 1e-3, -1e-3]), plane(shape, [-0.03, 5e-4, 1e-3])
    alpha = 0.5
    assert np.hypot(tx + descan_x, ty + descan_y).max() < 0.8 * alpha
    cal = Calibration(kv=KV, alpha_mrad=alpha, step_x_nm=step, thickness_nm=THICKNESS)
    segments = segments_from_deflection(tx + descan_x, ty + descan_y, cal, dose=1e5, rng=np.random.default_rng(9))
    mx, my, _, _ = segment_deflection(segments, cal)
    field_free = (truth.distance_nm < -layer.sheet_nm - 1.0) | (truth.distance_nm > layer.width_nm + 1.0)
    peak = np.abs(tx).max()

    masked_x, masked_y, masked = remove_descan(mx, my, mask=field_free)
    masked_error = np.abs(np.array(masked.surface(shape)) - [descan_x, descan_y]).max()
    unmasked_x, _, unmasked = remove_descan(mx, my)
    unmasked_error = np.abs(np.array(unmasked.surface(shape)) - [descan_x, descan_y]).max()
    assert masked_error < 0.01 * peak, f"masked fit off by {masked_error / peak:.2%} of the peak deflection"
    assert unmasked_error > 0.1 * peak, f"unmasked fit off by only {unmasked_error / peak:.2%}"
    # The layer's field itself, after the masked correction: within the noise of a pixel.
    field = physics.field_v_per_m_from_deflection(masked_x, KV, THICKNESS)
    noise = np.std((mx - tx - descan_x)[field_free])
    assert np.sqrt(np.mean((masked_x - tx) ** 2)) < 1.1 * noise
    # The field profile across the layer (mean over the rows): within 1 % of the peak field;
    # with the plane fitted over the layer as well, tens of per cent off.
    peak_field = abs(layer.peak_field_v_per_m)
    profile_error = np.abs((field - truth.field_x).mean(axis=0)).max() / peak_field
    unmasked_field = physics.field_v_per_m_from_deflection(unmasked_x, KV, THICKNESS)
    unmasked_profile_error = np.abs((unmasked_field - truth.field_x).mean(axis=0)).max() / peak_field
    print(f"field profile error: masked {profile_error:.2%}, unmasked {unmasked_profile_error:.2%} of the peak")
    assert profile_error < 0.01, f"masked: {profile_error:.2%}, unmasked: {unmasked_profile_error:.2%}"
    assert unmasked_profile_error > 0.1, f"masked: {profile_error:.2%}, unmasked: {unmasked_profile_error:.2%}"


@pytest.mark.parametrize("scale", [1, 13])  # 13: more pixels than the reweighting iterations use
def test_robust_descan_ignores_outliers_that_least_squares_follows(scale):
    shape = (40 * scale, 50 * scale)
    rng = np.random.default_rng(10)
    truth_x = plane(shape, [0.2, 3e-3 / scale, -2e-3 / scale])
    noise = 0.02
    mx = truth_x + rng.normal(0, noise, shape)
    my = rng.normal(0, noise, shape)
    mx[5 * scale : 12 * scale, 30 * scale : 40 * scale] += 1.5  # a particle
    hot = rng.choice(mx.size, 20 * scale**2, replace=False)
    mx.flat[hot] = 5.0  # hot pixels
    fit = fit_descan(mx, my)
    assert np.abs(fit.surface(shape)[0] - truth_x).max() < 0.2 * noise
    particle = 70 * scale**2
    assert particle < fit.n_rejected <= particle + hot.size + 0.001 * mx.size
    design = np.column_stack([plane(shape, np.eye(3)[k]).ravel() for k in range(3)])
    plain, *_ = np.linalg.lstsq(design, mx.ravel(), rcond=None)
    assert np.abs(design @ plain - truth_x.ravel()).max() > 2 * noise


def _layer_with_descan(descan_mrad_per_px, noise_mrad, shape=(40, 48), seed=5):
    """A layer's deflection (0.05 mrad, a quarter of the scan's columns) plus a linear descan
    of ``descan_mrad_per_px`` ((x slope, y slope) of θx, of θy) and counting-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    layer = np.where((x >= 20) & (x < 32), 0.05 * np.sin(np.pi * (x - 19.5) / 12), 0.0)
    (ax, bx), (ay, by) = descan_mrad_per_px
    cx, cy = x - (shape[1] - 1) / 2, y - (shape[0] - 1) / 2
    descan = (ax * cx + bx * cy, ay * cx + by * cy)
    tx = layer + descan[0] + rng.normal(0, noise_mrad, shape)
    ty = descan[1] + rng.normal(0, noise_mrad, shape)
    return tx, ty, descan


def test_a_plane_left_in_a_map_is_found_with_its_size_and_a_layer_alone_is_not():
    tx, ty, descan = _layer_with_descan(((0.004, 0.001), (-0.0015, -0.003)), 0.002)
    check = check_plane(tx, ty)
    assert check.holds_plane and check.fit.n_pixels == tx.size
    assert check.plane_mrad == pytest.approx(np.hypot(*descan).max(), rel=0.05)
    assert check.significance > 50
    clean_x, clean_y, _ = _layer_with_descan(((0, 0), (0, 0)), 0.002)
    clean = check_plane(clean_x, clean_y)
    assert not clean.holds_plane and clean.plane_mrad < 0.05 * clean.left_mrad
    # a descan within the noise is not reported
    faint = check_plane(*_layer_with_descan(((1e-6, 0), (0, 1e-6)), 0.002)[:2])
    assert not faint.holds_plane and faint.significance < PlaneCheck.SIGNIFICANCE
    # too few pixels to tell a plane from noise
    small = check_plane(tx[:6, :8], ty[:6, :8])
    assert small is not None and not small.holds_plane
    assert check_plane(np.full((1, 9), 0.1), np.zeros((1, 9))) is None  # one row holds no plane


def test_descan_from_a_vacuum_reference_scan():
    shape = (30, 40)
    rng = np.random.default_rng(12)
    descan_x, descan_y = plane(shape, [0.1, 1e-3, 2e-3]), plane(shape, [0.0, -2e-3, 1e-3])
    specimen_x = np.where(np.arange(40) < 20, 0.3, -0.3) * np.ones(shape)
    noise = 0.01
    data_x = specimen_x + descan_x + rng.normal(0, noise, shape)
    data_y = descan_y + rng.normal(0, noise, shape)
    ref_x = descan_x + rng.normal(0, noise, shape)
    ref_y = descan_y + rng.normal(0, noise, shape)
    pixel_x, pixel_y, none = subtract_reference(data_x, data_y, ref_x, ref_y)
    assert none is None
    assert np.std(pixel_x - specimen_x) == pytest.approx(np.sqrt(2) * noise, rel=0.1)
    fitted_x, fitted_y, fit = subtract_reference(data_x, data_y, ref_x, ref_y, order=1)
    assert np.std(fitted_x - specimen_x) == pytest.approx(noise, rel=0.1)
    assert np.abs(fitted_y).mean() < 1.5 * noise
    with pytest.raises(InputDataError, match="must be the same scan"):
        subtract_reference(data_x, data_y, ref_x[:-1], ref_y[:-1])


def test_descan_refuses_what_it_cannot_fit():
    m = np.zeros((10, 12))
    with pytest.raises(CalibrationError, match=r"order must be 1 \(plane\) or 2 \(quadratic\), got 3"):
        fit_descan(m, m, order=3)
    with pytest.raises(InputDataError, match="at least 6 valid pixels"):
        fit_descan(m, m, mask=np.eye(10, 12, dtype=bool)[:, :] & (np.arange(12) < 2))
    row = np.zeros((10, 12), bool)
    row[4] = True
    with pytest.raises(InputDataError, match="do not span the scan"):
        fit_descan(m, m, mask=row)
    with pytest.raises(InputDataError, match="descan mask must have the scan's shape"):
        fit_descan(m, m, mask=np.ones((3, 3), bool))


def test_the_simulated_descan_is_the_surface_the_fit_evaluates():
    """One descan convention: a fit of the simulator's descan maps reproduces them to rounding.

    The simulator's fractional position is measured from the scan centre as the fit's pixel
    offsets are, so on an axis of one pixel it is 0 there (the offset itself), not −½.
    """
    descan = Descan(offset_mrad=(0.4, -0.1), linear_mrad=((0.3, -0.2), (0.05, 0.25)),
                    quadratic_mrad=((0.02, -0.01, 0.03), (0.0, 0.04, -0.02)))
    dx, dy = descan((9, 14))
    fit = fit_descan(dx, dy, order=2)
    for got, want in zip(fit.surface((9, 14)), (dx, dy)):
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert fit.coefficients_x[0] == pytest.approx(0.4) and fit.coefficients_y[0] == pytest.approx(-0.1)
    column_x, _ = descan((5, 1))
    np.testing.assert_allclose(column_x[:, 0], 0.4 - 0.2 * np.linspace(-0.5, 0.5, 5) + 0.03 * np.linspace(-0.5, 0.5, 5) ** 2)


# -- empirical response ------------------------------------------------------------------------

def blurred_disc_signals(u, v, blur, *, n_r=48, n_phi=96):
    """(dA, dB) of a unit disc blurred by a Gaussian of std ``blur`` on a full quadrant detector.

    Segment A = {kx > |ky|} is the quadrant p > 0, q > 0 of the frame turned by 45°
    (p = (kx − ky)/√2, q = (kx + ky)/√2). A Gaussian is separable in any orthonormal frame,
    so the quadrant blurred is Φ(p/σ)·Φ(q/σ), and a segment's signal is the integral of
    that over the (sharp) disc: Gauss–Legendre in radius, uniform in azimuth.
    """
    u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
    xr, wr = np.polynomial.legendre.leggauss(n_r)
    r = 0.5 * (xr + 1)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    kx = (r[:, None] * np.cos(phi)).ravel()
    ky = (r[:, None] * np.sin(phi)).ravel()
    weight = (0.5 * wr * r)[:, None].repeat(n_phi, 1).ravel() * (2 * np.pi / n_phi)
    px = kx[None, :] + u.ravel()[:, None]
    py = ky[None, :] + v.ravel()[:, None]
    p = special.ndtr((px - py) / (math.sqrt(2) * blur))
    q = special.ndtr((px + py) / (math.sqrt(2) * blur))
    a, b, c, d = ((p * q) @ weight, ((1 - p) * q) @ weight, ((1 - p) * (1 - q)) @ weight, (p * (1 - q)) @ weight)
    total = a + b + c + d
    segments = np.array([a, b, c, d]).reshape(4, *u.shape)
    return ((a - c) / total).reshape(u.shape), ((b - d) / total).reshape(u.shape), segments


def tilt_grid(reach=0.8, n=13):
    g = np.linspace(-reach, reach, n)
    u, v = (a.ravel() for a in np.meshgrid(g, g))
    keep = np.hypot(u, v) <= reach + 0.01
    return u[keep], v[keep]


def test_blurred_disc_helper_reproduces_the_exact_response_for_a_sharp_edge():
    u = np.array([0.0, 0.1, 0.3, 0.5, 0.6, -0.4])
    v = np.array([0.0, 0.05, -0.2, 0.1, 0.3, 0.35])
    d_a, d_b, _ = blurred_disc_signals(u, v, 0.003, n_r=200, n_phi=400)
    e_a, e_b, _ = exact_signals(u, v)
    np.testing.assert_allclose(d_a, e_a, atol=1e-4)
    np.testing.assert_allclose(d_b, e_b, atol=1e-4)
    # A blurred edge lowers the response: the geometric model no longer holds.
    b_a, _, _ = blurred_disc_signals(u, v, 0.2)
    assert np.all(np.abs(b_a[1:]) < np.abs(e_a[1:]) * 0.99)


def test_empirical_response_from_a_sharp_disc_inverts_the_exact_response():
    tu, tv = tilt_grid()
    d_a, d_b, _ = exact_signals(tu, tv)
    response = fit_response(tu, tv, d_a, d_b)
    assert response.name == "empirical"
    table = response.inverse_table()
    assert table.u.shape == QuadrantResponse().inverse_table().u.shape
    # Shifts between the tilts: their exact signals, looked up in the table, give them back.
    rng = np.random.default_rng(13)
    radius, angle = 0.7 * np.sqrt(rng.random(2000)), rng.uniform(0, 2 * np.pi, 2000)
    u, v = radius * np.cos(angle), radius * np.sin(angle)
    s_a, s_b, _ = exact_signals(u, v)
    grid = table.origin + table.step * np.arange(table.u.shape[0])
    lookup = [RegularGridInterpolator((grid, grid), t)(np.column_stack([s_b, s_a])) for t in (table.u, table.v)]
    error = np.hypot(lookup[0] - u, lookup[1] - v)
    assert error.max() < 3e-3  # units of α, with tilts 0.13 α apart
    assert np.sqrt(np.mean(error**2)) < 5e-4
    assert np.isnan(table.u[0, 0])  # beyond the tilts: not extrapolated


def test_empirical_response_corrects_a_blurred_disc_edge():
    blur = 0.2  # Gaussian edge, in units of α
    tu, tv = tilt_grid()
    d_a, d_b, _ = blurred_disc_signals(tu, tv, blur)
    response = fit_response(tu, tv, d_a, d_b)

    shape, step = (30, 50), 0.5
    truth = layer_truth(LAYER, shape, step, normal_deg=30.0)
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    alpha = np.hypot(tx, ty).max() / 0.6
    cal = Calibration(kv=KV, alpha_mrad=alpha, step_x_nm=step, thickness_nm=THICKNESS, detector_rotation_deg=25.0,
                      flip=True)
    u, v = (w / alpha for w in cal.to_detector_frame(tx, ty))
    _, _, segments = blurred_disc_signals(u, v, blur)
    peak = abs(LAYER.peak_field_v_per_m)

    def field_error(response):
        result = reconstruct(segments, cal, options=ReconstructionOptions(response=response))
        assert result.valid.all()
        return np.max(np.hypot(result.field_x - truth.field_x, result.field_y - truth.field_y)) / peak

    geometric, empirical = field_error("exact"), field_error(response)
    print(f"field error: geometric {geometric:.2%}, empirical {empirical:.3%}")
    assert geometric > 0.01, f"geometric model off by {geometric:.2%}"
    assert empirical < 0.01, f"empirical response off by {empirical:.3%} (geometric {geometric:.2%})"
    assert empirical < geometric / 10
    result = reconstruct(segments, cal, options=ReconstructionOptions(response=response))
    assert result.attrs["response"] == "empirical"


def test_blurred_disc_helper_agrees_with_the_simulated_instrument():
    u = np.array([0.0, 0.1, 0.3, 0.5, 0.6, -0.4])
    v = np.array([0.0, 0.05, -0.2, 0.1, 0.3, 0.35])
    _, _, mine = blurred_disc_signals(u, v, 0.15)
    np.testing.assert_allclose(blurred_segment_areas(u, v, blur=0.15), mine, atol=1e-5)


@pytest.mark.parametrize("rotation,flip", [(0.0, False), (160.0, True)])
def test_empirical_response_from_a_simulated_tilt_series_in_the_scan_frame(rotation, flip):
    blur = 0.15
    cal = Calibration(kv=KV, alpha_mrad=2.5, step_x_nm=0.5, thickness_nm=THICKNESS, detector_rotation_deg=rotation,
                      flip=flip)
    tu, tv = tilt_grid(n=11)
    tilts = cal.alpha_mrad * np.column_stack(cal.to_scan_frame(tu, tv))
    gains, offsets = np.array([1.0, 1.2, 0.9, 1.1]), np.array([50.0, 0.0, 20.0, 10.0])
    series = simulate_tilt_series(cal, tilts, edge_blur=blur, dose=1e6, gains=gains, offsets=offsets)
    d_a, d_b, _ = difference_signals(series.segments, gains=gains, offsets=offsets)
    ref_a, ref_b, _ = blurred_disc_signals(tu, tv, blur)
    np.testing.assert_allclose(d_a, ref_a, atol=1e-5)
    np.testing.assert_allclose(d_b, ref_b, atol=1e-5)
    response = fit_response(series.tilt_x_mrad, series.tilt_y_mrad, d_a, d_b, calibration=cal)
    np.testing.assert_allclose(response.tilt_u, tu, atol=1e-12)
    np.testing.assert_allclose(response.tilt_v, tv, atol=1e-12)
    assert response.alpha_mrad == 2.5 and response.attrs()["response_alpha_mrad"] == 2.5

    # A specimen recorded by the same detector, with counting noise and unequal gains.
    truth = layer_truth(LAYER, (24, 40), 0.5, normal_deg=-20.0)
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    cal = cal.replace(alpha_mrad=2.5, thickness_nm=THICKNESS)
    scale = 0.6 * cal.alpha_mrad / np.hypot(tx, ty).max()
    segments = detect(scale * tx, scale * ty, cal, dose=1e7, gains=gains, offsets=offsets, edge_blur=blur,
                      dtype=np.float64, rng=5)
    peak = 0.6 * cal.alpha_mrad

    def deflection_error(response):
        result = reconstruct(segments, cal,
                             options=ReconstructionOptions(response=response, gains=gains, offsets=offsets))
        return np.max(np.hypot(result.deflection_x - scale * tx, result.deflection_y - scale * ty)) / peak

    geometric, empirical = deflection_error("exact"), deflection_error(response)
    print(f"deflection error: geometric {geometric:.2%}, empirical {empirical:.3%}")
    assert geometric > 0.01 and empirical < 0.005, f"geometric {geometric:.2%}, empirical {empirical:.3%}"
    response.check(cal)
    with pytest.raises(CalibrationError, match="measured at alpha = 2.5 mrad, the calibration has alpha_mrad = 3"):
        response.check(cal.replace(alpha_mrad=3.0))


def test_difference_signals_of_raw_counts():
    _, _, segments = blurred_disc_signals(np.array([0.2, -0.1]), np.array([0.3, 0.0]), 0.1)
    gains, offsets = np.array([1.0, 1.2, 0.9, 1.1]), np.array([5.0, 0.0, 2.0, 1.0])
    raw = segments * 1000 * gains[:, None] + offsets[:, None]
    d_a, d_b, _ = difference_signals(raw, gains=gains, offsets=offsets)
    total = segments.sum(axis=0)
    np.testing.assert_allclose(d_a, (segments[0] - segments[2]) / total, atol=1e-13)
    np.testing.assert_allclose(d_b, (segments[1] - segments[3]) / total, atol=1e-13)
    tu, tv = tilt_grid(n=5)
    in_alpha = fit_response(tu, tv, *difference_signals(blurred_disc_signals(tu, tv, 0.1)[2])[:2])
    assert in_alpha.alpha_mrad is None
    in_alpha.check(Calibration(kv=KV, alpha_mrad=7.0, step_x_nm=1.0))  # tilts in units of α: any α


def test_empirical_response_saved_and_reloaded(tmp_path):
    tu, tv = tilt_grid(n=9)
    d_a, d_b, _ = blurred_disc_signals(tu, tv, 0.15)
    response = fit_response(tu, tv, d_a, d_b, smoothing=1e-8)
    path = tmp_path / "response.npz"
    save_response(path, response)
    loaded = load_response(path)
    assert isinstance(loaded, EmpiricalResponse)
    np.testing.assert_array_equal(loaded.table.u, response.table.u)
    np.testing.assert_array_equal(loaded.table.v, response.table.v)
    assert (loaded.table.origin, loaded.table.step) == (response.table.origin, response.table.step)
    np.testing.assert_array_equal(loaded.d_a, response.d_a)
    assert loaded.smoothing == 1e-8 and loaded.alpha_mrad is None
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    attrs = loaded.attrs()
    assert attrs["response"] == "empirical" and attrs["response_file"] == "response.npz"
    assert attrs["response_sha256"] == loaded.sha256
    # The reloaded response reconstructs exactly as the fitted one.
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=THICKNESS)
    tx, ty = point_charges((16, 18), peak_mrad=1.0)
    segments = segments_from_deflection(tx, ty, cal)
    np.testing.assert_array_equal(reconstruct(segments, cal, options=ReconstructionOptions(response=loaded)).field_x,
                                  reconstruct(segments, cal, options=ReconstructionOptions(response=response)).field_x)
    with pytest.raises(OutputExistsError, match="output exists"):
        save_response(path, response)
    save_response(path, response, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["response.npz"]


def test_load_response_names_what_is_wrong(tmp_path):
    with pytest.raises(UnreadableFileError, match="missing.npz: no such response file"):
        load_response(tmp_path / "missing.npz")
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    with pytest.raises(UnreadableFileError, match="notes.npz: not a readable empirical response"):
        load_response(text)
    partial = tmp_path / "partial.npz"
    np.savez(partial, format=np.array("dpcstem.empirical_response"), version=np.array(1), tilt_u=np.zeros(3))
    with pytest.raises(MissingMetadataError, match="partial.npz: the empirical response file lacks tilt_v"):
        load_response(partial)
    other = tmp_path / "other.npz"
    np.savez(other, format=np.array("something else"))
    with pytest.raises(UnreadableFileError, match="is not an empirical response"):
        load_response(other)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(UnreadableFileError, match="single.npy: not a readable empirical response"):
        load_response(single)


def test_fit_response_refuses_unusable_tilt_series():
    tu, tv = tilt_grid(n=9)
    d_a, d_b, _ = exact_signals(tu, tv)
    with pytest.raises(InputDataError, match="at least 9 tilts"):
        fit_response(tu[:5], tv[:5], d_a[:5], d_b[:5])
    with pytest.raises(InputDataError, match="one length"):
        fit_response(tu, tv[:-1], d_a, d_b)
    line = np.linspace(-0.5, 0.5, 12)
    la, lb, _ = exact_signals(line, 0 * line)
    with pytest.raises(InputDataError, match="lie on a line"):
        fit_response(line, 0 * line, la, lb)
    bad = d_a.copy()
    bad[3] = np.nan
    with pytest.raises(InputDataError, match="d_a holds non-finite"):
        fit_response(tu, tv, bad, d_b)
    with pytest.raises(InputDataError, match="A, B, C, D along the first axis"):
        difference_signals(np.zeros((3, 5)))
