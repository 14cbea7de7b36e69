"""Velox files written here in the Velox EMD layout, read through rosettasciio's Velox reader.

A file with known segment images, detector rotation and scan rotation shows that the
segments are found by title and segment index (not by position), that the calibration is
translated once into dpcstem's convention, and that the reconstruction gives back the
field the images were made from.
"""

import json
import math
import uuid

import h5py
import numpy as np
import pytest

from dpcstem import Calibration, physics
from dpcstem.errors import InputDataError, MissingMetadataError
from dpcstem.io.segments import read_segments

KV = 300.0
ALPHA_RAD = 1.2e-3
INNER_RAD, OUTER_RAD = 0.3e-3, 3.5e-3
PIXEL_M = 0.25e-9


def _json_dataset(group, name, value):
    group.create_dataset(name, data=np.array([json.dumps(value).encode()], dtype=object),
                         dtype=h5py.string_dtype(encoding="utf-8"))


def _image_metadata(detector_rotation_rad, scan_rotation_rad, pixel_m):
    custom = {"StemMagnification": {"type": "double", "value": "1000000"}}
    if detector_rotation_rad is not None:
        custom["DetectorRotation"] = {"type": "double", "value": repr(detector_rotation_rad)}
    return {
        "Core": {"MetadataDefinitionVersion": "7.9", "MetadataSchemaVersion": "v1/2013/07"},
        "Instrument": {"Manufacturer": "FEI Company", "InstrumentClass": "Titan", "InstrumentModel": "Titan"},
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1603977376"}},
        "Optics": {"AccelerationVoltage": repr(KV * 1e3), "BeamConvergence": repr(ALPHA_RAD)},
        "Scan": {"ScanRotation": repr(scan_rotation_rad), "FrameTime": "1.0", "DwellTime": "1e-05"},
        "Detectors": {
            "Detector-0": {"DetectorName": "HAADF", "DetectorType": "ScanningDetector",
                           "CollectionAngleRange": {"begin": "0.05", "end": "0.2"}},
            "Detector-1": {"DetectorName": "DF4", "DetectorType": "ScanningDetector",
                           "CollectionAngleRange": {"begin": repr(INNER_RAD), "end": repr(OUTER_RAD)}},
        },
        "BinaryResult": {"Detector": "DF4", "DetectorIndex": "1",
                         "PixelSize": {"width": repr(pixel_m), "height": repr(pixel_m)},
                         "PixelUnitX": "m", "PixelUnitY": "m", "Offset": {"x": "0", "y": "0"}},
        "CustomProperties": custom,
    }


def write_velox(path, images, *, segment_index, detector_rotation_rad=0.5, scan_rotation_rad=0.0,
                pixel_m=PIXEL_M, seed=0):
    """A Velox (format version 9) EMD file holding ``images`` (title → (ny, nx) array).

    Each image gets a random group name and a ``StemInputOperation`` naming its detector
    (the title) with ``segment_index[title]`` (None: the whole detector, no segment);
    groups are written in a shuffled order so that position tells nothing.
    """
    rng = np.random.default_rng(seed)
    titles = list(images)
    order = rng.permutation(len(titles))
    metadata = json.dumps(_image_metadata(detector_rotation_rad, scan_rotation_rad, pixel_m)).encode()
    with h5py.File(path, "w") as f:
        _json_dataset(f, "Version", {"version": "9", "format": "Velox"})
        data = f.create_group("Data").create_group("Image")
        stem = f.create_group("Operations").create_group("StemInputOperation")
        for k in order:
            title = titles[k]
            key = uuid.UUID(int=int(rng.integers(1 << 62))).hex
            group = data.create_group(key)
            group.create_dataset("Data", data=np.asarray(images[title])[:, :, None])
            group.create_dataset("Metadata", data=np.frombuffer(metadata + b"\0" * 16, np.uint8)[:, None])
            index = segment_index.get(title)
            detector = title.split("-")[0]
            segments = "" if index is None else [{"index": str(index), "polarity": "Positive"}]
            _json_dataset(stem, uuid.UUID(int=int(rng.integers(1 << 62))).hex, {
                "dataPath": f"/Data/Image/{key}", "detector": title,
                "detectorInfo": {"name": detector, "segments": segments}, "outputs": []})
    return path


def _field(shape, amplitude):
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    return amplitude * np.sin(2 * np.pi * x / 11.0 + 0.3), amplitude * np.cos(2 * np.pi * y / 7.0) * 0.7


SEGMENT_INDEX = {"DF4-A": 0, "DF4-B": 1, "DF4-C": 2, "DF4-D": 3, "HAADF": None, "DF4": None}


def _images(segments):
    out = {f"DF4-{c}": segments[k] for k, c in enumerate("ABCD")}
    out["HAADF"] = np.full(segments.shape[1:], 7, np.uint16)
    out["DF4"] = segments.sum(axis=0, dtype=np.uint32).astype(np.uint16)
    return out


def test_written_file_is_a_velox_file_for_rosettasciio(tmp_path):
    from rsciio.emd import file_reader

    segments = np.arange(4 * 3 * 5, dtype=np.uint16).reshape(4, 3, 5)
    path = write_velox(tmp_path / "v.emd", _images(segments), segment_index=SEGMENT_INDEX)
    titles = sorted(r["metadata"]["General"]["title"] for r in file_reader(str(path)))
    assert titles == ["DF4", "DF4-A", "DF4-B", "DF4-C", "DF4-D", "HAADF"]


def test_segments_by_title_and_index_with_calibration(tmp_path):
    rng = np.random.default_rng(2)
    segments = rng.integers(1000, 60000, size=(4, 6, 9)).astype(np.uint16)
    for seed in range(3):  # three different storage orders
        path = write_velox(tmp_path / f"v{seed}.emd", _images(segments), segment_index=SEGMENT_INDEX,
                           detector_rotation_rad=0.9, scan_rotation_rad=0.25, seed=seed)
        acq = read_segments(path)
        np.testing.assert_array_equal(acq.segments, segments)
        assert acq.segments.dtype == np.uint16
    values = acq.calibration_values
    assert values["kv"] == pytest.approx(KV)
    assert values["alpha_mrad"] == pytest.approx(1.2)
    assert values["collection_inner_mrad"] == pytest.approx(0.3)
    assert values["collection_outer_mrad"] == pytest.approx(3.5)
    assert values["detector_rotation_deg"] == pytest.approx(math.degrees(0.9 - 0.25))
    assert values["step_x_nm"] == pytest.approx(0.25)
    assert values["step_y_nm"] == pytest.approx(0.25)
    assert acq.metadata["original"]["Scan.ScanRotation"] == pytest.approx(0.25)


def test_rotation_is_wrapped_into_one_turn(tmp_path):
    segments = np.ones((4, 2, 2), np.uint16)
    path = write_velox(tmp_path / "v.emd", _images(segments), segment_index=SEGMENT_INDEX,
                       detector_rotation_rad=0.1, scan_rotation_rad=2 * math.pi - 0.1)
    assert read_segments(path).calibration_values["detector_rotation_deg"] == pytest.approx(math.degrees(0.2))


def test_title_and_index_must_agree(tmp_path):
    segments = np.ones((4, 2, 2), np.uint16)
    swapped = {**SEGMENT_INDEX, "DF4-A": 2, "DF4-C": 0}
    path = write_velox(tmp_path / "v.emd", _images(segments), segment_index=swapped)
    with pytest.raises(MissingMetadataError,
                       match=r"DF4-A, DF4-C are missing.*'DF4-A' \(segment index 2 of DF4\)"):
        read_segments(path)


def test_missing_segment_and_missing_index(tmp_path):
    segments = np.ones((4, 2, 2), np.uint16)
    images = _images(segments)
    del images["DF4-D"]
    path = write_velox(tmp_path / "three.emd", images, segment_index=SEGMENT_INDEX)
    with pytest.raises(MissingMetadataError, match=r"segment images DF4-D are missing.*5 image\(s\)"):
        read_segments(path)
    no_index = {**SEGMENT_INDEX, "DF4-B": None}
    path = write_velox(tmp_path / "noindex.emd", _images(segments), segment_index=no_index)
    with pytest.raises(MissingMetadataError, match=r"DF4-B are missing.*'DF4-B' \(whole DF4 detector"):
        read_segments(path)


def test_duplicate_segment_is_refused(tmp_path):
    segments = np.ones((4, 2, 2), np.uint16)
    images = {**_images(segments), "DF4-A ": segments[0]}  # a second image titled DF4-A
    path = tmp_path / "dup.emd"
    write_velox(path, images, segment_index={**SEGMENT_INDEX, "DF4-A ": 0})
    with h5py.File(path, "r+") as f:  # make both operations name the detector "DF4-A"
        for name, ds in f["Operations/StemInputOperation"].items():
            op = json.loads(ds[0])
            if op["detector"] == "DF4-A ":
                op["detector"] = "DF4-A"
                del f[f"Operations/StemInputOperation/{name}"]
                _json_dataset(f["Operations/StemInputOperation"], name, op)
    with pytest.raises(InputDataError, match=r"more than one image titled DF4-A"):
        read_segments(path)


def test_velox_like_file_reconstructs_to_its_field(tmp_path):
    """Segments made from a known field with a rotated detector and scan come back as that field."""
    from dpcstem.reconstruct import reconstruct
    from dpcstem.simulate import segments_from_deflection

    detector_rotation, scan_rotation = math.radians(65.0), math.radians(-20.0)
    psi_deg = math.degrees(detector_rotation - scan_rotation)  # A's azimuth in the scan frame
    thickness_nm = 60.0
    truth_cal = Calibration(kv=KV, alpha_mrad=ALPHA_RAD * 1e3, step_x_nm=PIXEL_M * 1e9,
                            collection_inner_mrad=INNER_RAD * 1e3, collection_outer_mrad=OUTER_RAD * 1e3,
                            detector_rotation_deg=psi_deg, thickness_nm=thickness_nm)
    shape = (12, 16)
    # A field that deflects the beam by up to a quarter of α, in both directions.
    amplitude = 0.25 * ALPHA_RAD * physics.pv_over_e_v(KV) / (thickness_nm * physics.NM_TO_M)
    field_x, field_y = _field(shape, amplitude)
    theta_x = physics.deflection_mrad_from_field(field_x, KV, thickness_nm)
    theta_y = physics.deflection_mrad_from_field(field_y, KV, thickness_nm)
    counts = segments_from_deflection(theta_x, theta_y, truth_cal, gains=[40000.0] * 4, dtype=np.uint16)
    path = write_velox(tmp_path / "dpc.emd", _images(counts), segment_index=SEGMENT_INDEX,
                       detector_rotation_rad=detector_rotation, scan_rotation_rad=scan_rotation)

    acq = read_segments(path)
    assert acq.calibration_values["detector_rotation_deg"] == pytest.approx(psi_deg)
    cal = Calibration(**acq.calibration_values, thickness_nm=thickness_nm)
    result = reconstruct(acq.segments, cal)
    assert result.valid.all()
    scale = np.abs(field_x).max()
    np.testing.assert_allclose(result.field_x, field_x, rtol=0, atol=2e-3 * scale)
    np.testing.assert_allclose(result.field_y, field_y, rtol=0, atol=2e-3 * scale)

    # The same images read with the rotation left untranslated give another field.
    wrong = reconstruct(acq.segments, cal.replace(detector_rotation_deg=math.degrees(detector_rotation)))
    assert np.abs(wrong.field_x - field_x).max() > 0.2 * scale


def test_the_simultaneous_haadf_is_read_beside_the_segments(tmp_path):
    rng = np.random.default_rng(5)
    segments = rng.integers(1000, 60000, size=(4, 6, 9)).astype(np.uint16)
    images = _images(segments)
    images["HAADF"] = rng.integers(100, 900, size=(6, 9)).astype(np.uint16)
    acq = read_segments(write_velox(tmp_path / "v.emd", images, segment_index=SEGMENT_INDEX))
    np.testing.assert_array_equal(acq.metadata["adf"], images["HAADF"])
    assert acq.metadata["adf_dataset"] == "HAADF"
    # an image of another scan is not the simultaneous one
    images["HAADF"] = np.ones((12, 18), np.uint16)
    acq = read_segments(write_velox(tmp_path / "w.emd", images, segment_index=SEGMENT_INDEX))
    assert "adf" not in acq.metadata


def test_the_real_velox_dpc_file_records_no_dark_field_image(shared_data):
    acq = read_segments(shared_data / "velox" / "fei_example_dpc_titles.emd")
    assert acq.segments.shape == (4, 2, 2) and "adf" not in acq.metadata


def test_a_velox_bias_series_registers_on_its_haadf(tmp_path):
    import subprocess
    import sys

    import h5py

    from dpcstem.simulate import MottSchottky, simulate_bias_series

    cal = Calibration(kv=KV, alpha_mrad=1.2, step_x_nm=PIXEL_M * 1e9, thickness_nm=100,
                      collection_inner_mrad=INNER_RAD * 1e3, collection_outer_mrad=OUTER_RAD * 1e3)
    layer = MottSchottky(density_per_m3=1e25, eps_r=12, potential_drop_v=0.3, sheet_nm=1.5)
    sim = simulate_bias_series(layer, cal, (64, 72), biases=(0.0, 1.0), share=0.5, point_nm=(9.0, 8.0),
                               drift_px=(0.35, -0.55), dose=2e5, rng=4, particles=20, adf=True, vacuum=False)
    paths = []
    for k, acquisition in enumerate(sim.acquisitions):
        images = _images(acquisition.segments)
        images["HAADF"] = np.round(acquisition.adf).astype(np.uint16)
        paths.append(write_velox(tmp_path / f"v{k}.emd", images, segment_index=SEGMENT_INDEX,
                                 detector_rotation_rad=0.0))
    out = tmp_path / "out.h5"
    run = subprocess.run([sys.executable, "-m", "dpcstem", "bias-series", *map(str, paths), "--bias", "0", "1",
                          "--thickness", "100", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "registration on the simultaneous dark-field image (HAADF)" in run.stdout
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["registration_shift"][()], sim.drifts_px, atol=0.05)
