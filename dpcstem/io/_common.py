"""What every format module shares: the two acquisition types, their checks, and metadata numbers.

:class:`SegmentAcquisition` (four segment images) and :class:`PixelatedData` (4D-STEM
frames, opened lazily) are what the format readers return; :func:`stack_segments` checks
four images the same way whatever file they came from. The helpers at the end turn the
values files write (numbers spelt as text, lengths with units) into dpcstem's units.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputDataError, UnreadableFileError
from ..physics import M_TO_NM

#: Segment names in stack order.
SEGMENT_NAMES = ("A", "B", "C", "D")

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
        (uint16, float32, ...) in native byte order, indexed [segment, y, x] with x the
        fast scan direction.
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


@dataclass
class PixelatedData:
    """A 4D-STEM acquisition opened lazily.

    Attributes
    ----------
    data : dask.array.Array or numpy.memmap, shape (scan_y, scan_x, ky, kx)
        The frames in the file's dtype (native byte order for Dask arrays), counts.
        Axis 0 is the slow scan direction (rows, y), axis 1 the fast one (columns, x);
        axes 2 and 3 are the detector's rows (ky) and columns (kx).
    path : Path
        The file.
    kind : str
        The reader used: ``"mib"``, ``"blockfile"``, ``"zspy"``, ``"hdf5"``, ``"npy"`` or ``"raw"``.
    calibration : dict
        What the file records, as :class:`~dpcstem.calibration.Calibration` field names
        (``step_x_nm``, ``step_y_nm``, ``kv``); empty where it records nothing.
    mrad_per_px : float or None
        Angular size of one detector pixel in mrad, where the file records it (directly,
        or in reciprocal length together with the beam energy).
    metadata : dict
        Further facts read from the file (dataset path, axes, original headers).
    """

    data: object
    path: Path
    kind: str
    calibration: dict = field(default_factory=dict)
    mrad_per_px: float | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def scan_shape(self) -> tuple:
        """(scan_y, scan_x)."""
        return self.shape[:2]

    @property
    def frame_shape(self) -> tuple:
        """(ky, kx)."""
        return self.shape[2:]

    def __repr__(self):
        return (f"PixelatedData({self.path.name!r}, kind={self.kind!r}, shape={self.shape}, dtype={self.dtype}, "
                f"calibration={self.calibration}, mrad_per_px={self.mrad_per_px})")


# -- checks shared by every format ------------------------------------------------------------

def native_dtype(dtype, where) -> np.dtype:
    """The dtype the kernels take for stored ``dtype``: native byte order; float128 read as float64.

    Big-endian data (written on another machine, or by Merlin) is swapped to native order;
    an extended-precision float (float96/float128) holds counts that float64 keeps exactly
    up to 2**53, so it is read as float64. Anything but real numbers is refused, naming
    ``where``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "buif":
        raise InputDataError(f"{where}: must hold real numbers, got dtype {dtype}")
    if dtype.kind == "f" and dtype.itemsize > 8:
        return np.dtype(np.float64)
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def stack_segments(images, where, titles=None) -> np.ndarray:
    """Stack four 2-D images (A, B, C, D) after checking count, dimensions, shapes and dtype.

    The stack is in native byte order; an extended-precision float is read as float64
    (:func:`native_dtype`).
    """
    dtype = _segment_dtype(images, where, titles)
    return np.stack([np.asarray(im).astype(dtype, copy=False) for im in images])


def _segment_dtype(images, where, titles=None) -> np.dtype:
    """The stack's dtype, after checking the four images' count, dimensions, shapes and dtype."""
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
    return native_dtype(np.result_type(*arrays), where)


def check_stack(array, where) -> np.ndarray:
    """A (4, ny, nx) array as a checked segment stack (:func:`stack_segments`)."""
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[0] != 4:
        raise InputDataError(
            f"{where}: segments must be an array of shape (4, ny, nx) in the order A, B, C, D, got shape {array.shape}")
    return array.astype(_segment_dtype(list(array), where), copy=False)  # no copy when already native


def require_scan_memory(path, shape, bytes_per_position):
    """Refuse a scan whose declared shape needs more memory than is free, before anything is read.

    ``shape`` is (scan_y, scan_x, ky, kx) as the file declares it; a run holds about
    ``bytes_per_position`` bytes per scan position (0: no check).
    """
    from ..memory import require_memory

    sy, sx = (int(n) for n in shape[:2])
    require_memory(sy * sx * int(bytes_per_position),
                   f"{path}: a scan of {sy} x {sx} positions (declared shape {tuple(int(n) for n in shape)}, "
                   f"{int(bytes_per_position)} bytes per position)")


def require_file(path: Path, what="segments file") -> Path:
    if not path.is_file():
        kind = "is a folder, not a file" if path.is_dir() else "not found"
        raise UnreadableFileError(f"{path}: {what} {kind}")
    return path


def grey(image, path) -> np.ndarray:
    """An (ny, nx, 3 or 4) image whose colour channels are equal is a grey image."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        rgb = image[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputDataError(f"{path}: a colour image cannot be a segment signal; save it as greyscale")
        image = rgb[..., 0]
    return image


class Collect(logging.Handler):
    """A logging handler that keeps the records it is given."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


# -- numbers and units in metadata -------------------------------------------------------------

def number(value):
    """One number as a float, or None (strings that spell numbers are numbers: Velox writes them)."""
    if isinstance(value, np.ndarray) and value.ndim != 0:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def finite_positive(value) -> bool:
    value = number(value)
    return value is not None and math.isfinite(value) and value > 0


def length_nm(value, units):
    """A length in ``units`` (m, µm, nm, pm, Å, ...) in nm; None when not a positive length."""
    value = number(value)
    if value is None or not math.isfinite(value) or value <= 0 or not isinstance(units, str):
        return None
    metres = _METRES_PER_UNIT.get(units.strip())
    if metres is None:
        return None
    return value * metres * M_TO_NM


def text(value) -> str:
    """An HDF5 string (bytes, numpy bytes or a one-element array of them) as str."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def plain_attrs(attrs) -> dict:
    """HDF5 attributes as plain Python values (bytes decoded, numpy scalars as Python numbers)."""
    out = {}
    for key, value in attrs.items():
        key = key.decode(errors="replace") if isinstance(key, bytes) else key
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


#: The unit of each calibration attribute, as a file may spell it after the number ("200 kV").
_FIELD_UNITS = {"kv": ("kV",), "beam_energy_kev": ("keV", "kV"), "beam_energy": ("keV", "kV"), "alpha_mrad": ("mrad",), "collection_inner_mrad": ("mrad",),
                "collection_outer_mrad": ("mrad",), "detector_rotation_deg": ("deg", "°", "degrees"),
                "step_x_nm": ("nm",), "step_y_nm": ("nm",), "thickness_nm": ("nm",), "eps_r": ()}
_NUMBER_WITH_UNIT = re.compile(r"^\s*(?P<number>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*(?P<unit>\S*)\s*$")


def calibration_attr(name, value, where):
    """A calibration attribute (``kv``, ``alpha_mrad``, ...) as a float, or None when absent or NaN.

    A number, a number spelt as text (``"200"``) and a number followed by the field's own
    unit (``"200 kV"``, ``"1.2 mrad"``) are read; ``flip`` reads ``true``/``false`` as well.
    Any other text under a calibration name is refused with one line naming the attribute,
    rather than ignored (an ignored value would be replaced by a default or the user's,
    without a word about the file).
    """
    if value is None:
        return None
    if isinstance(value, (bytes, np.bytes_)) or (isinstance(value, np.ndarray) and value.dtype.kind in "SUO"
                                                 and value.size == 1):
        value = text(value)
    if isinstance(value, str):
        spelt = value.strip()
        if name == "flip" and spelt.lower() in ("true", "false", "yes", "no"):
            return float(spelt.lower() in ("true", "yes"))
        m = _NUMBER_WITH_UNIT.match(spelt)
        units = _FIELD_UNITS.get(name, ())
        if spelt.lower() in ("", "nan", "none", "map"):  # not given, or a per-pixel map stored elsewhere
            return None
        if m and (not m["unit"] or m["unit"].lower() in [u.lower() for u in units]):
            return float(m["number"])
        allowed = f"a number in {units[0]}" if units else "a number"
        raise InputDataError(f"{where}: attribute {name!r} is the text {value!r}, not {allowed}; "
                             f"store it as a number (e.g. {name}=200.0) or give the value on the command line")
    result = number(value)
    if result is None or math.isnan(result):
        return None
    return result


#: What h5py (and numpy or tifffile) raise on a truncated or damaged file.
HDF5_FAILURES = (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError)


def reason(exc) -> str:
    """A reader's exception as one short line for a message: its first line, else its type."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__
