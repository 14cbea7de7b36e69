"""Four-segment acquisitions: read the A, B, C, D images and what the file knows.

:func:`read_segments` takes a file, a set of four image files, or HyperSpy signals and
returns a :class:`SegmentAcquisition`: the four images stacked in the order A, B, C, D of
DESIGN.md §2, in their native dtype, and the calibration values the file records, already
translated into dpcstem's conventions (field names and units of
:class:`~dpcstem.calibration.Calibration`). What the file does not know is left out; the
caller fills it from the user (the user's value wins, with a warning).

Every input is opened read-only and never modified.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..calibration import SCALAR_FIELDS
from ..errors import DPCError, InputDataError, MissingMetadataError, UnreadableFileError
from ..memory import bytes_of, require_memory
from ..physics import KV_TO_V, M_TO_NM, MRAD_TO_RAD
from .results import HDF5_FAILURES, load_npy, reason

#: Segment names in stack order.
SEGMENT_NAMES = ("A", "B", "C", "D")

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".emd")
_TIFF_SUFFIXES = (".tif", ".tiff")
_DM_SUFFIXES = (".dm3", ".dm4")

#: Length units a file may use for its pixel size, as metres per unit.
_METRES_PER_UNIT = {"m": 1.0, "mm": 1e-3, "µm": 1e-6, "μm": 1e-6, "um": 1e-6, "nm": 1e-9,
                    "pm": 1e-12, "Å": 1e-10, "A": 1e-10, "angstrom": 1e-10}


@dataclass(frozen=True)
class SegmentAcquisition:
    """Four segment images and what their file records.

    Attributes
    ----------
    segments : ndarray, shape (4, ny, nx)
        Segment images in the order A, B, C, D (DESIGN.md §2), in the file's own dtype
        (uint16, float32, ...), indexed [segment, y, x] with x the fast scan direction.
    calibration_values : dict
        :class:`~dpcstem.calibration.Calibration` field name → value, for the fields the
        file records (``kv``, ``alpha_mrad``, ``collection_inner_mrad``,
        ``collection_outer_mrad``, ``detector_rotation_deg``, ``flip``, ``step_x_nm``,
        ``step_y_nm``, ...), in dpcstem's units and conventions.
    paths : tuple of Path
        The files read, for the SHA-256 recorded in a result; empty for in-memory signals.
    metadata : dict
        Anything else: ``source`` (what was read), ``titles`` of the four images,
        ``bias_v`` where recorded, and the original vendor values behind each
        calibration value (``original``).
    """

    segments: np.ndarray
    calibration_values: dict = field(default_factory=dict)
    paths: tuple = ()
    metadata: dict = field(default_factory=dict)


#: HDF5 datasets read as the simultaneous annular dark-field image (``metadata["adf"]``).
ADF_DATASETS = ("haadf", "adf", "HAADF", "ADF")


def read_segments(source, *, dataset=None) -> SegmentAcquisition:
    """Read a four-segment acquisition.

    Parameters
    ----------
    source : path-like, str, sequence or HyperSpy signal
        One of:

        - a ``.npy`` file holding an array of shape (4, ny, nx);
        - a TIFF file of four pages, in the order A, B, C, D;
        - an HDF5 file (``.h5``, ``.hdf5``, ...) with a dataset ``segments`` of shape
          (4, ny, nx), or the dataset named by ``dataset``; attributes of the file root and
          of the dataset named like :class:`~dpcstem.calibration.Calibration` fields
          (``kv``, ``alpha_mrad``, ``step_x_nm``, ...) are read as calibration values, and
          ``bias_v`` (V) and ``acquisition_index`` into the metadata, and a 2-D dataset
          ``haadf`` or ``adf`` (the simultaneous dark-field image) as ``metadata["adf"]``;
        - a Thermo Fisher Velox ``.emd`` file with the segment images ``DF4-A`` ..
          ``DF4-D``, each found by its title and by the segment index its
          ``Operations.StemInputOperation`` records (A=0 .. D=3), never by its position
          in the file (see :func:`velox_calibration` for what is read from the metadata);
          another ``.emd`` (open EMD) is read as HDF5;
        - a Gatan ``.dm3``/``.dm4`` file holding four images (titles ending in A, B, C, D
          set the order; otherwise the order in the file) or one stack of four;
        - four single-image files (TIFF, PNG, ``.npy``), as a sequence of four paths or
          one string ``"A.tif,B.tif,C.tif,D.tif"``, in the order A, B, C, D;
        - a HyperSpy signal holding a stack of four images (data shape (4, ny, nx)), or a
          list of signals: four in the order A, B, C, D, or any number among which four
          are titled ``<name>-A`` .. ``<name>-D`` (signals loaded from a Velox file are
          matched as the file is).
    dataset : str, optional
        HDF5 only: path of the dataset holding the (4, ny, nx) stack.

    Returns
    -------
    SegmentAcquisition

    Raises
    ------
    UnreadableFileError
        A file is missing, truncated, or not the kind of file its suffix says.
    InputDataError
        Not four segments, segments of different shapes, not 2-D, empty, or not numbers.
    MissingMetadataError
        The file lacks the segment images (a Velox file without the four DF4 segments,
        an HDF5 file without the dataset).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "segments.npy")
    >>> np.save(path, np.ones((4, 3, 5), np.uint16))
    >>> acq = read_segments(path)
    >>> acq.segments.shape, acq.segments.dtype
    ((4, 3, 5), dtype('uint16'))
    """
    if _is_signal(source):
        return _from_signals([source])
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, str) and "," in text and not Path(text).exists():
            return _from_image_files([p.strip() for p in text.split(",")], dataset)
        return _from_file(Path(text), dataset)
    if isinstance(source, Sequence):
        items = list(source)
        if items and all(_is_signal(s) for s in items):
            return _from_signals(items)
        if all(isinstance(s, (str, os.PathLike)) for s in items):
            return _from_image_files(items, dataset)
    raise InputDataError(
        f"segments source must be a file path, four image paths or HyperSpy signals, got {type(source).__name__}")


# -- validation shared by every format ----------------------------------------------------

def _stack(images, where, titles=None) -> np.ndarray:
    """Stack four 2-D images (A, B, C, D) after checking count, dimensions, shapes and dtype."""
    titles = list(titles) if titles is not None else list(SEGMENT_NAMES[: len(images)])
    if len(images) != 4:
        raise InputDataError(f"{where}: a four-segment acquisition needs 4 images (A, B, C, D), got {len(images)}")
    arrays = [np.asarray(im) for im in images]
    for name, arr in zip(titles, arrays):
        if arr.ndim != 2:
            raise InputDataError(f"{where}: segment {name} must be a 2-D image (ny, nx), got shape {arr.shape}")
        if arr.size == 0:
            raise InputDataError(f"{where}: segment {name} is empty (shape {arr.shape})")
        if arr.dtype.kind not in "uif":
            raise InputDataError(f"{where}: segment {name} must hold real numbers, got dtype {arr.dtype}")
    shapes = {arr.shape for arr in arrays}
    if len(shapes) > 1:
        listed = ", ".join(f"{n} {a.shape}" for n, a in zip(titles, arrays))
        raise InputDataError(f"{where}: the four segments must have one shape (ny, nx), got {listed}")
    dtype = np.result_type(*arrays)
    return np.stack([arr.astype(dtype, copy=False) for arr in arrays])


def _check_stack(array, where) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[0] != 4:
        raise InputDataError(
            f"{where}: segments must be an array of shape (4, ny, nx) in the order A, B, C, D, got shape {array.shape}")
    return _stack(list(array), where)


def _require_file(path: Path) -> Path:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise UnreadableFileError(f"{path}: segments file {what}")
    return path


# -- single files -------------------------------------------------------------------------

def _from_file(path: Path, dataset) -> SegmentAcquisition:
    _require_file(path)
    suffix = path.suffix.lower()
    if dataset is not None and suffix not in _HDF5_SUFFIXES:
        raise InputDataError(f"{path}: dataset={dataset!r} applies to HDF5 files only, got a {suffix!r} file")
    if suffix == ".npy":
        return SegmentAcquisition(_check_stack(_read_npy(path), path), {}, (path,),
                                  {"source": "npy", "titles": list(SEGMENT_NAMES)})
    if suffix in _TIFF_SUFFIXES:
        return _from_tiff_stack(path)
    if suffix in _DM_SUFFIXES:
        return _from_dm(path)
    if suffix in _HDF5_SUFFIXES:
        if suffix == ".emd" and dataset is None and _is_velox(path):
            return _from_velox(path)
        return _from_hdf5(path, dataset)
    raise UnreadableFileError(
        f"{path}: unknown segments file type {suffix!r}; give .npy, .tif, .h5/.hdf5, a Velox .emd, .dm3/.dm4, "
        "or four image files A,B,C,D")


def _read_npy(path: Path) -> np.ndarray:
    try:
        mapped = load_npy(path, mmap_mode="r")
        require_memory(mapped.nbytes, f"{path}")
        return np.array(mapped)
    except DPCError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UnreadableFileError(f"{path}: not a readable .npy array file ({reason(exc)})") from None


def _from_tiff_stack(path: Path) -> SegmentAcquisition:
    pages = _read_tiff_pages(path)
    if len(pages) == 1 and pages[0].ndim == 3 and pages[0].shape[0] == 4:
        pages = list(pages[0])
    if len(pages) != 4:
        raise InputDataError(
            f"{path}: a segments TIFF holds 4 pages in the order A, B, C, D, got {len(pages)} page(s); "
            "give four single-image files as A.tif,B.tif,C.tif,D.tif instead")
    return SegmentAcquisition(_stack(pages, path), {}, (path,), {"source": "tiff", "titles": list(SEGMENT_NAMES)})


def _read_tiff_pages(path: Path) -> list:
    """Every page of a TIFF file; a file tifffile reports as damaged is refused, not half read.

    tifffile logs what it skips in a damaged file (a page offset past the end, a tag value
    outside the file) and goes on with fewer pages or tags; those reports are collected here
    (not printed) and any warning or error among them makes the file unreadable.
    """
    import tifffile

    reports = _Collect()
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


class _Collect(logging.Handler):
    """A logging handler that keeps the records it is given."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _from_hdf5(path: Path, dataset) -> SegmentAcquisition:
    name = dataset or "segments"
    try:
        with h5py.File(path, "r") as f:
            node = f[name] if name in f else None  # f.get() would hide a damaged object as absent
            if not isinstance(node, h5py.Dataset):
                found = []
                f.visititems(lambda n, o: found.append(f"{n} {o.shape}") if isinstance(o, h5py.Dataset) else None)
                what = "is a group, not a dataset" if node is not None else "not found"
                raise MissingMetadataError(
                    f"{path}: dataset {name!r} (the (4, ny, nx) segment stack) {what}; the file holds "
                    f"{', '.join(found[:12]) or 'no dataset'}; give dataset=PATH (--dataset PATH)")
            require_memory(bytes_of(node.shape, node.dtype), f"{path}: dataset {name!r}")
            array = node[()]
            attrs = {**_plain_attrs(f.attrs), **_plain_attrs(node.attrs)}
            adf = next((k for k in ADF_DATASETS if isinstance(f.get(k), h5py.Dataset) and f[k].ndim == 2), None)
            adf_image = f[adf][()] if adf else None
    except DPCError:
        raise
    except HDF5_FAILURES as exc:  # h5py raises several kinds on a truncated or damaged file
        raise UnreadableFileError(f"{path}: not a readable HDF5 file ({reason(exc)})") from None
    segments = _check_stack(array, f"{path}:{name}")
    values, metadata = {}, {"source": "hdf5", "dataset": name, "titles": list(SEGMENT_NAMES)}
    for key in SCALAR_FIELDS:
        value = _number(attrs.get(key))
        if value is None or math.isnan(value):
            continue  # absent, not one number, or NaN (how result files write "not given")
        values[key] = bool(value) if key == "flip" else value
    if "bias_v" in attrs:
        bias = _number(attrs["bias_v"])
        if bias is None:
            raise InputDataError(f"{path}: attribute 'bias_v' must be one number (the applied bias in V), "
                                 f"got {attrs['bias_v']!r}")
        metadata["bias_v"] = bias
    if _number(attrs.get("acquisition_index")) is not None:
        metadata["acquisition_index"] = int(_number(attrs["acquisition_index"]))
    if adf is not None:
        metadata["adf"], metadata["adf_dataset"] = adf_image, adf
    if "title" in attrs:
        metadata["title"] = str(attrs["title"])
    metadata["original"] = {k: v for k, v in attrs.items()
                            if k not in values and k not in ("bias_v", "title", "acquisition_index")}
    return SegmentAcquisition(segments, values, (path,), metadata)


def _plain_attrs(attrs) -> dict:
    out = {}
    for key, value in attrs.items():
        key = key.decode(errors="replace") if isinstance(key, bytes) else key
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


# -- four single-image files --------------------------------------------------------------

def _from_image_files(paths, dataset) -> SegmentAcquisition:
    paths = [Path(p) for p in paths]
    if len(paths) != 4:
        raise InputDataError(
            f"four single-image files A,B,C,D are needed (comma-separated, in that order), got {len(paths)}: "
            f"{', '.join(map(str, paths))}")
    if dataset is not None:
        raise InputDataError(f"dataset={dataset!r} applies to an HDF5 file, not to four image files")
    images = [_read_single_image(_require_file(p)) for p in paths]
    where = ",".join(map(str, paths))
    return SegmentAcquisition(_stack(images, where), {}, tuple(paths),
                              {"source": "images", "titles": [p.name for p in paths]})


def _read_single_image(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path)
    if suffix in _TIFF_SUFFIXES:
        pages = _read_tiff_pages(path)
        if len(pages) != 1:
            raise InputDataError(f"{path}: a single segment image must have one page, got {len(pages)}")
        return _grey(pages[0], path)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            image = np.asarray(im)
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise UnreadableFileError(f"{path}: not a readable image file ({exc})") from None
    return _grey(image, path)


def _grey(image, path) -> np.ndarray:
    """An (ny, nx, 3 or 4) image whose colour channels are equal is a grey image."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        rgb = image[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputDataError(f"{path}: a colour image cannot be a segment signal; save it as greyscale")
        image = rgb[..., 0]
    return image


# -- HyperSpy signals and Gatan DigitalMicrograph -----------------------------------------

def _is_signal(obj) -> bool:
    return hasattr(obj, "axes_manager") and hasattr(obj, "data") and hasattr(obj, "metadata")


def _from_signals(signals) -> SegmentAcquisition:
    """HyperSpy signals → dict records shared with the DigitalMicrograph path."""
    records = []
    for s in signals:
        in_array_order = sorted((*s.axes_manager.navigation_axes, *s.axes_manager.signal_axes),
                                key=lambda ax: ax.index_in_array)
        axes = [{"name": ax.name, "scale": getattr(ax, "scale", None), "units": ax.units, "navigate": ax.navigate}
                for ax in in_array_order]
        records.append({"data": s.data, "axes": axes, "metadata": s.metadata.as_dictionary(),
                        "original_metadata": s.original_metadata.as_dictionary()})
    return _from_records(records, "HyperSpy signal" + ("s" if len(signals) > 1 else ""), (), "hyperspy")


def _from_dm(path: Path) -> SegmentAcquisition:
    from rsciio.digitalmicrograph import file_reader

    try:
        records = file_reader(str(path))
    except Exception as exc:  # the DM parser raises many kinds on a bad file  # noqa: BLE001
        raise UnreadableFileError(
            f"{path}: not a readable Gatan DigitalMicrograph file ({type(exc).__name__}: {reason(exc)})") from None
    for record in records:
        record["metadata"] = _mapped_metadata(record)
    return _from_records(records, path, (path,), "digitalmicrograph")


def _mapped_metadata(record) -> dict:
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


def _from_records(records, where, paths, source) -> SegmentAcquisition:
    """Four images (or a stack of four) from rosettasciio-style dicts: data, axes, metadata.

    Images from a Velox file are matched by title and segment index (:func:`_velox_segments`);
    others by a title ending in A, B, C, D, or else taken in the order given when there are
    exactly four; a single 3-D image of four planes is a stack A, B, C, D.
    """
    titles = [_title(r) for r in records]
    velox = any(_looks_velox(r.get("original_metadata") or {}) for r in records)
    if velox:
        matched, _ = _velox_segments(records, titles, where)
        order = "title and segment index"
    else:
        matched, order = _match_titles(titles), "title"
    if not velox and len(records) == 1 and np.ndim(records[0]["data"]) == 3:
        record = records[0]
        segments = _check_stack(np.asarray(record["data"]), where)
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
        segments = _stack([np.asarray(r["data"]) for r in chosen], where, chosen_titles)
        image_axes = [ax for ax in chosen[0]["axes"] if not ax.get("navigate", False)]
    record = chosen[0]
    if _looks_velox(record.get("original_metadata") or {}):
        values, original = velox_calibration(record["original_metadata"], detector=_detector_prefix(chosen_titles))
    else:
        values, original = _hyperspy_calibration(record.get("metadata") or {}, image_axes)
    metadata = {"source": source, "titles": chosen_titles, "order": order, "original": original}
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
    if _finite_positive(tem.get("beam_energy")):
        values["kv"] = float(tem["beam_energy"])  # keV of the electron = kV of the gun
        original["Acquisition_instrument.TEM.beam_energy"] = tem["beam_energy"]
    if _finite_positive(tem.get("convergence_angle")):
        values["alpha_mrad"] = float(tem["convergence_angle"])
        original["Acquisition_instrument.TEM.convergence_angle"] = tem["convergence_angle"]
    if len(image_axes) == 2:
        # Axes come in array order: y (rows), then x (columns).
        for name, ax in zip(("step_y_nm", "step_x_nm"), image_axes):
            step = _length_nm(ax.get("scale"), ax.get("units"))
            if step is not None:
                values[name] = step
                original[f"axis {ax.get('name')}"] = f"{ax.get('scale')} {ax.get('units')}"
    return values, original


# -- Thermo Fisher Velox ------------------------------------------------------------------

def _is_velox(path: Path) -> bool:
    """Whether an ``.emd`` file is a Velox file (its ``Version`` record says so).

    A ``Version`` record that is present but not readable JSON is a damaged file, not an
    open EMD file: it is refused rather than searched for a segment stack.
    """
    try:
        with h5py.File(path, "r") as f:
            version = f["Version"] if "Version" in f else None
            if not isinstance(version, h5py.Dataset):
                return False
            text = version[()]
    except HDF5_FAILURES as exc:
        raise UnreadableFileError(f"{path}: not a readable HDF5/EMD file ({reason(exc)})") from None
    text = text.ravel()[0] if isinstance(text, np.ndarray) and text.size else text
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    try:
        record = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise UnreadableFileError(f"{path}: the EMD 'Version' record is not readable ({reason(exc)}); "
                                  "the file is damaged") from None
    return isinstance(record, Mapping) and record.get("format") == "Velox"


def _looks_velox(original_metadata: Mapping) -> bool:
    return "BinaryResult" in original_metadata and "Optics" in original_metadata


def _from_velox(path: Path) -> SegmentAcquisition:
    from rsciio.emd import file_reader

    try:
        records = file_reader(str(path), select_type="images")
    except Exception as exc:  # the Velox reader raises many kinds on a bad file  # noqa: BLE001
        raise UnreadableFileError(f"{path}: not a readable Velox EMD file ({type(exc).__name__}: {reason(exc)})") \
            from None
    return _from_records(records, path, (path,), "velox")


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


def _velox_segments(records, titles, path):
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
    kv_v = _number(optics.get("AccelerationVoltage"))
    if _finite_positive(kv_v):
        values["kv"] = kv_v / KV_TO_V
        original["Optics.AccelerationVoltage"] = optics["AccelerationVoltage"]
    alpha = _number(optics.get("BeamConvergence"))
    if _finite_positive(alpha):
        values["alpha_mrad"] = alpha / MRAD_TO_RAD
        original["Optics.BeamConvergence"] = optics["BeamConvergence"]
    for key, det in (om.get("Detectors") or {}).items():
        if isinstance(det, Mapping) and det.get("DetectorName") == detector:
            angles = det.get("CollectionAngleRange") or {}
            begin, end = _number(angles.get("begin")), _number(angles.get("end"))
            if begin is not None and end is not None and 0 <= begin < end and math.isfinite(end):
                values["collection_inner_mrad"] = begin / MRAD_TO_RAD
                values["collection_outer_mrad"] = end / MRAD_TO_RAD
                original[f"Detectors.{key}.CollectionAngleRange"] = dict(angles)
    rotation = _number(((om.get("CustomProperties") or {}).get("DetectorRotation") or {}).get("value"))
    if rotation is not None and math.isfinite(rotation):
        original["CustomProperties.DetectorRotation"] = rotation
        scan_rotation = _number((om.get("Scan") or {}).get("ScanRotation"))
        if scan_rotation is not None and math.isfinite(scan_rotation):
            original["Scan.ScanRotation"] = scan_rotation
        else:
            scan_rotation = 0.0
        psi = math.degrees(rotation - scan_rotation)
        values["detector_rotation_deg"] = (psi + 180.0) % 360.0 - 180.0
    binary = om.get("BinaryResult") or {}
    size = binary.get("PixelSize") or {}
    for name, key, unit_key in (("step_x_nm", "width", "PixelUnitX"), ("step_y_nm", "height", "PixelUnitY")):
        step = _length_nm(_number(size.get(key)), binary.get(unit_key))
        if step is not None:
            values[name] = step
            original[f"BinaryResult.PixelSize.{key}"] = f"{size.get(key)} {binary.get(unit_key)}"
    return values, original


# -- small helpers ------------------------------------------------------------------------

def _number(value):
    """One number as a float, or None (strings that spell numbers are numbers: Velox writes them)."""
    if isinstance(value, np.ndarray) and value.ndim != 0:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _finite_positive(value) -> bool:
    value = _number(value)
    return value is not None and math.isfinite(value) and value > 0


def _length_nm(value, units):
    """A length in ``units`` (m, µm, nm, pm, Å, ...) in nm; None when not a positive length."""
    value = _number(value)
    if value is None or not math.isfinite(value) or value <= 0 or not isinstance(units, str):
        return None
    metres = _METRES_PER_UNIT.get(units.strip())
    if metres is None:
        return None
    return value * metres * M_TO_NM
