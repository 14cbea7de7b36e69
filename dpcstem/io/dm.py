"""Gatan DigitalMicrograph ``.dm3``/``.dm4`` files: four segment images, or one stack of four.

Read with rosettasciio's reader; titles ending in A, B, C, D set the order, otherwise the
order in the file (:func:`dpcstem.io.records.from_records`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UnreadableFileError
from ._common import SegmentAcquisition
from .records import from_records, mapped_metadata
from ._common import reason


def read_segments(path: Path, dataset=None) -> SegmentAcquisition:
    from rsciio.digitalmicrograph import file_reader

    try:
        records = file_reader(str(path))
    except Exception as exc:  # the DM parser raises many kinds on a bad file  # noqa: BLE001
        raise UnreadableFileError(
            f"{path}: not a readable Gatan DigitalMicrograph file ({type(exc).__name__}: {reason(exc)})") from None
    for record in records:
        record["metadata"] = mapped_metadata(record)
    return from_records(records, path, (path,), "digitalmicrograph")
