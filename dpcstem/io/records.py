"""Segment images from rosettasciio-style records (data, axes, metadata), whatever read them.

The DigitalMicrograph and Velox readers of rosettasciio, and HyperSpy signals, all give a
list of images with their axes and metadata; :func:`from_records` finds the four segments
among them (by title and segment index for Velox, by a title ending in A, B, C, D, or by
order) and the calibration they record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from ..errors import InputDataError
from ._common import SEGMENT_NAMES, SegmentAcquisition, check_stack, finite_positive, length_nm, stack_segments
from .velox import looks_velox, velox_adf, velox_calibration, velox_segments


def mapped_metadata(record) -> dict:
    """HyperSpy metadata of a rosettasciio record with the reader's mapping applied.

    rosettasciio leaves the translation of vendor tags (e.g. DigitalMicrograph's
    ``Microscope Info.Voltage`` in V → ``Acquisition_instrument.TEM.beam_energy`` in keV) to
    HyperSpy; this does the same for the records read here.
    """
    metadata = {k: dict(v) if isinstance(v, Mapping) else v for k, v in (record.get("metadata") or {}).items()}
    original = record.get("original_metadata") or {}
    for source, (target, convert) in (record.get("mapping") or {}).items():
        node = original
        for part in source.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
            if node is None:
                break
        if node is None:
            continue
        try:
            value = convert(node) if convert is not None else node
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
        branch = metadata
        *parents, leaf = target.split(".")
        for part in parents:
            branch = branch.setdefault(part, {})
        branch[leaf] = value
    return metadata


def from_records(records, where, paths, source) -> SegmentAcquisition:
    """Four images (or a stack of four) from rosettasciio-style dicts: data, axes, metadata.

    Images from a Velox file are matched by title and segment index (:func:`dpcstem.io.velox.velox_segments`);
    others by a title ending in A, B, C, D, or else taken in the order given when there are
    exactly four; a single 3-D image of four planes is a stack A, B, C, D.
    """
    titles = [_title(r) for r in records]
    velox = any(looks_velox(r.get("original_metadata") or {}) for r in records)
    if velox:
        matched, _ = velox_segments(records, titles, where)
        order = "title and segment index"
    else:
        matched, order = _match_titles(titles), "title"
    if not velox and len(records) == 1 and np.ndim(records[0]["data"]) == 3:
        record = records[0]
        segments = check_stack(np.asarray(record["data"]), where)
        image_axes = [ax for ax in record["axes"] if not ax.get("navigate", False)] or record["axes"][1:]
        chosen, order = [record] * 4, "stack"
        chosen_titles = [f"{titles[0]}[{i}]" for i in range(4)]
    else:
        if matched is not None:
            chosen = [records[i] for i in matched]
        elif len(records) == 4:
            chosen, order = list(records), "file"
        else:
            raise InputDataError(
                f"{where}: a four-segment acquisition needs 4 images (A, B, C, D) or 4 titled <name>-A .. "
                f"<name>-D, got {len(records)}: {', '.join(repr(t) for t in titles)}")
        chosen_titles = [_title(r) for r in chosen]
        segments = stack_segments([np.asarray(r["data"]) for r in chosen], where, chosen_titles)
        image_axes = [ax for ax in chosen[0]["axes"] if not ax.get("navigate", False)]
    record = chosen[0]
    if looks_velox(record.get("original_metadata") or {}):
        values, original = velox_calibration(record["original_metadata"], detector=_detector_prefix(chosen_titles))
    else:
        values, original = _hyperspy_calibration(record.get("metadata") or {}, image_axes)
    metadata = {"source": source, "titles": chosen_titles, "order": order, "original": original}
    if velox and (adf := velox_adf(records, titles, segments.shape[1:])) is not None:
        metadata["adf"], metadata["adf_dataset"] = adf
    return SegmentAcquisition(segments, values, tuple(paths), metadata)


def _title(record) -> str:
    return str(((record.get("metadata") or {}).get("General") or {}).get("title", ""))


_SEGMENT_TITLE = re.compile(r"^(?P<prefix>.*?)[\s_\-]?(?P<letter>[ABCD])$")


def _match_titles(titles):
    """Indices of the A, B, C, D images found by title (``DF4-A``, ``seg_B``, ``C``), or None."""
    found = {}
    for i, title in enumerate(titles):
        m = _SEGMENT_TITLE.match(title.strip())
        if m:
            found.setdefault(m["prefix"], {}).setdefault(m["letter"], []).append(i)
    complete = [g for g in found.values() if all(len(g.get(letter, ())) == 1 for letter in SEGMENT_NAMES)]
    if len(complete) != 1:
        return None
    return [complete[0][letter][0] for letter in SEGMENT_NAMES]


def _detector_prefix(titles):
    m = _SEGMENT_TITLE.match(titles[0].strip())
    return m["prefix"] if m else None


def _hyperspy_calibration(metadata: Mapping, image_axes) -> tuple[dict, dict]:
    """Calibration values from HyperSpy metadata (keV, mrad) and the image axes (x, then y)."""
    values, original = {}, {}
    tem = (metadata.get("Acquisition_instrument") or {}).get("TEM") or {}
    if finite_positive(tem.get("beam_energy")):
        values["kv"] = float(tem["beam_energy"])  # keV of the electron = kV of the gun
        original["Acquisition_instrument.TEM.beam_energy"] = tem["beam_energy"]
    if finite_positive(tem.get("convergence_angle")):
        values["alpha_mrad"] = float(tem["convergence_angle"])
        original["Acquisition_instrument.TEM.convergence_angle"] = tem["convergence_angle"]
    if len(image_axes) == 2:
        # Axes come in array order: y (rows), then x (columns).
        for name, ax in zip(("step_y_nm", "step_x_nm"), image_axes):
            step = length_nm(ax.get("scale"), ax.get("units"))
            if step is not None:
                values[name] = step
                original[f"axis {ax.get('name')}"] = f"{ax.get('scale')} {ax.get('units')}"
    return values, original
