"""Properties of the detector response, its inversion and the kernels, over their whole domain (hypothesis).

- inverting the exact forward model gives back the shift, by Newton's method (every shift up
  to S_MAX, for detectors whose inner hole is at most 0.2 α: a larger hole makes the response
  fold near the rim) and through the lookup table the fused kernel interpolates (shifts up to
  0.9 α; with a large hole, the shift or a refused pixel, never another shift);
- rotating the field and the detector together gives the rotated deflection (segments and
  4D centre of mass alike);
- the finite-difference divergence is linear;
- no finite input makes a kernel raise: every pixel is either finite and valid, or NaN and
  invalid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dpcstem import Calibration
from dpcstem.options import ReconstructionOptions
from dpcstem.response import QuadrantResponse
from dpcstem.response.geometry import S_MAX, segment_areas
from dpcstem.fourd import deflection_from_com
from dpcstem.kernels import divergence
from dpcstem.kernels.com import reduce_frames, reduce_frames_serial
from dpcstem.reconstruct import segment_deflection
from dpcstem.simulate import segments_from_deflection

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

ALPHA = 10.0

#: Detector geometries (inner, outer collection radius in units of α; None: no outer edge) for the
#: tests through the kernel's lookup table, which is built once per geometry: a few, so they are built
#: once. The table covers shifts up to 0.9 α for inner radii up to 0.2 α (see the xfail below).
TABLE_GEOMETRIES = [(0.0, None), (0.0, 1.0), (0.1, 1.5), (0.2, 3.0)]


def calibration(inner=0.0, outer=None, rotation=0.0, flip=False):
    return Calibration(kv=200.0, alpha_mrad=ALPHA, step_x_nm=1.0, collection_inner_mrad=inner * ALPHA,
                       collection_outer_mrad=None if outer is None else outer * ALPHA,
                       detector_rotation_deg=rotation, flip=flip)


def rotate(x, y, degrees):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return c * x - s * y, s * x + c * y


#: Inner collection radius (units of α) up to which the response is one-to-one for every shift up to
#: S_MAX; with a larger hole it folds near the rim (two shifts give the same signals, see the xfails).
INNER_MAX = 0.2

geometries = st.tuples(st.one_of(st.just(0.0), st.floats(1e-3, INNER_MAX)), st.one_of(st.none(), st.floats(1.0, 4.0)))
table_geometries = st.sampled_from(TABLE_GEOMETRIES)


@st.composite
def shifts(draw, s_max, n=st.integers(1, 12)):
    """Shifts (u, v) in units of α with sqrt(u² + v²) <= s_max, as two arrays."""
    count = draw(n)
    radius = draw(hnp.arrays(np.float64, count, elements=st.floats(0.0, s_max)))
    angle = draw(hnp.arrays(np.float64, count, elements=st.floats(-math.pi, math.pi)))
    return radius * np.cos(angle), radius * np.sin(angle)


# -- inversion of the forward model -------------------------------------------------------------

@SETTINGS
@given(geometry=geometries, shift=shifts(S_MAX))
def test_newton_inversion_of_the_exact_response_is_the_identity(geometry, shift):
    """Where the inversion answers it gives the shift back; it answers wherever its starting table does,
    and everywhere below 0.85 α. Near S_MAX the table's rim cells hold NaN corners, so some shifts
    there are refused (NaN), never answered wrongly."""
    inner, outer = geometry
    response = QuadrantResponse(inner, math.inf if outer is None else outer)
    u, v = shift
    d_a, d_b, total = response.signals(u, v)
    assert np.all(total > 0)
    back_u, back_v = response.invert(d_a, d_b)
    answered = np.isfinite(back_u) & np.isfinite(back_v)
    np.testing.assert_array_equal(answered, np.isfinite(response.inverse_table().lookup(d_a, d_b)[0]))
    assert answered[np.hypot(u, v) <= 0.85].all()
    np.testing.assert_allclose(back_u[answered], u[answered], atol=1e-7)
    np.testing.assert_allclose(back_v[answered], v[answered], atol=1e-7)


def test_newton_inversion_with_a_large_inner_hole():
    response = QuadrantResponse(0.5, 1.0)
    u, v = np.array([0.75 * math.cos(0.75)]), np.array([0.75 * math.sin(0.75)])
    back_u, back_v = response.invert(*response.signals(u, v)[:2])
    np.testing.assert_allclose([back_u[0], back_v[0]], [u[0], v[0]], atol=1e-7)


@pytest.mark.parametrize("inner, radius, angle", [(0.75, 0.875, 2.5), (0.3, 0.975, math.pi / 4)])
def test_ambiguous_signals_are_refused_not_answered_wrongly(inner, radius, angle):
    response = QuadrantResponse(inner, math.inf)
    u, v = np.array([radius * math.cos(angle)]), np.array([radius * math.sin(angle)])
    back_u, back_v = response.invert(*response.signals(u, v)[:2])
    assert np.isnan(back_u[0]) or abs(back_u[0] - u[0]) + abs(back_v[0] - v[0]) < 1e-7


def kernel_inverse(u, v, cal, response="exact"):
    """Segments of the exact response for shifts (u, v) → deflection through the fused kernel, in units of α."""
    areas = segment_areas(u, v, inner=cal.inner_over_alpha, outer=cal.outer_over_alpha)
    theta_x, theta_y, total, valid = segment_deflection(areas.reshape(4, 1, -1), cal,
                                                        options=ReconstructionOptions(response=response))
    return theta_x[0] / ALPHA, theta_y[0] / ALPHA, valid[0]


@SETTINGS
@given(geometry=table_geometries, shift=shifts(0.9), counts=st.floats(1e-3, 1e6))
def test_inverse_table_through_the_kernel_recovers_the_shift(geometry, shift, counts):
    cal = calibration(*geometry)
    u, v = shift
    areas = segment_areas(u, v, inner=cal.inner_over_alpha, outer=cal.outer_over_alpha) * counts
    theta_x, theta_y, _, valid = segment_deflection(areas.reshape(4, 1, -1), cal)
    assert valid.all()
    s = np.hypot(u, v)
    error = np.hypot(theta_x[0] / ALPHA - u, theta_y[0] / ALPHA - v)
    assert np.all(error <= 2e-3 * np.maximum(s, 0.05))


HOLE_GEOMETRIES = [(0.3, None), (0.4, 1.0), (0.5, 1.5)]


@SETTINGS
@given(geometry=st.sampled_from(HOLE_GEOMETRIES), shift=shifts(S_MAX), counts=st.floats(1e-3, 1e6))
def test_inverse_table_with_an_inner_hole_gives_the_shift_or_refuses_it(geometry, shift, counts):
    """A large inner hole makes the response fold near the rim, where two shifts give the same signals:
    the kernel then refuses the pixel. It never returns another shift, and it refuses none below 0.65 α."""
    cal = calibration(*geometry)
    u, v = shift
    areas = segment_areas(u, v, inner=cal.inner_over_alpha, outer=cal.outer_over_alpha) * counts
    theta_x, theta_y, _, valid = segment_deflection(areas.reshape(4, 1, -1), cal)
    s = np.hypot(u, v)
    error = np.hypot(theta_x[0] / ALPHA - u, theta_y[0] / ALPHA - v)
    assert np.all(error[valid[0]] <= 2e-3 * np.maximum(s[valid[0]], 0.05))
    assert valid[0][s <= 0.65].all()
    check_finite_or_nan_and_invalid(theta_x, theta_y, valid)


# -- rotation invariance ------------------------------------------------------------------------

maps = hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 4)), elements=st.floats(-0.6, 0.6))


@SETTINGS
@given(theta=st.tuples(maps, st.floats(-1, 1)), psi=st.floats(-180, 180), phi=st.floats(-180, 180),
       flip=st.booleans(), geometry=table_geometries)
def test_rotating_the_field_and_the_detector_together(theta, psi, phi, flip, geometry):
    """Segments of θ with the detector at ψ equal those of R_φ θ with the detector at ψ + φ, and the
    reconstruction at ψ + φ of those segments is R_φ times the one at ψ."""
    tx, ty_scale = theta
    ty = ty_scale * tx[::-1, ::-1]
    tx, ty = tx * ALPHA, ty * ALPHA  # |θ| <= 0.85 α
    cal = calibration(*geometry, rotation=psi, flip=flip)
    turned = calibration(*geometry, rotation=psi + phi, flip=flip)
    rx, ry = rotate(tx, ty, phi)
    seg = segments_from_deflection(tx, ty, cal)
    np.testing.assert_allclose(segments_from_deflection(rx, ry, turned), seg, rtol=1e-9, atol=1e-12)
    ax, ay, _, ok_a = segment_deflection(seg, cal)
    bx, by, _, ok_b = segment_deflection(seg, turned)
    assert ok_a.all() and ok_b.all()
    ex, ey = rotate(ax.astype(float), ay.astype(float), phi)
    np.testing.assert_allclose(bx, ex, atol=2e-5 * ALPHA)
    np.testing.assert_allclose(by, ey, atol=2e-5 * ALPHA)
    np.testing.assert_allclose(bx, rx, atol=2e-3 * ALPHA)  # and both are the deflection put in
    np.testing.assert_allclose(by, ry, atol=2e-3 * ALPHA)


@SETTINGS
@given(com=st.tuples(maps, maps), psi=st.floats(-360, 360), phi=st.floats(-360, 360), flip=st.booleans(),
       scale=st.floats(1e-3, 10.0))
def test_rotating_the_4d_detector_rotates_the_deflection(com, psi, phi, flip, scale):
    com_x, com_y = com
    if com_x.shape != com_y.shape:
        com_y = np.resize(com_y, com_x.shape)
    args = dict(mrad_per_px=scale, reference=(0.0, 0.0))
    ax, ay = deflection_from_com(com_x, com_y, calibration(rotation=psi, flip=flip), **args)
    bx, by = deflection_from_com(com_x, com_y, calibration(rotation=psi + phi, flip=flip), **args)
    ex, ey = rotate(ax, ay, phi)
    np.testing.assert_allclose(bx, ex, atol=1e-9 * scale)
    np.testing.assert_allclose(by, ey, atol=1e-9 * scale)


# -- linearity of the divergence ----------------------------------------------------------------

fields = st.integers(1, 6).flatmap(lambda ny: st.integers(1, 6).flatmap(lambda nx: st.tuples(
    *[hnp.arrays(np.float64, (ny, nx), elements=st.floats(-1e6, 1e6)) for _ in range(4)],
    hnp.arrays(np.bool_, (ny, nx)))))


def div(fx, fy, valid, step_x, step_y):
    out = np.empty(fx.shape)
    ok = np.empty(fx.shape, np.uint8)
    divergence(fx, fy, valid.astype(np.uint8), step_x, step_y, out, ok)
    return out, ok.astype(bool)


@SETTINGS
@given(f=fields, a=st.floats(-1e3, 1e3), b=st.floats(-1e3, 1e3), step_x=st.floats(0.1, 10.0),
       step_y=st.floats(0.1, 10.0))
def test_divergence_is_linear(f, a, b, step_x, step_y):
    fx, fy, gx, gy, valid = f
    both, ok = div(a * fx + b * gx, a * fy + b * gy, valid, step_x, step_y)
    first, ok_f = div(fx, fy, valid, step_x, step_y)
    second, ok_g = div(gx, gy, valid, step_x, step_y)
    assert np.array_equal(ok, ok_f) and np.array_equal(ok, ok_g) and not np.any(ok & ~valid)
    assert np.all(np.isnan(both[~ok])) and np.all(np.isfinite(both[ok]))
    scale = (abs(a) + abs(b)) * 1e6 * 2 / min(step_x, step_y)
    np.testing.assert_allclose(both[ok], a * first[ok] + b * second[ok], rtol=1e-9, atol=1e-12 * scale)


# -- no finite input makes a kernel raise -------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
segment_arrays = st.one_of(
    hnp.arrays(np.float64, st.tuples(st.just(4), st.integers(1, 3), st.integers(1, 3)), elements=finite),
    hnp.arrays(np.float32, st.tuples(st.just(4), st.integers(1, 3), st.integers(1, 3)),
               elements=st.floats(allow_nan=False, allow_infinity=False, width=32)),
    hnp.arrays(np.uint16, st.tuples(st.just(4), st.integers(1, 3), st.integers(1, 3))),
    hnp.arrays(np.int32, st.tuples(st.just(4), st.integers(1, 3), st.integers(1, 3))),
)


def check_finite_or_nan_and_invalid(theta_x, theta_y, valid):
    assert np.all(np.isfinite(theta_x[valid])) and np.all(np.isfinite(theta_y[valid]))
    assert np.all(np.isnan(theta_x[~valid])) and np.all(np.isnan(theta_y[~valid]))


@SETTINGS
@given(seg=segment_arrays, geometry=table_geometries, rotation=st.floats(-360, 360), flip=st.booleans())
def test_exact_kernel_takes_any_finite_segments(seg, geometry, rotation, flip):
    theta_x, theta_y, _, valid = segment_deflection(seg, calibration(*geometry, rotation=rotation, flip=flip))
    check_finite_or_nan_and_invalid(theta_x, theta_y, valid)
    assert np.all(np.abs(theta_x[valid]) <= ALPHA) and np.all(np.abs(theta_y[valid]) <= ALPHA)


@SETTINGS
@given(seg=hnp.arrays(np.uint16, st.tuples(st.just(4), st.integers(1, 3), st.integers(1, 3))),
       geometry=table_geometries)
def test_linear_kernel_takes_any_counts(seg, geometry):
    """Non-negative counts of any size: the linear response gives finite deflections or masks the pixel."""
    theta_x, theta_y, _, valid = segment_deflection(seg, calibration(*geometry),
                                                    options=ReconstructionOptions(response="linear"))
    check_finite_or_nan_and_invalid(theta_x, theta_y, valid)


@pytest.mark.parametrize("response", ["linear", "exact"])
@pytest.mark.parametrize("values", [
    [1e-300, 0.0, -1e-300, 1e-310],        # a subnormal sum (its reciprocal overflows)
    [1e-310, 0.0, 0.0, 0.0],               # non-negative counts with a subnormal sum
    [1.0, 0.0, -0.999999, 0.0],            # |A - C| / S = 2e6 (a deflection of 2e6 α)
    [1e200, 0.0, 0.0, -1e200 + 1e184],     # a sum beyond float32
])
def test_kernels_mask_unphysical_differences(values, response):
    seg = np.array(values, np.float64).reshape(4, 1, 1)
    theta_x, theta_y, total, valid = segment_deflection(seg, calibration(),
                                                        options=ReconstructionOptions(response=response))
    check_finite_or_nan_and_invalid(theta_x, theta_y, valid)
    assert not valid.any()  # |A - C| > A + B + C + D, or a sum no float32 holds: no count of electrons does this


@SETTINGS
@given(f=fields, step_x=st.floats(1e-300, 1e300), step_y=st.floats(1e-300, 1e300))
def test_divergence_takes_any_finite_input(f, step_x, step_y):
    fx, fy, _, _, valid = f
    out, ok = div(fx * 1e302, fy * 1e302, valid, step_x, step_y)
    assert not np.any(ok & ~valid)
    assert np.all(np.isnan(out[~ok]))


frame_blocks = st.one_of(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)), elements=finite),
    hnp.arrays(np.uint16, st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))),
    hnp.arrays(np.int8, st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))),
)


@SETTINGS
@given(frames=frame_blocks, data=st.data())
def test_frame_reduction_takes_any_finite_frames(frames, data):
    from dpcstem.kernels.com import bounding_box

    n, ky, kx = frames.shape
    mask = data.draw(hnp.arrays(np.bool_, (ky, kx)))
    labels = data.draw(hnp.arrays(np.uint8, (ky, kx), elements=st.integers(0, 4)))
    n_seg = int(labels.max())
    boxes = np.stack([bounding_box(mask), bounding_box(labels)]).astype(np.int64)
    for kernel in (reduce_frames, reduce_frames_serial):
        moments = np.empty((n, 3))
        segments = np.empty((n, n_seg))
        kernel(frames, mask, labels, boxes, moments, segments)
        if frames.dtype.kind in "iu":  # integer frames are summed exactly
            np.testing.assert_array_equal(moments[:, 0], frames[:, mask].astype(np.float64).sum(axis=1))
