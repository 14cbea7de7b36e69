"""The 4D-STEM frame-reduction kernels held to the loop oracle of ``tests/naive.py``."""

import numpy as np
import pytest

from dpcstem.kernels.com import FRAME_DTYPES, bounding_box, reduce_frames, reduce_frames_serial

import naive

KERNELS = [reduce_frames, reduce_frames_serial]


def reference(frames, mask, labels, n_seg):
    """The loop oracle: Σ I, Σ kx·I, Σ ky·I over the mask and each segment's sum, in float64."""
    return naive.reduce_frames(frames, mask, labels, n_seg)


def run(kernel, frames, mask, labels, n_seg):
    boxes = np.stack([bounding_box(mask), bounding_box(labels)])
    moments = np.full((len(frames), 3), -1.0)
    segments = np.full((len(frames), n_seg), -1.0)
    kernel(frames, mask, labels, boxes, moments, segments)
    return moments, segments


def random_frames(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.random(shape) * 1000).astype(dtype)
    high = min(np.iinfo(dtype).max, 60_000)
    low = max(np.iinfo(dtype).min, -100)
    return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)


def disc(shape, cy, cx, r_out, r_in=0.0):
    y, x = np.indices(shape)
    rr = np.hypot(y - cy, x - cx)
    return (rr <= r_out) & (rr >= r_in)


def quadrant_labels(shape, cy, cx, radius):
    y, x = np.indices(shape)
    az = np.mod(np.arctan2(y - cy, x - cx) + np.pi / 4, 2 * np.pi)
    lab = (az // (np.pi / 2)).astype(np.uint8) + 1
    lab[np.hypot(y - cy, x - cx) > radius] = 0
    return lab


@pytest.mark.parametrize("kernel", KERNELS, ids=["parallel", "serial"])
@pytest.mark.parametrize("dtype", FRAME_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7, 13, 11), (1, 9, 5), (3, 1, 1), (20, 32, 33)])
def test_kernel_equals_reference(kernel, dtype, shape):
    rng = np.random.default_rng([7, shape[0], shape[1], np.dtype(dtype).num])
    frames = random_frames(rng, dtype, shape)
    _, ky, kx = shape
    mask = disc((ky, kx), ky * 0.45, kx * 0.55, max(ky, kx) * 0.4, r_in=min(ky, kx) * 0.1)
    if not mask.any():
        mask[0, 0] = True
    labels = quadrant_labels((ky, kx), ky / 2 - 0.3, kx / 2 + 0.2, max(ky, kx) * 0.45)
    got_m, got_s = run(kernel, frames, mask, labels, 4)
    ref_m, ref_s = reference(frames, mask, labels, 4)
    if np.dtype(dtype).kind in "iu":  # integer sums are exact
        np.testing.assert_array_equal(got_m, ref_m)
        np.testing.assert_array_equal(got_s, ref_s)
    else:  # float64 accumulation in another order: equal to rounding
        np.testing.assert_allclose(got_m, ref_m, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got_s, ref_s, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS, ids=["parallel", "serial"])
def test_full_mask_uint16_exact_and_moments_index_the_whole_frame(kernel):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 65535, size=(5, 16, 24), endpoint=True).astype(np.uint16)
    mask = np.ones((16, 24), bool)
    labels = np.zeros((16, 24), np.uint8)
    got_m, got_s = run(kernel, frames, mask, labels, 0)
    np.testing.assert_array_equal(got_m, reference(frames, mask, labels, 0)[0])
    assert got_s.shape == (5, 0)
    # a single bright pixel at (row 11, column 17): its moments are its coordinates
    one = np.zeros((1, 16, 24), np.uint16)
    one[0, 11, 17] = 3
    m, _ = run(kernel, one, mask, labels, 0)
    np.testing.assert_array_equal(m[0], [3, 3 * 17, 3 * 11])


@pytest.mark.parametrize("kernel", KERNELS, ids=["parallel", "serial"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_inside_mask_poisons_only_its_frame_and_nan_outside_is_ignored(kernel, dtype):
    rng = np.random.default_rng(2)
    frames = random_frames(rng, dtype, (4, 15, 15))
    mask = disc((15, 15), 7, 7, 4)
    labels = quadrant_labels((15, 15), 7, 7, 5)
    frames[1, 7, 7] = np.nan          # inside mask and labelled
    frames[2, 0, 14] = np.nan         # outside the mask, the labels and both boxes
    box = bounding_box(mask)
    corner = (box[0], box[2])             # inside the mask's box, outside the disc
    assert not mask[corner]
    frames[3][corner] = np.nan
    got_m, got_s = run(kernel, frames, mask, labels, 4)
    ref_m, ref_s = reference(frames, mask, labels, 4)
    assert np.isnan(got_m[1]).all()
    assert np.isfinite(got_m[[0, 2, 3]]).all()
    np.testing.assert_allclose(got_m[[0, 2, 3]], ref_m[[0, 2, 3]], rtol=1e-12)
    np.testing.assert_allclose(got_s[[0, 2]], ref_s[[0, 2]], rtol=1e-12)
    assert np.isnan(got_s[1]).any()


@pytest.mark.parametrize("kernel", KERNELS, ids=["parallel", "serial"])
def test_many_segments_scatter_path_and_strided_frames(kernel):
    rng = np.random.default_rng(3)
    big = random_frames(rng, np.uint16, (6, 40, 42))
    frames = big[::2, 3:37, 1:40]  # not contiguous
    ky, kx = frames.shape[1:]
    labels = (np.add.outer(np.arange(ky), np.arange(kx)) % 13).astype(np.uint8)  # 12 segments, label 0 skipped
    mask = np.zeros((ky, kx), bool)
    mask[5:9, 20:31] = True  # a box away from the frame's origin
    got_m, got_s = run(kernel, frames, mask, labels, 12)
    ref_m, ref_s = reference(frames, mask, labels, 12)
    np.testing.assert_array_equal(got_m, ref_m)
    np.testing.assert_array_equal(got_s, ref_s)


def test_empty_mask_gives_zero_moments_and_no_frames_is_fine():
    frames = np.ones((3, 6, 6), np.uint8)
    mask = np.zeros((6, 6), bool)
    labels = np.zeros((6, 6), np.uint8)
    labels[2, 3] = 1
    m, s = run(reduce_frames, frames, mask, labels, 1)
    np.testing.assert_array_equal(m, 0.0)
    np.testing.assert_array_equal(s, 1.0)
    m, s = run(reduce_frames, frames[:0], mask, labels, 1)
    assert m.shape == (0, 3) and s.shape == (0, 1)


def test_uint32_large_counts_are_exact():
    frames = np.full((2, 33, 31), np.iinfo(np.uint32).max, dtype=np.uint32)
    mask = np.ones((33, 31), bool)
    labels = np.ones((33, 31), np.uint8)
    m, s = run(reduce_frames, frames, mask, labels, 1)
    total = 33 * 31 * (2**32 - 1)
    assert m[0, 0] == total and s[0, 0] == total
    assert m[0, 1] == (2**32 - 1) * 33 * (30 * 31 // 2)


def test_bounding_box():
    img = np.zeros((7, 9), np.uint8)
    np.testing.assert_array_equal(bounding_box(img), [0, 0, 0, 0])
    img[2, 3] = 1
    img[5, 1] = 4
    np.testing.assert_array_equal(bounding_box(img), [2, 6, 1, 4])
    np.testing.assert_array_equal(bounding_box(np.ones((1, 1), bool)), [0, 1, 0, 1])


@pytest.mark.parametrize("kernel", KERNELS, ids=["parallel", "serial"])
def test_whole_box_mask_path_keeps_nan_checks(kernel):
    rng = np.random.default_rng(9)
    frames = random_frames(rng, np.float32, (3, 10, 12))
    frames[2, 4, 5] = np.nan
    mask = np.zeros((10, 12), bool)
    mask[2:9, 3:11] = True  # a full rectangle: the kernel skips the per-pixel test
    labels = np.zeros((10, 12), np.uint8)
    got_m, _ = run(kernel, frames, mask, labels, 0)
    ref_m, _ = reference(frames, mask, labels, 0)
    np.testing.assert_allclose(got_m[:2], ref_m[:2], rtol=1e-12)
    assert np.isnan(got_m[2]).all()


def assert_matches_reference(dtype, got, ref):
    if np.dtype(dtype).kind in "iu":  # integer sums are exact
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS, ids=["parallel", "serial"])
@pytest.mark.parametrize("dtype", FRAME_DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["reversed", "fortran", "every_other_column"])
def test_any_strides_whole_and_masked(kernel, dtype, layout):
    rng = np.random.default_rng([11, np.dtype(dtype).num])
    big = random_frames(rng, dtype, (5, 23, 38))
    frames = {"reversed": big[::-1, ::-1, ::-1], "fortran": np.asfortranarray(big),
              "every_other_column": big[:, 1:, ::2]}[layout]
    ky, kx = frames.shape[1:]
    labels = quadrant_labels((ky, kx), ky / 2, kx / 2, max(ky, kx))
    whole = np.zeros((ky, kx), bool)
    whole[2:ky - 1, 1:kx - 2] = True  # a full rectangle: no per-pixel test
    for mask in (whole, disc((ky, kx), ky / 2, kx / 2 - 1, ky * 0.45, r_in=2)):
        got_m, got_s = run(kernel, frames, mask, labels, 4)
        ref_m, ref_s = reference(frames, mask, labels, 4)
        assert_matches_reference(dtype, got_m, ref_m)
        assert_matches_reference(dtype, got_s, ref_s)


@pytest.mark.parametrize("kernel", KERNELS, ids=["parallel", "serial"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_saturated_wide_frames_do_not_wrap(kernel, dtype):
    """Row sums of 8- and 16-bit frames are int32: a saturated 4000-pixel row (2.6e8 for
    16-bit) and the whole frame stay exact, masked or not."""
    top = np.iinfo(dtype).max
    frames = np.full((2, 66, 4000), top, dtype=dtype)
    frames[1, ::3, 7::5] = np.iinfo(dtype).min
    labels = np.zeros((66, 4000), np.uint8)
    labels[:, :2000], labels[:, 2000:] = 1, 2
    whole = np.ones((66, 4000), bool)
    ring = disc((66, 4000), 33, 2000, 1900, r_in=5)
    for mask in (whole, ring):
        got_m, got_s = run(kernel, frames, mask, labels, 2)
        ref_m, ref_s = reference(frames, mask, labels, 2)
        np.testing.assert_array_equal(got_m, ref_m)
        np.testing.assert_array_equal(got_s, ref_s)
    assert got_s[0].sum() == 66 * 4000 * top  # 1.7e10 for 16-bit: past 2**31


@pytest.mark.parametrize("kernel", KERNELS, ids=["parallel", "serial"])
@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_many_segments_in_runs_and_fragmented(kernel, dtype):
    """Labels in long runs along the rows (12 sectors and rings, touching the box's edges and
    each other) are summed run by run; fragmented ones (mean run under 4 px) pixel by pixel."""
    rng = np.random.default_rng([13, np.dtype(dtype).num])
    frames = random_frames(rng, dtype, (6, 29, 41))
    y, x = np.indices((29, 41))
    sector = (np.mod(np.arctan2(y - 14.2, x - 20.3), 2 * np.pi) // (np.pi / 3)).astype(np.uint8)
    ring = (np.hypot(y - 14.2, x - 20.3) > 8).astype(np.uint8)
    runs = 1 + sector + 6 * ring  # 12 segments covering the frame
    runs[0, :] = 0
    fragmented = runs.copy()
    fragmented[:, 1::2] = 0  # runs of one pixel
    mask = disc((29, 41), 14, 20, 10)
    for labels in (runs, fragmented):
        got_m, got_s = run(kernel, frames, mask, labels, 12)
        ref_m, ref_s = reference(frames, mask, labels, 12)
        assert_matches_reference(dtype, got_m, ref_m)
        assert_matches_reference(dtype, got_s, ref_s)
