"""TIFF files: a segment stack of four pages (or one page of four planes), or one segment image.

A damaged file is refused, never half read: tifffile's own reports of what it skipped are
collected, and every page directory, tag value and image strip must lie inside the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import InputDataError, UnreadableFileError
from ..memory import bytes_of, require_memory
from ._common import SEGMENT_NAMES, Collect, SegmentAcquisition, grey, stack_segments
from ._common import reason


def read_segments(path: Path, dataset=None) -> SegmentAcquisition:
    """Four pages A, B, C, D, or one page holding a (4, ny, nx) stack of planes."""
    pages = read_pages(path)
    if len(pages) == 1 and pages[0].ndim == 3 and pages[0].shape[0] == 4:
        pages = list(pages[0])
    if len(pages) != 4:
        raise InputDataError(
            f"{path}: a segments TIFF holds 4 pages in the order A, B, C, D, got {len(pages)} page(s); "
            "give four single-image files as A.tif,B.tif,C.tif,D.tif instead")
    return SegmentAcquisition(stack_segments(pages, path), {}, (path,),
                              {"source": "tiff", "titles": list(SEGMENT_NAMES)})


def read_image(path: Path) -> np.ndarray:
    """One segment image: a TIFF of one page (grey, or colour with equal channels)."""
    pages = read_pages(path)
    if len(pages) != 1:
        raise InputDataError(f"{path}: a single segment image must have one page, got {len(pages)}")
    return grey(pages[0], path)


def read_pages(path: Path) -> list:
    """Every page of a TIFF file; a file tifffile reports as damaged is refused, not half read.

    tifffile logs what it skips in a damaged file (a page offset past the end, a tag value
    outside the file) and goes on with fewer pages or tags; those reports are collected here
    (not printed) and any warning or error among them makes the file unreadable.
    """
    import tifffile

    reports = Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(reports)
    propagate, logger.propagate = logger.propagate, False
    try:
        with tifffile.TiffFile(path) as tif:
            pages = list(tif.pages)
            _check_tiff_extent(path, tif, pages)
            require_memory(sum(bytes_of(p.shape, p.dtype) for p in pages), f"{path}")
            images = [page.asarray() for page in pages]
    except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError) as exc:  # TiffFileError: ValueError
        raise UnreadableFileError(f"{path}: not a readable TIFF file ({reason(exc)})") from None
    finally:
        logger.removeHandler(reports)
        logger.propagate = propagate
    damage = [r.getMessage() for r in reports.records if r.levelno >= logging.WARNING]
    if damage:
        raise UnreadableFileError(f"{path}: damaged TIFF file ({reason(damage[0])})")
    return images


def _check_tiff_extent(path, tif, pages):
    """Refuse a TIFF file that ends before a page directory, a tag value or image data it points to."""
    size = tif.filehandle.size
    layout = tif.tiff
    for index, page in enumerate(pages):
        tags = list(getattr(page, "tags", None) or ())
        ends = [page.offset + layout.tagnosize + len(tags) * layout.tagsize + layout.offsetsize]
        ends += [int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts)]
        ends += [tag.valueoffset + tag.valuebytecount for tag in tags]
        if max(ends) > size:
            raise UnreadableFileError(f"{path}: truncated TIFF file: page {index + 1} needs {max(ends)} bytes, the "
                                      f"file has {size}")
