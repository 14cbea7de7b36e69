"""Centre of mass and virtual segments of 4D-STEM frames: every data path, and CoM → field."""

import os
import subprocess
import sys
import textwrap

import dask
import dask.array as da
import h5py
import hyperspy.api as hs
import numpy as np
import pytest

from dpcstem import Calibration, InputDataError
from dpcstem.errors import CalibrationError
from dpcstem.fourd import (
    FrameSums,
    bright_field_disc,
    centre_of_mass,
    deflection_from_com,
    disc_mask,
    frame_sums,
    mrad_per_px,
    quadrant_labels,
    reconstruct_com,
    virtual_segments,
)
from dpcstem.io.pixelated import open_pixelated
from dpcstem.simulate.fourd import simulate_frames
from helpers import PEAK_MEMORY_FUNCTIONS, worker_processes

FRAME = (17, 19)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(11)
    return rng.integers(0, 3000, size=(5, 6, *FRAME)).astype(np.uint16)


@pytest.fixture(scope="module")
def masks():
    return disc_mask(FRAME, (8.2, 9.1), 7.0, inner_radius_px=1.5), quadrant_labels(FRAME, (8.2, 9.1), 8.0)


def reference_sums(frames, mask, labels):
    """Plain NumPy: masked Σ I, centre of mass and segment sums of every frame."""
    f = frames.astype(np.float64)
    inside = np.where(mask, f, 0.0)
    total = inside.sum(axis=(2, 3))
    ky, kx = mask.shape
    com_x = (inside * np.arange(kx)).sum(axis=(2, 3)) / total
    com_y = (inside * np.arange(ky)[:, None]).sum(axis=(2, 3)) / total
    segments = np.stack([np.where(labels == j, f, 0.0).sum(axis=(2, 3)) for j in range(1, labels.max() + 1)])
    return total, com_x, com_y, segments


def assert_same(a: FrameSums, b: FrameSums):
    for name in ("intensity", "com_x", "com_y", "segments"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.fixture(scope="module")
def cluster():
    """A two-worker dask.distributed LocalCluster, closed after the module."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def test_in_memory_equals_numpy_reference(frames, masks):
    mask, labels = masks
    got = frame_sums(frames, mask=mask, labels=labels)
    total, com_x, com_y, segments = reference_sums(frames, mask, labels)
    np.testing.assert_array_equal(got.intensity, total)
    np.testing.assert_allclose(got.com_x, com_x, rtol=1e-14)
    np.testing.assert_allclose(got.com_y, com_y, rtol=1e-14)
    np.testing.assert_array_equal(got.segments, segments)
    assert got.segments.shape == (4, 5, 6)


def test_every_local_path_gives_the_same_answer(frames, masks, tmp_path):
    mask, labels = masks
    expected = frame_sums(frames, mask=mask, labels=labels)
    small = 3 * frames[0, 0].nbytes  # blocks of three frames: several blocks, split scan rows
    np.save(tmp_path / "f.npy", frames)
    memmap = np.load(tmp_path / "f.npy", mmap_mode="r")
    assert_same(frame_sums(memmap, mask=mask, labels=labels, block_bytes=small), expected)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("scan/frames", data=frames, chunks=(1, 2, *FRAME))
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert_same(frame_sums(f["scan/frames"], mask=mask, labels=labels, block_bytes=small), expected)
    opened = open_pixelated(tmp_path / "f.h5", chunk_bytes=small)
    assert len(opened.data.chunks[0]) > 1
    assert_same(frame_sums(opened, mask=mask, labels=labels), expected)  # Dask, threaded scheduler
    lazy = da.from_array(frames, chunks=(2, 4, *FRAME))
    assert_same(frame_sums(lazy, mask=mask, labels=labels), expected)
    split = da.from_array(frames, chunks=(5, 6, 9, 19))  # chunks that split frames are joined
    assert_same(frame_sums(split, mask=mask, labels=labels), expected)
    signal = hs.signals.Signal2D(lazy).as_lazy()
    assert_same(frame_sums(signal, mask=mask, labels=labels), expected)


def test_lazy_hyperspy_file_and_memmap_with_odd_layouts(frames, masks, tmp_path):
    mask, labels = masks
    expected = frame_sums(frames, mask=mask, labels=labels)
    hs.signals.Signal2D(frames).save(tmp_path / "f.hspy")
    lazy = hs.load(tmp_path / "f.hspy", lazy=True)
    assert_same(frame_sums(lazy, mask=mask, labels=labels), expected)
    big_endian = frames.astype(">u2")
    assert_same(frame_sums(big_endian, mask=mask, labels=labels), expected)
    strided = np.zeros((5, 12, *FRAME), np.uint16)
    strided[:, ::2] = frames
    assert_same(frame_sums(strided[:, ::2], mask=mask, labels=labels, block_bytes=1), expected)
    as_int64 = frame_sums(frames.astype(np.int64), mask=mask, labels=labels)
    assert_same(as_int64, expected)


def test_distributed_cluster_gives_the_same_answer(frames, masks, tmp_path, cluster):
    mask, labels = masks
    expected = frame_sums(frames, mask=mask, labels=labels)
    small = 4 * frames[0, 0].nbytes
    lazy = da.from_array(frames, chunks=(2, 3, *FRAME))
    assert_same(frame_sums(lazy, mask=mask, labels=labels, scheduler=cluster.scheduler_address), expected)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("frames", data=frames, chunks=(1, 6, *FRAME))
    opened = open_pixelated(tmp_path / "f.h5", chunk_bytes=small)
    assert_same(frame_sums(opened, mask=mask, labels=labels, scheduler=cluster.scheduler_address), expected)
    np.save(tmp_path / "f.npy", frames)
    memmap = open_pixelated(tmp_path / "f.npy").data
    assert isinstance(memmap, np.memmap)
    got = frame_sums(memmap, mask=mask, labels=labels, scheduler=cluster.scheduler_address, block_bytes=small)
    assert_same(got, expected)
    with h5py.File(tmp_path / "f.h5", "r") as f:  # an open h5py dataset is read by name on the workers
        got = frame_sums(f["frames"], mask=mask, labels=labels, scheduler=cluster.scheduler_address)
    assert_same(got, expected)


def test_local_cluster_started_for_the_call_is_closed(frames, masks):
    mask, labels = masks
    expected = frame_sums(frames, mask=mask, labels=labels)
    before = worker_processes()
    got = frame_sums(da.from_array(frames, chunks=(3, 6, *FRAME)), mask=mask, labels=labels, workers=2)
    assert_same(got, expected)
    assert worker_processes() <= before


def test_unreachable_scheduler_and_both_options_are_refused(frames):
    with pytest.raises(InputDataError, match="scheduler.*not both"):
        frame_sums(frames, scheduler="tcp://127.0.0.1:1", workers=2)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(InputDataError, match="cannot reach the Dask scheduler"):
        frame_sums(frames, scheduler="tcp://127.0.0.1:1")


def test_nan_frame_gives_nan_centre_of_mass_and_is_masked_in_the_result():
    frames = simulate_frames(np.zeros((3, 4)), np.zeros((3, 4)), Calibration(kv=200, alpha_mrad=1, step_x_nm=1),
                             frame_shape=(24, 24), mrad_per_px=0.15, noise=False)
    frames[1, 2, 12, 12] = np.nan
    sums = centre_of_mass(frames)
    assert np.isnan(sums.com_x[1, 2]) and np.isnan(sums.intensity[1, 2])
    assert np.isfinite(np.delete(sums.com_x.ravel(), 1 * 4 + 2)).all()
    dark = np.zeros((2, 2, 5, 5), np.uint16)
    assert np.isnan(centre_of_mass(dark).com_x).all()


def test_progress_bar_reports_on_stderr(frames, capsys):
    frame_sums(frames, progress=True, block_bytes=frames[0, 0].nbytes * 7)
    assert "4D-STEM" in capsys.readouterr().err
    frame_sums(da.from_array(frames, chunks=(1, 6, *FRAME)), progress=True)
    assert "chunks" in capsys.readouterr().err
    frame_sums(frames, progress=False)
    assert capsys.readouterr().err == ""


def test_bad_inputs_are_named():
    with pytest.raises(InputDataError, match=r"\(scan_y, scan_x, ky, kx\).*\(4, 5, 6\)"):
        frame_sums(np.zeros((4, 5, 6)))
    with pytest.raises(InputDataError, match="mask shape"):
        frame_sums(np.zeros((2, 2, 5, 5)), mask=np.ones((5, 4), bool))
    with pytest.raises(InputDataError, match="labels must lie in 0..255"):
        frame_sums(np.zeros((2, 2, 5, 5)), labels=np.full((5, 5), 300))
    with pytest.raises(InputDataError, match="real numbers"):
        frame_sums(np.zeros((2, 2, 5, 5), complex))
    with pytest.raises(InputDataError, match="NumPy, Dask or HDF5"):
        frame_sums([[1, 2]])
    with pytest.raises(InputDataError, match="labels hold no segment"):
        virtual_segments(np.zeros((2, 2, 5, 5)), np.zeros((5, 5), int))
    with pytest.raises(InputDataError, match="holds no pixel"):
        disc_mask((5, 5), (40, 40), 2)


def test_quadrant_labels_follow_the_segment_convention():
    labels = quadrant_labels((21, 21), (10, 10), 9)
    assert labels[10, 18] == 1  # A on +kx
    assert labels[18, 10] == 2  # B on +ky
    assert labels[10, 2] == 3   # C on −kx
    assert labels[2, 10] == 4   # D on −ky
    assert labels[10, 10] == 0 and labels[0, 0] == 0  # the centre and outside the radius: no segment
    assert [labels[7, 13], labels[13, 13], labels[13, 7], labels[7, 7]] == [1, 2, 3, 4]  # diagonals
    counts = np.bincount(labels.ravel(), minlength=5)[1:]
    assert counts.min() == counts.max()
    np.testing.assert_array_equal(np.rot90(labels == 1, k=-1), labels == 2)  # 90° apart, image of each other


def test_virtual_segments_of_a_shifted_disc():
    cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=1.0)
    theta_x = np.array([[0.0, 0.1, 0.0]])
    theta_y = np.array([[0.0, 0.0, 0.1]])
    frames = simulate_frames(theta_x, theta_y, cal, frame_shape=(41, 41), mrad_per_px=0.1, noise=False)
    seg = virtual_segments(frames, quadrant_labels((41, 41), (20, 20), 18))
    a, b, c, d = seg[:, 0, 0]
    np.testing.assert_allclose([a - c, b - d], 0, atol=1e-6 * a)
    # diagonal pixels split by a fixed rule leave a small cross-talk of pixelation
    a, b, c, d = seg[:, 0, 1]
    assert a - c > 500 and abs(b - d) < 0.05 * (a - c)  # toward +x raises A, lowers C
    a, b, c, d = seg[:, 0, 2]
    assert b - d > 500 and abs(a - c) < 0.05 * (b - d)  # toward +y raises B, lowers D


def test_virtual_segments_reconstruct_like_a_four_segment_detector():
    from dpcstem.reconstruct import reconstruct

    cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=1.0, detector_rotation_deg=25.0, flip=True)
    rng = np.random.default_rng(5)
    theta_x = rng.uniform(-0.08, 0.08, (3, 4))
    theta_y = rng.uniform(-0.08, 0.08, (3, 4))
    frames = simulate_frames(theta_x, theta_y, cal, frame_shape=(64, 64), mrad_per_px=0.05, blur_px=0.3,
                             noise=False)
    segments = virtual_segments(frames, quadrant_labels((64, 64), (31.5, 31.5), 30))
    result = reconstruct(segments, cal)
    np.testing.assert_allclose(result.deflection_x, theta_x, atol=0.03 * 0.08)
    np.testing.assert_allclose(result.deflection_y, theta_y, atol=0.03 * 0.08)


def test_mrad_per_px():
    assert mrad_per_px(camera_length_mm=100, detector_pixel_um=55) == pytest.approx(0.55)
    assert mrad_per_px(mrad_per_px=0.2) == 0.2
    with pytest.raises(CalibrationError, match="--camera-length MM --detector-pixel-um UM"):
        mrad_per_px(camera_length_mm=100)
    with pytest.raises(CalibrationError, match="not both"):
        mrad_per_px(mrad_per_px=0.2, camera_length_mm=100, detector_pixel_um=55)
    with pytest.raises(CalibrationError, match="camera_length_mm must be positive"):
        mrad_per_px(camera_length_mm=-1, detector_pixel_um=55)


def test_com_descan_is_the_robust_fit_of_the_segment_path():
    """Without a reference or region, only the median centre is removed: no plane takes real field.

    A plane fitted over the whole scan tilts toward a field that covers part of it (a
    junction's field came out 39 % low); the default keeps the field whole and leaves the
    descan, which :func:`fit_descan`'s robust surface over a field-free region removes.
    """
    y, x = np.indices((21, 31), dtype=float)
    plane_x, plane_y = 3.0 + 0.02 * x - 0.01 * y, -1.0 + 0.015 * y
    bump = np.where((x > 24) & (y > 15), 0.8, 0.0)  # the specimen's deflection, px
    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1.0)
    tx, ty = deflection_from_com(plane_x + bump, plane_y, cal, mrad_per_px=1.0)
    np.testing.assert_allclose(tx, plane_x + bump - np.median(plane_x + bump), atol=1e-9)
    np.testing.assert_allclose(ty, plane_y - np.median(plane_y), atol=1e-9)
    region = x < 20
    tx, _ = deflection_from_com(plane_x + bump, plane_y, cal, mrad_per_px=1.0, region=region)
    np.testing.assert_allclose(tx, bump, atol=1e-9)
    with pytest.raises(InputDataError, match="descan region holds no pixel"):
        deflection_from_com(plane_x, plane_y, cal, mrad_per_px=1.0, region=np.zeros(x.shape, bool))


@pytest.mark.parametrize("rotation, flip", [(0.0, False), (30.0, False), (-120.0, True)])
def test_deflection_from_com_honours_rotation_and_flip(rotation, flip):
    cal = Calibration(kv=200, alpha_mrad=1, step_x_nm=1, detector_rotation_deg=rotation, flip=flip)
    rng = np.random.default_rng(3)
    tx, ty = rng.normal(size=(2, 4, 5))
    psi = np.radians(rotation)
    kx_axis = np.array([np.cos(psi), np.sin(psi)])
    ky_axis = np.array([np.cos(psi - np.pi / 2), np.sin(psi - np.pi / 2)]) if flip else \
        np.array([np.cos(psi + np.pi / 2), np.sin(psi + np.pi / 2)])
    scale = 0.25
    com_x = 30 + (tx * kx_axis[0] + ty * kx_axis[1]) / scale
    com_y = 20 + (tx * ky_axis[0] + ty * ky_axis[1]) / scale
    got_x, got_y = deflection_from_com(com_x, com_y, cal, mrad_per_px=scale, reference=(30.0, 20.0))
    np.testing.assert_allclose(got_x, tx, atol=1e-12)
    np.testing.assert_allclose(got_y, ty, atol=1e-12)


def test_bright_field_disc_is_found():
    cal = Calibration(kv=200, alpha_mrad=1.2, step_x_nm=1)
    frames = simulate_frames(np.zeros((2, 3)), np.zeros((2, 3)), cal, frame_shape=(48, 50), mrad_per_px=0.1,
                             centre_yx=(22.0, 26.0), noise=False)
    (cy, cx), radius = bright_field_disc(frames)
    assert (cy, cx) == pytest.approx((22.0, 26.0), abs=0.05)
    assert radius == pytest.approx(12.0, rel=0.03)
    with pytest.raises(InputDataError, match="no counts"):
        bright_field_disc(np.zeros((2, 2, 8, 8)))


def test_simulated_layer_field_recovered_within_one_percent():
    """Known answer: a Mott–Schottky layer → deflection → 4D frames with descan → CoM → field."""
    from dpcstem.simulate import MottSchottky, deflection_from_truth, layer_truth

    layer = MottSchottky(density_per_m3=1e25, eps_r=10.0, potential_drop_v=0.5)
    shape, step = (6, 48), 1.0
    truth = layer_truth(layer, shape, step, point_nm=(20.0, 2.5))
    cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=step, thickness_nm=100.0, detector_rotation_deg=-35.0,
                      flip=True)
    theta_x, theta_y = deflection_from_truth(truth, cal.kv, cal.thickness_nm)
    frames = simulate_frames(theta_x, theta_y, cal, frame_shape=(40, 40), mrad_per_px=0.08, noise=False,
                             descan_px_per_step=[[0.01, -0.02], [0.015, 0.005]])
    field_free = np.abs(truth.field_x) < 1e-6 * np.abs(truth.field_x).max()
    result = reconstruct_com(frames, cal, mrad_per_px=0.08, mask_radius_px=18.0, region=field_free)
    peak = np.abs(truth.field_x).max()
    assert peak > 1e8
    ok = result.valid
    assert ok.mean() > 0.9
    assert np.abs(result.field_x[ok] - truth.field_x[ok]).max() < 0.01 * peak
    assert np.abs(result.field_y[ok] - truth.field_y[ok]).max() < 0.01 * peak
    com_x, unit = result.extra["com_x"]
    assert unit == "px" and com_x.shape == shape
    assert result.extra["intensity"][1] == "counts"
    assert result.attrs["mrad_per_px"] == 0.08 and result.attrs["mask_radius_px"] == 18.0


_PEAK_SCRIPT = PEAK_MEMORY_FUNCTIONS + """
import os, sys
import numpy as np, h5py
from dpcstem.fourd import frame_sums


small_path, path, kind, block = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def reduce(name):
    if kind == "npy":
        return frame_sums(np.load(name, mmap_mode="r"), block_bytes=block)
    with h5py.File(name, "r") as f:
        return frame_sums(f["frames"], block_bytes=block)
def read_whole():  # the control: what holding the file costs
    if kind == "npy":
        return np.load(path).sum(dtype=np.int64)
    with h5py.File(path, "r") as f:
        return f["frames"][()].sum(dtype=np.int64)
reduce(small_path)  # warm up imports, the compiled kernel and the file library
small, _ = growth(lambda: reduce(small_path))
big, sums = growth(lambda: reduce(path))
whole, total = growth(read_whole)
print(small, big, whole, float(sums.intensity.sum()), int(total))
"""


def _write_frames_file(path, kind, ny, rows):
    if kind == "npy":
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(ny, *rows.shape))
        for y in range(ny):
            out[y] = rows
        out.flush()
        del out
    else:
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("frames", shape=(ny, *rows.shape), dtype=np.uint16, chunks=(1, *rows.shape))
            for y in range(ny):
                ds[y] = rows


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs "
                    "to measure a peak of resident memory")
@pytest.mark.parametrize("kind", ["npy", "h5"])
def test_peak_memory_is_bounded_by_the_block_not_the_file(tmp_path, kind):
    """Files of 12 and 48 MiB reduced in 1 MiB blocks: the larger costs no more memory than the smaller
    (holding it would cost 36 MiB more) and well under its size; reading it whole (the control) costs
    its size, so the measurement sees what holding a file costs."""
    nx, k = 64, 64
    rows = np.random.default_rng(0).integers(0, 50, size=(nx, k, k)).astype(np.uint16)
    _write_frames_file(tmp_path / f"small.{kind}", kind, 24, rows)
    _write_frames_file(tmp_path / f"big.{kind}", kind, 96, rows)
    small_size, big_size = 24 * nx * k * k * 2, 96 * nx * k * k * 2
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_PEAK_SCRIPT), str(tmp_path / f"small.{kind}"),
                           str(tmp_path / f"big.{kind}"), kind, str(2**20)], capture_output=True, text=True, check=True)
    small, big, whole, total, control_total = done.stdout.split()
    small, big, whole = int(small), int(big), int(whole)
    assert float(total) == float(rows.astype(np.int64).sum()) * 96 == float(control_total)
    assert whole > 0.9 * big_size
    assert big - small < small_size / 2, f"{big_size / 2**20:.0f} MiB grew {big / 2**20:.1f} MiB, " \
                                         f"{small_size / 2**20:.0f} MiB grew {small / 2**20:.1f} MiB"
    assert big < big_size / 4
