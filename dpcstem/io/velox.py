"""Thermo Fisher Velox metadata: which images are the DF4 segments, and the calibration they record.

Velox writes its segment images ``DF4-A`` .. ``DF4-D`` in any order; each is found here by
its title AND by the segment index its ``Operations.StemInputOperation`` records (A=0 ..
D=3), never by position. :func:`velox_calibration` translates the vendor's values and
conventions into dpcstem's, once (DESIGN.md §2). The simultaneous HAADF (or ADF) image, where
the file holds one of the segments' scan, is found the same way (:func:`velox_adf`): a bias
series registers on it, since its contrast does not change with bias. The file itself is read in
:mod:`dpcstem.io.emd`; HyperSpy signals loaded from a Velox file are matched the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from ..errors import InputDataError, MissingMetadataError
from ..physics import KV_TO_V, MRAD_TO_RAD
from ._common import SEGMENT_NAMES, finite_positive, length_nm, number


def looks_velox(original_metadata: Mapping) -> bool:
    return "BinaryResult" in original_metadata and "Optics" in original_metadata


def _velox_segment_indices(original_metadata: Mapping) -> dict:
    """Velox detector title → (detector name, segment index) from ``Operations.StemInputOperation``."""
    operations = (original_metadata.get("Operations") or {}).get("StemInputOperation") or {}
    out = {}
    for op in operations.values():
        if not isinstance(op, Mapping):
            continue
        info = op.get("detectorInfo") or {}
        segments = info.get("segments") or []
        index = None
        if isinstance(segments, list) and len(segments) == 1 and isinstance(segments[0], Mapping):
            try:
                index = int(segments[0].get("index"))
            except (TypeError, ValueError):
                index = None
        out[str(op.get("detector"))] = (str(info.get("name")), index)
    return out


def velox_segments(records, titles, path):
    """Indices (into ``records``) of segments A, B, C, D, matched by title AND by segment index.

    A segment image must be titled ``<detector>-<letter>`` and its ``StemInputOperation``
    must record that detector with the single segment index of that letter (A=0 .. D=3).
    """
    indices = {}
    for r in records:
        indices.update(_velox_segment_indices(r.get("original_metadata") or {}))
    candidates = {}
    for i, title in enumerate(titles):
        m = re.fullmatch(r"(?P<prefix>.+)-(?P<letter>[ABCD])", title)
        if m and title in indices and indices[title] == (m["prefix"], SEGMENT_NAMES.index(m["letter"])):
            candidates.setdefault(m["prefix"], {}).setdefault(m["letter"], []).append(i)
    for prefix, group in candidates.items():
        dup = [letter for letter, found in group.items() if len(found) > 1]
        if dup:
            raise InputDataError(
                f"{path}: more than one image titled {prefix}-{dup[0]}; cannot tell which is segment {dup[0]}")
    complete = [p for p, g in candidates.items() if all(letter in g for letter in SEGMENT_NAMES)]
    if len(complete) == 1:
        prefix = complete[0]
        return [candidates[prefix][letter][0] for letter in SEGMENT_NAMES], prefix
    if len(complete) > 1:
        raise InputDataError(
            f"{path}: four segments of more than one detector ({', '.join(complete)}); give the images of one "
            "detector as separate files")
    wanted = ", ".join(f"DF4-{letter}" for letter in SEGMENT_NAMES)
    have = []
    for title in titles:
        note = ""
        if title in indices and indices[title][1] is not None:
            note = f" (segment index {indices[title][1]} of {indices[title][0]})"
        elif title in indices:
            note = f" (whole {indices[title][0]} detector, no single segment)"
        elif re.fullmatch(r".+-[ABCD]", title):
            note = " (no segment index in Operations.StemInputOperation)"
        have.append(f"{title!r}{note}")
    missing = [f"DF4-{letter}" for letter in SEGMENT_NAMES
               if not any(letter in g for g in candidates.values())]
    raise MissingMetadataError(
        f"{path}: no four-segment DPC acquisition: segment images {', '.join(missing)} are missing (need "
        f"{wanted}, each with its segment index A=0 .. D=3 in Operations.StemInputOperation); the file holds "
        f"{len(titles)} image(s): {', '.join(have) or 'none'}. A summed DF4 image cannot be split into segments")


#: Titles of the whole annular detectors whose image is the simultaneous dark-field image, in order of preference.
ADF_DETECTORS = ("HAADF", "ADF")


def velox_adf(records, titles, shape):
    """The simultaneous dark-field image of a Velox file, as (image, title), or None.

    An image titled ``HAADF`` (else ``ADF``) whose ``StemInputOperation`` records that whole
    detector (no single segment), 2-D, of the segments' scan ``shape`` (ny, nx).
    """
    indices = {}
    for r in records:
        indices.update(_velox_segment_indices(r.get("original_metadata") or {}))
    for name in ADF_DETECTORS:
        for record, title in zip(records, titles):
            data = np.asarray(record["data"])
            if title == name and indices.get(title, (None, None)) == (name, None) and data.shape == tuple(shape):
                return data.astype(np.float32), title
    return None


def velox_calibration(original_metadata: Mapping, *, detector="DF4") -> tuple[dict, dict]:
    """Calibration values from a Velox image's metadata, in dpcstem's conventions.

    Parameters
    ----------
    original_metadata : mapping
        The image's Velox metadata as rosettasciio parses it (``original_metadata``).
    detector : str
        Name of the segmented detector (``DF4``) whose collection angles are read.

    Returns
    -------
    values : dict
        :class:`~dpcstem.calibration.Calibration` field name → value, only for what the
        file records: ``kv`` from ``Optics.AccelerationVoltage`` (V → kV); ``alpha_mrad``
        from ``Optics.BeamConvergence`` (rad → mrad); ``collection_inner_mrad`` and
        ``collection_outer_mrad`` from ``Detectors[<detector>].CollectionAngleRange``
        (rad → mrad; a range 0 .. 0 means not recorded); ``detector_rotation_deg`` from
        ``CustomProperties.DetectorRotation`` and ``Scan.ScanRotation`` (rad, see Notes);
        ``step_x_nm``, ``step_y_nm`` from ``BinaryResult.PixelSize`` (width, height) in
        ``BinaryResult.PixelUnitX``/``PixelUnitY`` (m → nm).
    original : dict
        The vendor values read, keyed by their metadata path, as the file writes them.

    Notes
    -----
    dpcstem's detector rotation ψ (DESIGN.md §2) is the azimuth of the centre of segment A,
    measured from scan +x (image columns) toward scan +y (image rows, downward as the
    image is stored and displayed), with B at ψ+90°, C at ψ+180°, D at ψ+270°.

    Velox's ``DetectorRotation`` is taken as the azimuth of segment A with respect to the
    unrotated scan, in that same sense, and ``ScanRotation`` as the rotation of the scan
    frame in that same sense, so that

        ψ = DetectorRotation − ScanRotation,   flip = False (not written).

    Why: Velox's own integrated DPC uses ``DetectorRotation`` as the angle that turns the
    pair (A−C, B−D) into the image frame (``SurfaceReconstructionOperation.rotationalOffset``
    equals it in the reference file), which is the rôle ψ plays here; a scan rotated by s
    turns every fixed direction by −s in the scan frame. What cannot be read from a file is
    the sense in which Velox counts these angles; the assumption above is the one that
    makes ψ = DetectorRotation when the scan is not rotated. Where a reconstruction shows a
    curl comparable to its divergence, fit the rotation (and flip) from the data and give
    it with ``--detector-rotation``/``--flip``: the user's value wins.
    """
    om = original_metadata
    values, original = {}, {}
    optics = om.get("Optics") or {}
    kv_v = number(optics.get("AccelerationVoltage"))
    if finite_positive(kv_v):
        values["kv"] = kv_v / KV_TO_V
        original["Optics.AccelerationVoltage"] = optics["AccelerationVoltage"]
    alpha = number(optics.get("BeamConvergence"))
    if finite_positive(alpha):
        values["alpha_mrad"] = alpha / MRAD_TO_RAD
        original["Optics.BeamConvergence"] = optics["BeamConvergence"]
    for key, det in (om.get("Detectors") or {}).items():
        if isinstance(det, Mapping) and det.get("DetectorName") == detector:
            angles = det.get("CollectionAngleRange") or {}
            begin, end = number(angles.get("begin")), number(angles.get("end"))
            if begin is not None and end is not None and 0 <= begin < end and math.isfinite(end):
                values["collection_inner_mrad"] = begin / MRAD_TO_RAD
                values["collection_outer_mrad"] = end / MRAD_TO_RAD
                original[f"Detectors.{key}.CollectionAngleRange"] = dict(angles)
    rotation = number(((om.get("CustomProperties") or {}).get("DetectorRotation") or {}).get("value"))
    if rotation is not None and math.isfinite(rotation):
        original["CustomProperties.DetectorRotation"] = rotation
        scan_rotation = number((om.get("Scan") or {}).get("ScanRotation"))
        if scan_rotation is not None and math.isfinite(scan_rotation):
            original["Scan.ScanRotation"] = scan_rotation
        else:
            scan_rotation = 0.0
        psi = math.degrees(rotation - scan_rotation)
        values["detector_rotation_deg"] = (psi + 180.0) % 360.0 - 180.0
    binary = om.get("BinaryResult") or {}
    size = binary.get("PixelSize") or {}
    for name, key, unit_key in (("step_x_nm", "width", "PixelUnitX"), ("step_y_nm", "height", "PixelUnitY")):
        step = length_nm(number(size.get(key)), binary.get(unit_key))
        if step is not None:
            values[name] = step
            original[f"BinaryResult.PixelSize.{key}"] = f"{size.get(key)} {binary.get(unit_key)}"
    return values, original
