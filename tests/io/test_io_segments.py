"""Reading four-segment acquisitions: every format round-trips, every bad input says why."""

import hashlib
import math
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from dpcstem.errors import DPCError, InputDataError, MissingMetadataError, UnreadableFileError
from dpcstem.io.segments import SegmentAcquisition, read_segments

from conftest import SHARED_DATA as DATA
VELOX_DPC = DATA / "velox" / "fei_example_dpc_titles.emd"
VELOX_SUMMED = DATA / "velox" / "STEM_HAADF-DF4-DF2-BF_Diffraction_Micro.emd"
DF4_PNG = DATA / "df4_png"


def _segments(dtype, shape=(5, 7), seed=0):
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 60000, size=(4, *shape))
    return data.astype(dtype)


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_only(*paths):
    """Make files read-only and return their digests, to show the reader neither writes nor needs to."""
    for p in paths:
        os.chmod(p, 0o444)
    return [_digest(p) for p in paths]


# -- simple formats round-trip ------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.uint8])
def test_npy_round_trip(tmp_path, dtype):
    data = _segments(dtype)
    path = tmp_path / "seg.npy"
    np.save(path, data)
    digest = _read_only(path)
    acq = read_segments(path)
    assert isinstance(acq, SegmentAcquisition)
    assert acq.segments.dtype == dtype
    np.testing.assert_array_equal(acq.segments, data)
    assert acq.paths == (path,)
    assert acq.calibration_values == {}
    assert _read_only(path) == digest


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_tiff_stack_round_trip(tmp_path, dtype):
    import tifffile

    data = _segments(dtype, shape=(3, 9))
    path = tmp_path / "seg.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    digest = _read_only(path)
    acq = read_segments(str(path))
    np.testing.assert_array_equal(acq.segments, data)
    assert acq.segments.dtype == dtype
    assert _read_only(path) == digest


def test_tiff_of_one_page_with_four_planes(tmp_path):
    """Older writers store a (4, ny, nx) stack as one page of four separate sample planes."""
    import tifffile

    data = _segments(np.uint16, shape=(5, 3))
    path = tmp_path / "planes.tif"
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate", extrasamples=["unspecified"])
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1
    np.testing.assert_array_equal(read_segments(path).segments, data)


def test_tiff_of_four_separate_pages(tmp_path):
    """Pages written one by one (as many instruments do), not as one shaped series."""
    import tifffile

    data = _segments(np.uint16, shape=(4, 6))
    path = tmp_path / "pages.tiff"
    with tifffile.TiffWriter(path) as tif:
        for page in data:
            tif.write(page, metadata=None)
    np.testing.assert_array_equal(read_segments(path).segments, data)


def test_hdf5_round_trip_with_calibration(tmp_path):
    data = _segments(np.uint16, shape=(6, 5))
    path = tmp_path / "seg.h5"
    with h5py.File(path, "w") as f:
        f.attrs["kv"] = 200.0
        f.attrs["step_x_nm"] = 0.5
        f.attrs["thickness_nm"] = np.nan  # not recorded
        ds = f.create_dataset("segments", data=data)
        ds.attrs["alpha_mrad"] = 21.4
        ds.attrs["detector_rotation_deg"] = -12.5
        ds.attrs["flip"] = np.uint8(1)
        ds.attrs["step_y_nm"] = 0.75
        ds.attrs["bias_v"] = 1.5
        ds.attrs["operator"] = "someone"
    digest = _read_only(path)
    acq = read_segments(path)
    np.testing.assert_array_equal(acq.segments, data)
    assert acq.segments.dtype == np.uint16
    assert acq.calibration_values == {"kv": 200.0, "alpha_mrad": 21.4, "detector_rotation_deg": -12.5,
                                      "flip": True, "step_x_nm": 0.5, "step_y_nm": 0.75}
    assert acq.metadata["bias_v"] == 1.5
    assert acq.metadata["original"]["operator"] == "someone"
    assert _read_only(path) == digest


def test_hdf5_named_dataset(tmp_path):
    data = _segments(np.float32)
    path = tmp_path / "seg.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/dpc/quadrants", data=data)
    np.testing.assert_array_equal(read_segments(path, dataset="entry/dpc/quadrants").segments, data)
    with pytest.raises(MissingMetadataError, match=r"dataset 'segments'.*not found.*entry/dpc/quadrants"):
        read_segments(path)
    with pytest.raises(MissingMetadataError, match=r"'entry/dpc' .*is a group"):
        read_segments(path, dataset="entry/dpc")


@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_four_single_image_files(tmp_path, suffix):
    import imageio.v3 as iio
    import tifffile

    data = _segments(np.uint16, shape=(8, 5), seed=3)
    paths = []
    for name, image in zip("ABCD", data):
        p = tmp_path / f"{name}{suffix}"
        if suffix == ".tif":
            tifffile.imwrite(p, image)
        elif suffix == ".png":
            iio.imwrite(p, image)
        else:
            np.save(p, image)
        paths.append(p)
    digests = _read_only(*paths)
    # Given out of alphabetical order on purpose: the order given is A, B, C, D.
    order = [2, 0, 3, 1]
    given = [paths[i] for i in order]
    for source in (given, ",".join(map(str, given)), " , ".join(map(str, given))):
        acq = read_segments(source)
        np.testing.assert_array_equal(acq.segments, data[order])
        assert acq.segments.dtype == np.uint16
        assert acq.paths == tuple(given)
    assert _read_only(*paths) == digests


def test_grey_rgb_png_is_accepted_and_colour_refused(tmp_path):
    import imageio.v3 as iio

    grey = _segments(np.uint8, shape=(4, 4), seed=1)
    paths = []
    for name, image in zip("ABCD", grey):
        p = tmp_path / f"{name}.png"
        iio.imwrite(p, np.repeat(image[..., None], 3, axis=-1))
        paths.append(p)
    np.testing.assert_array_equal(read_segments(paths).segments, grey)
    colour = np.repeat(grey[0][..., None], 3, axis=-1)
    colour[0, 0, 1] += 1
    iio.imwrite(paths[1], colour)
    with pytest.raises(InputDataError, match=r"B\.png: a colour image"):
        read_segments(paths)


def test_real_df4_png_files():
    if not DF4_PNG.is_dir():
        pytest.skip(f"reference data not found at {DF4_PNG}")
    paths = [DF4_PNG / f"DF4-{c}.png" for c in "ABCD"]
    with pytest.warns(UserWarning, match=r"DF4-D\.png: every segment spans the full range of uint8 \(A 0\.\.255, "
                                         r"B 0\.\.254.*not quantitative.*field.*wrong"):
        acq = read_segments(",".join(map(str, paths)))
    assert acq.segments.shape == (4, 256, 256)
    assert acq.segments.dtype == np.uint8
    import imageio.v3 as iio

    for k, p in enumerate(paths):
        np.testing.assert_array_equal(acq.segments[k], iio.imread(p)[..., 0])
    assert acq.metadata["titles"] == [p.name for p in paths]


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1.0)])
def test_segments_each_stretched_to_the_full_range_warn_once(tmp_path, dtype, top):
    """Images normalised each to its own min/max for display: the differences DPC measures are gone."""
    rng = np.random.default_rng(4)
    raw = rng.uniform(100, 900, size=(4, 6, 7)) * np.array([1.0, 1.3, 0.8, 1.1])[:, None, None]
    stretched = (raw - raw.min(axis=(1, 2), keepdims=True)) / np.ptp(raw, axis=(1, 2), keepdims=True) * top
    path = tmp_path / "seg.npy"
    np.save(path, stretched.astype(dtype) if dtype == np.float32 else np.rint(stretched).astype(dtype))
    with pytest.warns(UserWarning, match=rf"seg\.npy: every segment spans the full range of {np.dtype(dtype)}") as seen:
        read_segments(path)
    assert len(seen) == 1
    np.save(path, np.rint(raw).astype(dtype))  # raw counts: no word
    read_segments(path)


# -- HyperSpy signals ---------------------------------------------------------------------

def test_hyperspy_stack_with_calibrated_axes():
    import hyperspy.api as hs

    data = _segments(np.float32, shape=(6, 4))
    s = hs.signals.Signal2D(data)
    s.axes_manager.signal_axes[0].scale = 0.25  # x
    s.axes_manager.signal_axes[0].units = "nm"
    s.axes_manager.signal_axes[1].scale = 2.0  # y
    s.axes_manager.signal_axes[1].units = "Å"
    s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)
    s.metadata.set_item("Acquisition_instrument.TEM.convergence_angle", 20.0)
    acq = read_segments(s)
    np.testing.assert_array_equal(acq.segments, data)
    assert acq.segments.dtype == np.float32
    assert acq.calibration_values == pytest.approx(
        {"kv": 200.0, "alpha_mrad": 20.0, "step_x_nm": 0.25, "step_y_nm": 0.2})
    assert acq.paths == ()


def test_hyperspy_list_in_order_and_by_title():
    import hyperspy.api as hs

    data = _segments(np.uint16, shape=(3, 3))
    plain = [hs.signals.Signal2D(d) for d in data]
    np.testing.assert_array_equal(read_segments(plain).segments, data)
    titled = []
    for name, d in zip("ABCD", data):
        s = hs.signals.Signal2D(d)
        s.metadata.General.title = f"DF4-{name}"
        titled.append(s)
    haadf = hs.signals.Signal2D(np.zeros((3, 3), np.uint16))
    haadf.metadata.General.title = "HAADF"
    mixed = [titled[3], haadf, titled[1], titled[0], titled[2]]
    acq = read_segments(mixed)
    np.testing.assert_array_equal(acq.segments, data)
    assert acq.metadata["titles"] == ["DF4-A", "DF4-B", "DF4-C", "DF4-D"]
    with pytest.raises(InputDataError, match=r"needs 4 images.*got 3"):
        read_segments(plain[:3])


# -- errors -------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"nope\.npy: segments file not found"):
        read_segments(tmp_path / "nope.npy")
    import tifffile

    for c in "ABD":
        tifffile.imwrite(tmp_path / f"{c}.tif", np.zeros((2, 2), np.uint16))
    with pytest.raises(UnreadableFileError, match=r"C\.tif: segments file not found"):
        read_segments(",".join(str(tmp_path / f"{c}.tif") for c in "ABCD"))


@pytest.mark.parametrize("suffix, message", [
    (".npy", r"not a readable \.npy array file"),
    (".tif", r"not a readable TIFF file"),
    (".h5", r"not a readable HDF5 file"),
    (".emd", r"not a readable HDF5/EMD file"),
    (".dm4", r"not a readable Gatan DigitalMicrograph file"),
])
def test_text_file_with_a_data_suffix(tmp_path, suffix, message):
    path = tmp_path / f"notes{suffix}"
    path.write_text("this is a text file, not data\n" * 20)
    with pytest.raises(UnreadableFileError, match=f"notes\\{suffix}: {message}"):
        read_segments(path)


def test_text_file_named_png(tmp_path):
    paths = []
    for name in "ABCD":
        p = tmp_path / f"{name}.png"
        p.write_text("not an image")
        paths.append(p)
    with pytest.raises(UnreadableFileError, match=r"A\.png: not a readable image file"):
        read_segments(paths)


def test_truncated_files(tmp_path):
    import tifffile

    data = _segments(np.uint16, shape=(32, 32))
    npy = tmp_path / "seg.npy"
    np.save(npy, data)
    npy.write_bytes(npy.read_bytes()[:-100])
    with pytest.raises(UnreadableFileError, match=r"seg\.npy: not a readable \.npy"):
        read_segments(npy)
    tif = tmp_path / "seg.tif"
    tifffile.imwrite(tif, data, photometric="minisblack")
    tif.write_bytes(tif.read_bytes()[:300])
    with pytest.raises(UnreadableFileError, match=r"seg\.tif: not a readable TIFF"):
        read_segments(tif)
    h5 = tmp_path / "seg.h5"
    with h5py.File(h5, "w") as f:
        f["segments"] = data
    h5.write_bytes(h5.read_bytes()[:1000])
    with pytest.raises(UnreadableFileError, match=r"seg\.h5: not a readable HDF5"):
        read_segments(h5)


@pytest.mark.parametrize("shape, message", [
    ((3, 5, 5), r"shape \(4, ny, nx\).*got shape \(3, 5, 5\)"),
    ((5, 5), r"shape \(4, ny, nx\).*got shape \(5, 5\)"),
    ((4, 5, 5, 2), r"shape \(4, ny, nx\).*got shape \(4, 5, 5, 2\)"),
    ((4, 0, 5), r"segment A is empty"),
])
def test_npy_wrong_shapes(tmp_path, shape, message):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros(shape, np.uint16))
    with pytest.raises(InputDataError, match=message):
        read_segments(path)


def test_segments_of_different_shapes_and_dimensions(tmp_path):
    paths = []
    for name, shape in zip("ABCD", [(4, 4), (4, 4), (4, 5), (4, 4)]):
        p = tmp_path / f"{name}.npy"
        np.save(p, np.zeros(shape, np.float32))
        paths.append(p)
    with pytest.raises(InputDataError, match=r"one shape.*C \(4, 5\)"):
        read_segments(paths)
    np.save(paths[1], np.zeros((2, 4, 4), np.float32))
    with pytest.raises(InputDataError, match=r"segment B must be a 2-D image.*\(2, 4, 4\)"):
        read_segments(paths)
    with pytest.raises(InputDataError, match=r"four single-image files.*got 3"):
        read_segments(paths[:3])


def test_complex_or_text_arrays_refused(tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, np.zeros((4, 2, 2), np.complex64))
    with pytest.raises(InputDataError, match=r"segment A must hold real numbers, got dtype complex64"):
        read_segments(path)


def test_tiff_with_wrong_page_count(tmp_path):
    import tifffile

    path = tmp_path / "three.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 4), np.uint16), photometric="minisblack")
    with pytest.raises(InputDataError, match=r"three\.tif: a segments TIFF holds 4 pages.*got 3 page"):
        read_segments(path)


def test_unknown_suffix_and_misplaced_dataset(tmp_path):
    path = tmp_path / "seg.xyz"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(UnreadableFileError, match=r"seg\.xyz: unknown segments file type '\.xyz'"):
        read_segments(path)
    npy = tmp_path / "seg.npy"
    np.save(npy, np.zeros((4, 2, 2)))
    with pytest.raises(InputDataError, match=r"dataset='x' applies to HDF5 files only"):
        read_segments(npy, dataset="x")
    with pytest.raises(InputDataError, match=r"must be a file path.*got int"):
        read_segments(3)


def test_every_error_is_a_dpc_error(tmp_path):
    """The command line turns DPCError into one line; nothing else may escape for bad input."""
    path = tmp_path / "bad.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DPCError):
        read_segments(path)


# -- the real Velox files -----------------------------------------------------------------

def _need(path):
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")


def test_real_velox_dpc_segments_in_order():
    _need(VELOX_DPC)
    from rsciio.emd import file_reader

    digest = _digest(VELOX_DPC)
    acq = read_segments(VELOX_DPC)
    assert acq.segments.shape == (4, 2, 2)
    assert acq.segments.dtype == np.uint16
    assert acq.metadata["titles"] == ["DF4-A", "DF4-B", "DF4-C", "DF4-D"]
    stored = {r["metadata"]["General"]["title"]: r["data"] for r in file_reader(str(VELOX_DPC))}
    a, b, c, d = acq.segments.astype(np.float64)
    # The file's own difference images fix the order: A−C and B−D, each to the count.
    np.testing.assert_array_equal(a - c, stored["A-C"])
    np.testing.assert_array_equal(b - d, stored["B-D"])
    assert not np.array_equal(a - b, stored["A-C"])  # the check can tell orders apart
    assert acq.paths == (VELOX_DPC,)
    assert _digest(VELOX_DPC) == digest


def test_real_velox_dpc_calibration():
    _need(VELOX_DPC)
    values = read_segments(VELOX_DPC).calibration_values
    assert values["kv"] == pytest.approx(300.0)
    assert values["alpha_mrad"] == pytest.approx(1.0461282069309302)
    assert values["detector_rotation_deg"] == pytest.approx(np.degrees(0.78539788256730858))
    assert values["collection_inner_mrad"] == pytest.approx(0.60253744443432278)
    assert values["collection_outer_mrad"] == pytest.approx(3.3629874186804848)
    assert values["step_x_nm"] == pytest.approx(0.099619915558306547)
    assert values["step_y_nm"] == pytest.approx(0.099619915558306547)
    assert "flip" not in values  # not recorded by Velox
    from dpcstem.calibration import Calibration

    cal = Calibration(**values)  # everything the file gives is a valid calibration
    assert cal.kv == 300.0


def test_real_velox_through_hyperspy_signals():
    _need(VELOX_DPC)
    import hyperspy.api as hs

    signals = hs.load(VELOX_DPC)
    acq = read_segments(signals)
    np.testing.assert_array_equal(acq.segments, read_segments(VELOX_DPC).segments)
    assert acq.calibration_values == pytest.approx(read_segments(VELOX_DPC).calibration_values)


def test_real_velox_summed_df4_is_refused():
    _need(VELOX_SUMMED)
    with pytest.raises(MissingMetadataError,
                       match=r"segment images DF4-A, DF4-B, DF4-C, DF4-D are missing.*'DF4' \(whole DF4 detector"):
        read_segments(VELOX_SUMMED)


# -- Gatan DigitalMicrograph --------------------------------------------------------------

def _dm3(path, images, *, voltage_v=None, scale_nm=None):
    """A minimal DM3 file (version 3, little-endian data) holding ``images``: title → 2-D array.

    Written tag by tag after the layout rosettasciio's reader parses: an ``ImageList`` of
    unnamed groups, each with ``ImageData`` (calibrations, data, dtype code, dimensions),
    ``ImageTags`` and ``Name``.
    """
    import struct

    dm_types = {np.dtype(np.uint16): (10, 4), np.dtype(np.float32): (2, 6)}  # image code, array element code

    def name(text):
        raw = text.encode()
        return struct.pack(">h", len(raw)) + raw

    def group(label, tags):
        return b"\x14" + name(label) + b"\x00\x00" + struct.pack(">i", len(tags)) + b"".join(tags)

    def data(label, info, payload):
        return b"\x15" + name(label) + b"%%%%" + struct.pack(">i", len(info)) + \
            b"".join(struct.pack(">i", v) for v in info) + payload

    def f32(label, value):
        return data(label, [6], struct.pack("<f", value))

    def f64(label, value):
        return data(label, [7], struct.pack("<d", value))

    def i32(label, value):
        return data(label, [3], struct.pack("<i", value))

    def text(label, value):  # DM strings are arrays of 2-byte characters
        return data(label, [20, 4, len(value)], b"".join(struct.pack("<H", ord(c)) for c in value))

    entries = []
    for title, image in images.items():
        image = np.ascontiguousarray(image)
        code, element = dm_types[image.dtype]
        ny, nx = image.shape
        dims = [group("", [f32("Origin", 0.0), f32("Scale", scale_nm or 1.0), text("Units", "nm" if scale_nm else "")])
                for _ in range(2)]
        calibrations = group("Calibrations", [
            group("Brightness", [f32("Origin", 0.0), f32("Scale", 1.0), text("Units", "")]),
            group("Dimension", dims)])
        n_elements = image.size * image.itemsize // {4: 2, 6: 4}[element]
        image_data = group("ImageData", [
            calibrations,
            data("Data", [20, element, n_elements], image.astype(image.dtype.newbyteorder("<")).tobytes()),
            i32("DataType", code),
            group("Dimensions", [i32("", nx), i32("", ny)]),
        ])
        tags = [] if voltage_v is None else [group("Microscope Info", [f64("Voltage", voltage_v)])]
        entries.append(group("", [image_data, group("ImageTags", tags), text("Name", title)]))
    root = b"\x00\x00" + struct.pack(">i", 1) + group("ImageList", entries)
    body = root + b"\x00" * 8
    Path(path).write_bytes(struct.pack(">iii", 3, len(body) + 12, 1) + body)
    return Path(path)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_dm3_with_four_titled_images(tmp_path, dtype):
    data = _segments(dtype, shape=(5, 6), seed=4)
    order = [3, 1, 0, 2]  # stored D, B, A, C: the titles set the order
    images = {f"DF4-{'ABCD'[k]}": data[k] for k in order}
    path = _dm3(tmp_path / "dpc.dm3", images, voltage_v=200000.0, scale_nm=0.125)
    digest = _read_only(path)
    acq = read_segments(path)
    np.testing.assert_array_equal(acq.segments, data)
    assert acq.segments.dtype == dtype
    assert acq.metadata["titles"] == ["DF4-A", "DF4-B", "DF4-C", "DF4-D"]
    assert acq.metadata["order"] == "title"
    assert acq.calibration_values == pytest.approx({"kv": 200.0, "step_x_nm": 0.125, "step_y_nm": 0.125})
    assert _read_only(path) == digest


def test_dm3_untitled_images_in_file_order_and_wrong_count(tmp_path):
    data = _segments(np.uint16, shape=(3, 4), seed=5)
    path = _dm3(tmp_path / "plain.dm3", {f"image {k}": data[k] for k in range(4)})
    acq = read_segments(path)
    np.testing.assert_array_equal(acq.segments, data)
    assert acq.metadata["order"] == "file"
    assert acq.calibration_values == {}  # uncalibrated axes, no voltage
    path = _dm3(tmp_path / "three.dm3", {f"image {k}": data[k] for k in range(3)})
    with pytest.raises(InputDataError, match=r"three\.dm3: .*needs 4 images.*got 3"):
        read_segments(path)


def test_hdf5_attributes_that_are_not_one_number_are_kept_as_metadata(tmp_path):
    path = tmp_path / "seg.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("segments", data=np.ones((4, 2, 2), np.float32))
        ds.attrs["step_x_nm"] = np.array([0.5, 0.6])
        ds.attrs["alpha_mrad"] = "12.5"
        ds.attrs["operator"] = "unknown"
    acq = read_segments(path)
    assert acq.calibration_values == {"alpha_mrad": 12.5}
    np.testing.assert_array_equal(acq.metadata["original"]["step_x_nm"], [0.5, 0.6])
    assert acq.metadata["original"]["operator"] == "unknown"


@pytest.mark.parametrize("stored, expected", [("200", 200.0), (b"300", 300.0), (np.bytes_(b"80 kV"), 80.0),
                                              ("120.5kv", 120.5)])
def test_kv_stored_as_text_is_read(tmp_path, stored, expected):
    path = tmp_path / "seg.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("segments", data=np.ones((4, 2, 2), np.float32))
        f.attrs["kv"] = stored
        f.attrs["detector_rotation_deg"] = "30 deg"
    assert read_segments(path).calibration_values == {"kv": expected, "detector_rotation_deg": 30.0}


@pytest.mark.parametrize("stored", ["unknown", "200 V", "two hundred"])
def test_kv_text_that_is_not_a_number_in_kv_is_refused_naming_the_attribute(tmp_path, stored):
    path = tmp_path / "seg.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("segments", data=np.ones((4, 2, 2), np.float32))
        f.attrs["kv"] = stored
    with pytest.raises(InputDataError, match=rf"seg\.h5: attribute 'kv' is the text '{stored}', not a number in kV"):
        read_segments(path)


def test_real_velox_dpc_reconstructs():
    _need(VELOX_DPC)
    from dpcstem import Calibration
    from dpcstem.reconstruct import reconstruct

    acq = read_segments(VELOX_DPC)
    result = reconstruct(acq.segments, Calibration(**acq.calibration_values, thickness_nm=20.0))
    assert result.valid.all()
    for name in ("deflection_x", "deflection_y", "field_x", "field_y", "potential"):
        assert np.isfinite(getattr(result, name)).all()
    # The deflection lies along the axes the file's rotation gives the A−C, B−D signals.
    a, b, c, d = acq.segments.astype(np.float64)
    total = a + b + c + d
    psi = np.radians(acq.calibration_values["detector_rotation_deg"])
    along_a = result.deflection_x * np.cos(psi) + result.deflection_y * np.sin(psi)
    assert np.all(np.sign(along_a) == np.sign((a - c) / total))


def test_real_velox_summed_df4_through_hyperspy_is_refused():
    _need(VELOX_SUMMED)
    import hyperspy.api as hs

    with pytest.raises(MissingMetadataError, match=r"DF4-A, DF4-B, DF4-C, DF4-D are missing"):
        read_segments(hs.load(VELOX_SUMMED))


# -- byte order, extended precision and memory -----------------------------------------------

def _write_stack(path, data):
    if path.suffix == ".npy":
        np.save(path, data)
    elif path.suffix == ".tif":
        import tifffile

        tifffile.imwrite(path, data, photometric="minisblack", byteorder=">")
    else:
        with h5py.File(path, "w") as f:
            f["segments"] = data


@pytest.mark.parametrize("name, stored, native", [("seg.npy", ">u2", "=u2"), ("seg.h5", ">f4", "=f4"),
                                                  ("seg.tif", ">u2", "=u2"), ("seg.npy", np.longdouble, "f8"),
                                                  ("seg.h5", ">f8", "=f8")])
def test_big_endian_and_extended_precision_segments_are_read_natively_and_reconstruct(tmp_path, name, stored,
                                                                                      native):
    """Such arrays reached the Numba kernel as they were stored and failed there with a 13-line TypingError."""
    from dpcstem import Calibration
    from dpcstem.reconstruct import reconstruct
    from dpcstem.simulate import segments_from_deflection

    cal = Calibration(kv=200.0, alpha_mrad=1.0, step_x_nm=1.0, step_y_nm=1.0, thickness_nm=100.0)
    ty, tx = np.mgrid[0:6, 0:7] * 0.01
    counts = np.rint(segments_from_deflection(tx, ty, cal) * 1e4)
    _write_stack(tmp_path / name, counts.astype(stored))
    acq = read_segments(tmp_path / name)
    assert acq.segments.dtype == np.dtype(native)
    np.testing.assert_array_equal(acq.segments, counts)
    expected = reconstruct(counts, cal)
    np.testing.assert_allclose(reconstruct(acq.segments, cal).deflection_x, expected.deflection_x, rtol=1e-6)


def test_a_declared_stack_larger_than_memory_is_refused_before_reading(tmp_path):
    import psutil

    from dpcstem.errors import InsufficientMemoryError

    side = int(math.ceil(math.sqrt(psutil.virtual_memory().available / 2)))  # 4 x side² uint16: 2 x free
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("segments", shape=(4, side, side), dtype=np.uint16, chunks=(1, 256, 256))
    assert path.stat().st_size < 16 * 1024
    with pytest.raises(InsufficientMemoryError,
                       match=r"huge\.h5: dataset 'segments' needs [\d.]+ GiB but only [\d.]+ GiB of memory is free"):
        read_segments(path)


# -- the writers and the public names ---------------------------------------------------------

def test_write_segments_round_trips_through_read_segments_and_names_the_suffixes_it_writes(tmp_path):
    import dpcstem.io as io

    data = _segments(np.uint16, shape=(5, 6))
    path = io.write_segments(tmp_path / "seg.h5", data, {"kv": 300.0, "step_x_nm": 0.25, "title": None,
                                                         "bias_v": -0.5})
    acq = read_segments(path)
    np.testing.assert_array_equal(acq.segments, data)
    assert acq.calibration_values == {"kv": 300.0, "step_x_nm": 0.25}
    assert acq.metadata["bias_v"] == -0.5 and "title" not in acq.metadata
    with pytest.raises(InputDataError, match=r"seg\.tif: a segments file is written as \.h5, \.hdf5.*not '\.tif'"):
        io.write_segments(tmp_path / "seg.tif", data, {})
    assert not (tmp_path / "seg.tif").exists()


def test_the_lazy_public_names_are_listed():
    import dpcstem.io as io

    assert {"read_segments", "open_pixelated", "write_segments", "write_frames", "write_arrays",
            "write_result", "PixelatedData"} <= set(dir(io))
    assert all(callable(getattr(io, name)) for name in io.__all__)
