"""Round trips: a known field → segments through the exact response → reconstructed maps."""

import numpy as np
import pytest

from dpcstem import Calibration, InputDataError, physics
from dpcstem.options import ReconstructionOptions
from dpcstem.reconstruct import reconstruct, reconstruct_deflection
from dpcstem.simulate import (
    MottSchottky,
    deflection_from_truth,
    layer_truth,
    segments_from_deflection,
    uniform_field_truth,
)

KV, THICKNESS = 200, 100.0


def field_for_shift(s, alpha_mrad):
    """Field magnitude (V/m) that deflects the beam by s·α."""
    return abs(physics.field_v_per_m_from_deflection(s * alpha_mrad, KV, THICKNESS))


@pytest.mark.parametrize("rotation,flip", [(0.0, False), (20.0, False), (20.0, True), (-131.0, True)])
@pytest.mark.parametrize("s", [0.1, 0.5, 0.8])
def test_uniform_field_round_trip(rotation, flip, s):
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=THICKNESS,
                      detector_rotation_deg=rotation, flip=flip)
    magnitude = field_for_shift(s, cal.alpha_mrad)
    direction = np.radians(65.0)
    truth = uniform_field_truth((6, 7), (magnitude * np.cos(direction), magnitude * np.sin(direction)))
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    result = reconstruct(segments_from_deflection(tx, ty, cal), cal)
    assert result.valid.all()
    np.testing.assert_allclose(result.field_x, truth.field_x, rtol=5e-3)
    np.testing.assert_allclose(result.field_y, truth.field_y, rtol=5e-3)


def test_wrong_flip_gives_the_wrong_field():
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=THICKNESS, detector_rotation_deg=20)
    truth = uniform_field_truth((4, 4), (0.0, field_for_shift(0.3, 2.0)))
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    segments = segments_from_deflection(tx, ty, cal)
    wrong = reconstruct(segments, cal.replace(flip=True))
    assert np.abs(wrong.field_y - truth.field_y).max() > 0.5 * np.abs(truth.field_y).max()


@pytest.mark.parametrize("rotation,flip", [(0.0, False), (20.0, True)])
def test_mott_schottky_layer_round_trip_up_to_s_08(rotation, flip):
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=3.0)
    step = 0.25
    truth = layer_truth(layer, (40, 160), step, normal_deg=30.0)
    peak_theta = abs(physics.deflection_mrad_from_field(layer.peak_field_v_per_m, KV, THICKNESS))
    cal = Calibration(kv=KV, alpha_mrad=peak_theta / 0.8, step_x_nm=step, thickness_nm=THICKNESS,
                      detector_rotation_deg=rotation, flip=flip)
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    assert np.hypot(tx, ty).max() / cal.alpha_mrad == pytest.approx(0.8, abs=0.01)
    result = reconstruct(segments_from_deflection(tx, ty, cal), cal)
    peak = np.abs(layer.peak_field_v_per_m)
    assert np.nanmax(np.abs(result.field_x - truth.field_x)) < 5e-3 * peak
    assert np.nanmax(np.abs(result.field_y - truth.field_y)) < 5e-3 * peak
    # Charge density inside the layer, away from its two kinks (one pixel of finite differences).
    d = truth.distance_nm
    inside = (d > 2 * step) & (d < layer.width_nm - 2 * step) & result.valid
    assert inside.sum() > 100
    rel = np.abs(result.charge_density[inside] - truth.charge_density[inside]) / np.abs(truth.charge_density[inside])
    assert rel.max() < 0.02
    # The total charge integrates to zero over the scan, as the truth does.
    assert abs(truth.charge_density.sum()) < 1e-2 * np.abs(truth.charge_density).sum()


def test_linear_mode_underestimates_large_shifts_as_the_geometry_says():
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=THICKNESS)
    truth = uniform_field_truth((3, 3), (field_for_shift(0.34, 2.0), 0.0))
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    seg = segments_from_deflection(tx, ty, cal)
    exact = reconstruct(seg, cal, options=ReconstructionOptions(response="exact"))
    linear = reconstruct(seg, cal, options=ReconstructionOptions(response="linear"))
    ratio = float(np.mean(linear.deflection_x / exact.deflection_x))
    assert 1 - ratio == pytest.approx(0.0098, abs=0.001)


def test_bad_pixels_are_masked_counted_and_kept_out_of_the_divergence():
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=THICKNESS)
    truth = uniform_field_truth((9, 9), (field_for_shift(0.3, 2.0), 0.0))
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    seg = segments_from_deflection(tx, ty, cal).astype(np.float32)
    seg[:, 4, 4] = np.nan
    seg[:, 2, 6] = 0.0
    result = reconstruct(seg, cal)
    assert result.n_invalid == 2
    assert not result.valid[4, 4] and not result.valid[2, 6]
    assert np.isnan(result.field_x[4, 4])
    # A uniform field has zero divergence everywhere, also next to the bad pixels.
    assert np.nanmax(np.abs(result.charge_density)) < 1e-6 * physics.VACUUM_PERMITTIVITY_F_M * truth.field_x.max()
    assert np.isfinite(result.charge_density[4, 3]) and np.isfinite(result.charge_density[3, 4])


def test_input_with_no_valid_pixel_is_an_error():
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=THICKNESS)
    with pytest.raises(InputDataError, match="no pixel could be reconstructed"):
        reconstruct(np.zeros((4, 5, 5), np.uint16), cal)


@pytest.mark.parametrize("shape,match", [((3, 5, 5), r"shape \(4, ny, nx\)"), ((4, 5), r"shape \(4, ny, nx\)"),
                                         ((4, 0, 5), "empty")])
def test_wrong_shapes_are_named(shape, match):
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=THICKNESS)
    with pytest.raises(InputDataError, match=match):
        reconstruct(np.ones(shape), cal)


def test_unequal_steps_are_honoured():
    # A field E = a·(x, y) has divergence 2a regardless of the pixel spacing in each direction.
    sx, sy = 0.5, 2.0
    y, x = np.mgrid[0:20, 0:30].astype(float)
    a = 1e15  # V/m per m
    ex, ey = a * x * sx * 1e-9, a * y * sy * 1e-9
    cal = Calibration(kv=KV, alpha_mrad=5.0, step_x_nm=sx, step_y_nm=sy, thickness_nm=THICKNESS)
    tx = physics.deflection_mrad_from_field(ex, KV, THICKNESS)
    ty = physics.deflection_mrad_from_field(ey, KV, THICKNESS)
    result = reconstruct_deflection(tx, ty, cal)
    np.testing.assert_allclose(result.charge_density, 2 * a * physics.VACUUM_PERMITTIVITY_F_M, rtol=1e-5)


def test_free_charge_needs_and_uses_eps_r():
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0)
    truth = layer_truth(layer, (8, 64), 0.25)
    tx, ty = deflection_from_truth(truth, KV, THICKNESS)
    cal = Calibration(kv=KV, alpha_mrad=5.0, step_x_nm=0.25, thickness_nm=THICKNESS)
    assert reconstruct_deflection(tx, ty, cal).free_charge_density is None
    with_eps = reconstruct_deflection(tx, ty, cal.replace(eps_r=12))
    np.testing.assert_allclose(with_eps.free_charge_density, 12 * with_eps.charge_density, rtol=1e-6)


def test_edge_pixel_without_a_valid_neighbour_has_no_charge_density():
    cal = Calibration(kv=KV, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=THICKNESS)
    seg = np.ones((4, 5, 5))
    seg[:, 1, 2] = 0.0  # bad pixel next to the top edge: (0, 2) loses its only y-neighbour
    result = reconstruct(seg, cal)
    assert result.attrs["n_bad_input"] == 1
    assert not result.valid[0, 2] and result.n_invalid == 2


def test_thickness_map_recovers_the_field_across_a_thickness_step():
    """Two materials of different thickness: the map gives the field; one number is off by the ratio."""
    step = 0.5
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=2.0)
    truth = layer_truth(layer, (16, 80), step, point_nm=(20.25, 4.0), normal_deg=0.0)
    thickness = np.where(truth.distance_nm < 0, 270.0, 131.0)  # coated side thicker
    tx, ty = deflection_from_truth(truth, KV, thickness)
    cal_map = Calibration(kv=KV, alpha_mrad=1.0, step_x_nm=step, thickness_nm=thickness)
    with_map = reconstruct(segments_from_deflection(tx, ty, cal_map), cal_map)
    peak = np.abs(truth.field_x).max()
    assert np.nanmax(np.abs(with_map.field_x - truth.field_x)) < 5e-3 * peak
    single = reconstruct(segments_from_deflection(tx, ty, cal_map), cal_map.replace(thickness_nm=131.0))
    thick_side = (truth.distance_nm < 0) & (np.abs(truth.field_x) > 0.05 * peak)
    ratio = single.field_x[thick_side] / truth.field_x[thick_side]
    np.testing.assert_allclose(ratio, 270.0 / 131.0, rtol=5e-3)


def test_thickness_map_of_the_wrong_shape_is_refused():
    cal = Calibration(kv=KV, alpha_mrad=1.0, step_x_nm=1.0, thickness_nm=np.full((3, 3), 100.0))
    from dpcstem import CalibrationError

    with pytest.raises(CalibrationError, match=r"thickness map shape \(3, 3\) does not match the scan \(4, 4\)"):
        reconstruct_deflection(np.zeros((4, 4)), np.zeros((4, 4)), cal)
