"""Pixelated 4D-STEM: centre of mass and virtual segments, then deflection, field and charge.

Every frame is reduced in one pass (:mod:`dpcstem.kernels.com`) to its masked intensity,
first moments and virtual-segment sums; all later steps work on those few maps. The
frames may come as

* an in-memory NumPy array or a ``numpy.memmap`` (reduced block by block; the pages of
  a memory-mapped file are released after each block);
* an ``h5py.Dataset`` (read block by block, so peak memory is one block);
* a Dask array or a (lazy) HyperSpy signal, or a :class:`~dpcstem.io.pixelated.PixelatedData`
  from :func:`~dpcstem.io.pixelated.open_pixelated`, computed on the local threaded
  scheduler or on a ``dask.distributed`` cluster (``workers=N`` starts a ``LocalCluster``
  for the call; ``scheduler="tcp://host:port"`` uses a running one);

and every path gives the same numbers. Frames are (scan_y, scan_x, ky, kx): scan rows,
scan columns, detector rows, detector columns. Detector coordinates are in pixels, kx
the column index and ky the row index of the whole frame.

From centre of mass to deflection (:func:`deflection_from_com`): the angular pixel size
(:func:`mrad_per_px`), the descan of the pattern centre (a plane fitted over the scan or
a region of it, or a reference), and the detector's orientation against the scan from the
:class:`~dpcstem.calibration.Calibration`: the detector's +kx axis points along scan
azimuth ψ = ``detector_rotation_deg`` (from scan +x toward scan +y) and its +ky axis
along ψ+90°, or ψ−90° with ``flip`` (DESIGN.md §2). :func:`reconstruct_com` runs the whole
chain and hands the deflection to :func:`dpcstem.reconstruct.reconstruct_deflection`.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .calibration import Calibration
from .errors import CalibrationError, InputDataError
from .kernels.com import FRAME_DTYPES, bounding_box, reduce_frames, reduce_frames_serial

#: Target size of one block of frames read at a time (bytes), for arrays and HDF5 datasets.
BLOCK_BYTES = 64 * 2**20
#: Work of more frames than this shows a progress bar by default (when stderr is a terminal).
PROGRESS_FRAMES = 4096


@dataclass
class FrameSums:
    """Per-scan-position reductions of a 4D-STEM acquisition, all of shape (scan_y, scan_x).

    Attributes
    ----------
    intensity : ndarray of float64
        Σ I over the mask, in counts.
    com_x, com_y : ndarray of float64
        Centre of mass over the mask in detector pixels (kx column, ky row index of the
        whole frame), detector frame. NaN where the intensity is zero or not finite.
    segments : ndarray of float64, shape (m, scan_y, scan_x), or None
        Sums of the virtual segments 1..m in counts (for four quadrants: A, B, C, D).
    """

    intensity: np.ndarray
    com_x: np.ndarray
    com_y: np.ndarray
    segments: np.ndarray | None = None

    @classmethod
    def from_moments(cls, moments, segments=None):
        """From per-position [Σ I, Σ kx·I, Σ ky·I] of shape (scan_y, scan_x, 3)."""
        total = moments[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = np.isfinite(total) & (total != 0)
            com_x = np.where(ok, moments[..., 1] / np.where(ok, total, 1.0), np.nan)
            com_y = np.where(ok, moments[..., 2] / np.where(ok, total, 1.0), np.nan)
        seg = None if segments is None or segments.shape[-1] == 0 else np.moveaxis(segments, -1, 0).copy()
        return cls(intensity=total.copy(), com_x=com_x, com_y=com_y, segments=seg)


# -- masks ----------------------------------------------------------------------------------

def disc_mask(frame_shape, centre_yx, radius_px, inner_radius_px=0.0) -> np.ndarray:
    """Boolean disc (or annulus) on the detector, shape ``frame_shape`` (ky, kx).

    Parameters
    ----------
    frame_shape : (int, int)
        Detector rows and columns.
    centre_yx : (float, float)
        Centre (row, column) in pixels.
    radius_px, inner_radius_px : float
        Outer and inner radius in pixels; pixels whose centre lies at a distance
        r with inner <= r <= outer are True.
    """
    ky, kx = (int(n) for n in frame_shape)
    if not radius_px > inner_radius_px >= 0:
        raise InputDataError(f"mask radii must satisfy outer > inner >= 0 (pixels), got outer {radius_px}, "
                             f"inner {inner_radius_px}")
    y, x = np.ogrid[:ky, :kx]
    r2 = (y - centre_yx[0]) ** 2 + (x - centre_yx[1]) ** 2
    mask = (r2 <= radius_px**2) & (r2 >= inner_radius_px**2)
    if not mask.any():
        raise InputDataError(f"the mask of radius {radius_px} px around {tuple(centre_yx)} holds no pixel of the "
                             f"{ky}x{kx} detector")
    return mask


def quadrant_labels(frame_shape, centre_yx, radius_px, inner_radius_px=0.0) -> np.ndarray:
    """Virtual four-segment detector: labels 1..4 = A, B, C, D, 0 outside, shape (ky, kx) uint8.

    Segment A is centred on the detector's +kx axis, B on +ky, C on −kx and D on −ky (each
    spans 90°; the pixel at the centre belongs to none). With the calibration's ``detector_rotation_deg`` and ``flip`` describing the
    detector's axes against the scan, these are the segments of DESIGN.md §2 and their sums
    can go to :func:`dpcstem.reconstruct.reconstruct`.
    """
    mask = disc_mask(frame_shape, centre_yx, radius_px, inner_radius_px)
    y, x = np.indices(mask.shape)
    dy = y - centre_yx[0]
    dx = x - centre_yx[1]
    # pixels on a diagonal go to the segment after them counter-clockwise (A keeps −45°, B +45°,
    # C 135°, D −135°), which keeps the four segments images of each other under 90° rotations
    labels = np.zeros(mask.shape, np.uint8)
    labels[(dx > 0) & (-dx <= dy) & (dy < dx)] = 1
    labels[(dy > 0) & (-dy < dx) & (dx <= dy)] = 2
    labels[(dx < 0) & (dx < dy) & (dy <= -dx)] = 3
    labels[(dy < 0) & (dy <= dx) & (dx < -dy)] = 4
    labels[~mask] = 0
    return labels


# -- the reduction engine -------------------------------------------------------------------

def frame_sums(data, *, mask=None, labels=None, scheduler=None, workers=None, block_bytes=BLOCK_BYTES,
               progress=None) -> FrameSums:
    """Reduce every frame to its masked intensity, centre of mass and virtual-segment sums.

    Parameters
    ----------
    data : array-like, shape (scan_y, scan_x, ky, kx)
        ndarray or ``numpy.memmap``, ``h5py.Dataset``, Dask array, HyperSpy signal, or
        :class:`~dpcstem.io.pixelated.PixelatedData`. Counts, any real dtype.
    mask : ndarray of bool, shape (ky, kx), optional
        Pixels entering the intensity and centre of mass (a disc or annulus from
        :func:`disc_mask`); default: the whole frame.
    labels : ndarray of int, shape (ky, kx), optional
        Virtual segments: 0 ignored, 1..m (m <= 255), e.g. from :func:`quadrant_labels`.
    scheduler : str or distributed.Client, optional
        Compute on a ``dask.distributed`` cluster: the address of a running scheduler
        (``"tcp://host:port"``) or a connected client.
    workers : int, optional
        Start a ``LocalCluster`` of this many single-threaded worker processes for this
        call (closed afterwards). Without ``scheduler`` and ``workers``, Dask arrays are
        computed on the local threaded scheduler and in-memory arrays with Numba threads.
    block_bytes : int
        Bytes of frames reduced at a time by the in-memory and HDF5 paths.
    progress : bool, optional
        Show a progress bar (tqdm, on stderr); default: for more than
        :data:`PROGRESS_FRAMES` frames when stderr is a terminal.

    Returns
    -------
    FrameSums
    """
    array, kind = _as_frames(data)
    sy, sx, ky, kx = (int(n) for n in array.shape)
    mask, labels, n_seg, boxes = _prepare_masks(mask, labels, (ky, kx))
    if progress is None:
        progress = sy * sx > PROGRESS_FRAMES and sys.stderr.isatty()
    if scheduler is not None and workers is not None:
        raise InputDataError("give scheduler (a running cluster) or workers (a local cluster), not both")
    if scheduler is not None or workers is not None or kind == "dask":
        array = _as_dask(array, kind, block_bytes)
        moments, segments = _reduce_dask(array, mask, labels, boxes, n_seg, scheduler, workers, progress)
    else:
        moments, segments = _reduce_local(array, kind, mask, labels, boxes, n_seg, block_bytes, progress)
    return FrameSums.from_moments(moments, segments)


def centre_of_mass(data, *, mask=None, **engine) -> FrameSums:
    """Centre of mass of every frame, in detector pixels (see :func:`frame_sums` for the options).

    Returns
    -------
    FrameSums
        ``com_x``, ``com_y`` (px, detector frame) and ``intensity`` (counts) of shape
        (scan_y, scan_x); ``segments`` is None.
    """
    return frame_sums(data, mask=mask, **engine)


def virtual_segments(data, labels, **engine) -> np.ndarray:
    """Sums of virtual segments over every frame (see :func:`frame_sums` for the options).

    Parameters
    ----------
    labels : ndarray of int, shape (ky, kx)
        0 ignored, 1..m segment number (e.g. :func:`quadrant_labels`: A, B, C, D).

    Returns
    -------
    ndarray of float64, shape (m, scan_y, scan_x)
        Counts in each segment.
    """
    labels = np.asarray(labels)
    if labels.size == 0 or not np.any(labels > 0):
        raise InputDataError("labels hold no segment: label the pixels of segment j with j = 1..m (0 is ignored)")
    array, _ = _as_frames(data)
    no_moments = np.zeros(tuple(array.shape[2:]), bool)
    return frame_sums(array, mask=no_moments, labels=labels, **engine).segments


def _as_frames(data):
    """The 4-D array behind ``data`` and how to read it: 'memory', 'hdf5' or 'dask'."""
    from .io.pixelated import PixelatedData

    if isinstance(data, PixelatedData):
        data = data.data
    elif hasattr(data, "axes_manager") and hasattr(data, "data"):  # a HyperSpy signal
        am = data.axes_manager
        if am.navigation_dimension != 2 or am.signal_dimension != 2:
            raise InputDataError(f"a HyperSpy signal of 4D-STEM frames needs two navigation and two signal axes, "
                                 f"got {am.navigation_dimension} and {am.signal_dimension}")
        data = data.data
    module = type(data).__module__.split(".")[0]
    if module == "dask":
        kind = "dask"
    elif module == "h5py":
        kind = "hdf5"
    elif isinstance(data, np.ndarray):
        kind = "memory"
    else:
        raise InputDataError(f"4D-STEM data must be a NumPy, Dask or HDF5 array, a HyperSpy signal or an opened "
                             f"file, got {type(data).__name__}")
    if data.ndim != 4 or min(data.shape) < 1:
        raise InputDataError(f"4D-STEM frames must be (scan_y, scan_x, ky, kx) with no empty axis, got shape "
                             f"{tuple(data.shape)}")
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "biuf":
        raise InputDataError(f"4D-STEM frames must hold real numbers (counts), got dtype {dtype}")
    return data, kind


def _prepare_masks(mask, labels, frame_shape):
    if mask is None:
        mask = np.ones(frame_shape, bool)
    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.shape != frame_shape:
        raise InputDataError(f"mask shape {mask.shape} does not match the frames {frame_shape} (ky, kx)")
    if labels is None:
        labels = np.zeros(frame_shape, np.uint8)
    labels = np.asarray(labels)
    if labels.shape != frame_shape:
        raise InputDataError(f"labels shape {labels.shape} does not match the frames {frame_shape} (ky, kx)")
    if labels.dtype.kind not in "iub":
        raise InputDataError(f"labels must be integers (0 ignored, 1..m segments), got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise InputDataError(f"labels must lie in 0..255, got {labels.min()}..{labels.max()}")
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    n_seg = int(labels.max()) if labels.size else 0
    boxes = np.stack([bounding_box(mask), bounding_box(labels)]).astype(np.int64)
    return mask, labels, n_seg, boxes


def _native(block):
    """A block the kernels take: native byte order and one of their dtypes (a copy of the block only if needed)."""
    dtype = block.dtype
    if dtype == np.bool_:
        return block.view(np.uint8)
    if dtype.byteorder not in ("=", "|"):
        dtype = dtype.newbyteorder("=")
    if dtype not in FRAME_DTYPES:
        dtype = np.dtype(np.float32 if dtype.kind == "f" and dtype.itemsize < 4 else np.float64)
    return block if dtype == block.dtype else block.astype(dtype)


def _reduce_block(block, mask, labels, boxes, n_seg, parallel):
    """(ny, nx, ky, kx) block → (ny, nx, 3 + m) float64: moments then segment sums.

    ``parallel`` shares the frames out over Numba's threads; otherwise the block is reduced
    on the calling thread (Dask threads and workers are the parallelism then).
    """
    ny, nx, ky, kx = block.shape
    frames = _native(np.asarray(block)).reshape(ny * nx, ky, kx)
    out = np.empty((ny * nx, 3 + n_seg))
    moments = out[:, :3]
    segments = out[:, 3:]
    (reduce_frames if parallel else reduce_frames_serial)(frames, mask, labels, boxes, moments, segments)
    return out.reshape(ny, nx, 3 + n_seg)


def _blocks(shape, itemsize, block_bytes, stored_chunks=None):
    """Slices (rows, columns) of the scan covering it in blocks of about ``block_bytes``."""
    sy, sx, ky, kx = shape
    per = max(1, int(block_bytes // (ky * kx * itemsize)))
    cy, cx = (stored_chunks[0], stored_chunks[1]) if stored_chunks else (1, 1)
    if per >= sx:
        rows = max(cy, (per // sx) // cy * cy)
        for y0 in range(0, sy, rows):
            yield slice(y0, min(y0 + rows, sy)), slice(0, sx)
    else:
        cols = max(cx, per // cx * cx)
        for y0 in range(0, sy, cy):
            for x0 in range(0, sx, cols):
                yield slice(y0, min(y0 + cy, sy)), slice(x0, min(x0 + cols, sx))


def _reduce_local(array, kind, mask, labels, boxes, n_seg, block_bytes, progress):
    sy, sx, ky, kx = array.shape
    out = np.empty((sy, sx, 3 + n_seg))
    stored = getattr(array, "chunks", None) if kind == "hdf5" else None
    with _progress_bar(progress, sy * sx, "frames") as bar:
        for rows, cols in _blocks(array.shape, np.dtype(array.dtype).itemsize, block_bytes, stored):
            block = array[rows, cols]
            out[rows, cols] = _reduce_block(block, mask, labels, boxes, n_seg, True)
            if kind == "memory":
                _release_pages(block)
            del block
            bar.update((rows.stop - rows.start) * (cols.stop - cols.start))
    return out[..., :3], out[..., 3:]


_MADV_DONTNEED = 4


def _release_pages(view):
    """Drop the pages of a read-only or shared memory-mapped block from this process (Linux).

    The data stays in the file and the page cache; only this process's resident memory
    shrinks, so reducing a file far larger than memory keeps a bounded footprint.
    """
    if not isinstance(view, np.memmap) or view.mode not in ("r", "r+") or not sys.platform.startswith("linux"):
        return
    if not view.flags.c_contiguous or view.nbytes == 0:
        return
    page = mmap.PAGESIZE
    start = view.ctypes.data
    first = -(-start // page) * page
    last = (start + view.nbytes) // page * page
    if last > first:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), ctypes.c_int(_MADV_DONTNEED))
        except (OSError, AttributeError):  # pragma: no cover - no libc madvise: the kernel reclaims pages itself
            pass


# -- Dask -----------------------------------------------------------------------------------

def _as_dask(array, kind, block_bytes):
    import dask.array as da

    from .io.hdf5 import frame_chunks, lazy_dataset

    if kind == "dask":
        out = array
    elif kind == "hdf5":
        out = lazy_dataset(array, block_bytes)
    elif isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.flags.c_contiguous:
        # read by file name on the workers instead of shipping the data
        from rsciio.utils.file import memmap_distributed

        chunks = frame_chunks(array.shape, array.dtype.itemsize, block_bytes)
        out = memmap_distributed(array.filename, np.dtype(array.dtype), offset=array.offset, shape=array.shape,
                                 chunks=chunks)
    else:
        out = da.from_array(np.asarray(array), chunks=frame_chunks(array.shape, array.dtype.itemsize, block_bytes))
    if any(len(c) > 1 for c in out.chunks[2:]):
        out = out.rechunk({2: -1, 3: -1})
    return out


def _reduce_dask(array, mask, labels, boxes, n_seg, scheduler, workers, progress):
    import dask

    reduced = array.map_blocks(_reduce_block, mask, labels, boxes, n_seg, False,
                               dtype=np.float64, drop_axis=(2, 3), new_axis=2,
                               chunks=(array.chunks[0], array.chunks[1], (3 + n_seg,)),
                               meta=np.empty((0, 0, 0)))
    blocks = reduced.to_delayed()[..., 0]
    flat = list(blocks.ravel())
    if scheduler is None and workers is None:
        with _progress_bar(progress, len(flat), "chunks") as bar, _DaskProgress(bar, reduced.name):
            results = dask.compute(*flat, scheduler="threads")
    else:
        with _client(scheduler, workers) as client:
            from distributed import as_completed

            futures = client.compute(flat)
            with _progress_bar(progress, len(flat), "chunks") as bar:
                for _ in as_completed(futures):
                    bar.update(1)
            results = client.gather(futures)
    grid = np.empty(blocks.shape, dtype=object)
    for index, value in zip(np.ndindex(blocks.shape), results):
        grid[index] = value
    out = np.concatenate([np.concatenate(list(row), axis=1) for row in grid], axis=0)
    return out[..., :3], out[..., 3:]


class _DaskProgress:
    """Advance a progress bar as the local scheduler finishes each output chunk."""

    def __init__(self, bar, name):
        from dask.callbacks import Callback

        outer = self

        class _Callback(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                if isinstance(key, tuple) and key and key[0] == outer.name:
                    outer.bar.update(1)

        self.bar = bar
        self.name = name
        self.callback = _Callback()

    def __enter__(self):
        self.callback.__enter__()
        return self

    def __exit__(self, *exc):
        self.callback.__exit__(*exc)


@contextmanager
def _client(scheduler, workers):
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if isinstance(scheduler, Client):
            yield scheduler
            return
        try:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect (Dask config)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputDataError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
        with client:
            yield client
        return
    workers = int(workers)
    if workers < 1:
        raise InputDataError(f"workers must be a positive number of processes, got {workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


@contextmanager
def _progress_bar(enabled, total, unit):
    if not enabled:
        class _Silent:
            def update(self, n=1):
                pass

        yield _Silent()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, unit=unit, desc="4D-STEM", file=sys.stderr, leave=False) as bar:
        yield bar


# -- from centre of mass to deflection ------------------------------------------------------

def mrad_per_px(*, camera_length_mm=None, detector_pixel_um=None, mrad_per_px=None) -> float:
    """Angular size of one detector pixel in mrad.

    Either given directly, or from the camera length L (mm) and the detector pixel pitch p
    (µm) as p / L (small-angle: a pitch of 55 µm at 100 mm is 0.55 mrad).
    """
    if mrad_per_px is not None:
        if camera_length_mm is not None or detector_pixel_um is not None:
            raise CalibrationError("give mrad_per_px, or camera_length_mm with detector_pixel_um, not both")
        value = float(mrad_per_px)
        if not (math.isfinite(value) and value > 0):
            raise CalibrationError(f"mrad_per_px must be positive and finite, got {mrad_per_px!r}")
        return value
    if camera_length_mm is None or detector_pixel_um is None:
        raise CalibrationError("the detector's angular pixel size is needed: give mrad_per_px "
                               "(--mrad-per-px), or camera_length_mm and detector_pixel_um "
                               "(--camera-length MM --detector-pixel-um UM)")
    length, pitch = float(camera_length_mm), float(detector_pixel_um)
    for name, value in (("camera_length_mm", length), ("detector_pixel_um", pitch)):
        if not (math.isfinite(value) and value > 0):
            raise CalibrationError(f"{name} must be positive and finite, got {value!r}")
    return pitch / length  # µm / mm = mrad


def _angular_pixel_size(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"mrad_per_px must be a number (mrad per detector pixel), got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise CalibrationError(f"mrad_per_px must be positive and finite (mrad per detector pixel), got {value!r}")
    return value


def fit_plane(values, region=None) -> np.ndarray:
    """Least-squares plane a + b·x + c·y through a map over ``region`` (and finite pixels).

    Parameters
    ----------
    values : ndarray, shape (ny, nx)
    region : ndarray of bool, shape (ny, nx), optional

    Returns
    -------
    ndarray of float64, shape (ny, nx)
        The plane evaluated on the whole grid (x the column, y the row index).
    """
    values = np.asarray(values, dtype=np.float64)
    use = np.isfinite(values)
    if region is not None:
        region = np.asarray(region, dtype=bool)
        if region.shape != values.shape:
            raise InputDataError(f"descan region shape {region.shape} does not match the scan {values.shape}")
        use &= region
    y, x = np.indices(values.shape, dtype=np.float64)
    n = int(use.sum())
    if n == 0:
        raise InputDataError("the descan region holds no pixel with a finite centre of mass")
    columns = [np.ones(n)]
    if np.ptp(x[use]) > 0:
        columns.append(x[use])
    if np.ptp(y[use]) > 0:
        columns.append(y[use])
    design = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(design, values[use], rcond=None)
    plane = np.full(values.shape, coef[0])
    k = 1
    if np.ptp(x[use]) > 0:
        plane += coef[k] * x
        k += 1
    if np.ptp(y[use]) > 0:
        plane += coef[k] * y
    return plane


def deflection_from_com(com_x, com_y, calibration: Calibration, *, mrad_per_px: float, reference=None,
                        region=None):
    """Beam deflection in the scan frame (mrad) from the centre of mass (detector pixels).

    Parameters
    ----------
    com_x, com_y : ndarray, shape (ny, nx)
        Centre of mass in detector pixels (column, row), detector frame.
    calibration : Calibration
        ``detector_rotation_deg`` ψ and ``flip``: the detector's +kx axis lies along scan
        azimuth ψ (from scan +x toward +y), its +ky axis along ψ+90° (ψ−90° with flip).
    mrad_per_px : float
        Angular size of a detector pixel (see :func:`mrad_per_px`).
    reference : (com_x, com_y) of scalars or (ny, nx) maps, optional
        The undeflected pattern centre in pixels (a vacuum scan's centre of mass, or a
        known centre). Without it, the descan is a plane fitted to each component over
        ``region`` — a plane removes any uniform deflection there, so choose a region
        that is field-free, or one over which the field averages to zero.
    region : ndarray of bool, shape (ny, nx), optional
        Where the plane is fitted (default: the whole scan).

    Returns
    -------
    theta_x_mrad, theta_y_mrad : ndarray of float64, shape (ny, nx)
        Deflection along scan x and scan y in mrad.
    """
    mrad_per_px = _angular_pixel_size(mrad_per_px)
    com_x = np.asarray(com_x, dtype=np.float64)
    com_y = np.asarray(com_y, dtype=np.float64)
    if com_x.ndim != 2 or com_x.shape != com_y.shape:
        raise InputDataError(f"centre-of-mass maps must be two 2-D arrays of one shape, got {com_x.shape}, "
                             f"{com_y.shape}")
    if reference is None:
        ref_x, ref_y = fit_plane(com_x, region), fit_plane(com_y, region)
    else:
        ref_x, ref_y = (np.asarray(r, dtype=np.float64) for r in reference)
        for r in (ref_x, ref_y):
            if r.ndim not in (0, 2) or (r.ndim == 2 and r.shape != com_x.shape):
                raise InputDataError(f"a descan reference must be a number or a map of the scan's shape "
                                     f"{com_x.shape}, got shape {r.shape}")
    u = (com_x - ref_x) * mrad_per_px
    v = (com_y - ref_y) * mrad_per_px
    axes = calibration.segment_axes()  # row 0: detector +kx in scan (x, y); row 1: detector +ky
    theta_x = u * axes[0, 0] + v * axes[1, 0]
    theta_y = u * axes[0, 1] + v * axes[1, 1]
    return theta_x, theta_y


def bright_field_disc(data, *, max_frames=64):
    """Centre (row, column) and radius of the bright-field disc, in detector pixels.

    Found from the mean of up to ``max_frames`` frames of the first scan row: the centre
    of mass of the pixels above half the maximum, and the radius of a disc of their area.
    """
    array, _ = _as_frames(data)
    n = min(int(array.shape[1]), int(max_frames))
    sample = np.asarray(array[0, :n], dtype=np.float64)
    finite = np.isfinite(sample)
    counted = finite.sum(axis=0)
    mean = np.where(counted > 0, np.where(finite, sample, 0.0).sum(axis=0) / np.maximum(counted, 1), np.nan)
    if not np.isfinite(mean).any() or np.nanmax(mean) <= 0:
        raise InputDataError("the first frames hold no counts: the bright-field disc cannot be found; "
                             "give the mask centre and radius")
    bright = mean >= 0.5 * np.nanmax(mean)
    y, x = np.indices(mean.shape)
    centre = (float(y[bright].mean()), float(x[bright].mean()))
    radius = math.sqrt(bright.sum() / math.pi)
    return centre, radius


def reconstruct_com(data, calibration: Calibration, *, mrad_per_px: float, mask_radius_px=None,
                    mask_centre_yx=None, reference=None, region=None, scheduler=None, workers=None,
                    block_bytes=BLOCK_BYTES, progress=None, **reconstruct_options):
    """Field, charge density and potential from 4D-STEM frames through the centre of mass.

    Parameters
    ----------
    data : array-like, shape (scan_y, scan_x, ky, kx)
        The frames (any source :func:`frame_sums` takes).
    calibration : Calibration
        kV, scan step, thickness, and the detector's rotation and flip against the scan.
    mrad_per_px : float
        Angular size of one detector pixel in mrad.
    mask_radius_px : float, optional
        Restrict the centre of mass to a disc of this radius (pixels) around
        ``mask_centre_yx`` (default: the bright-field disc's centre); default: whole frame.
    reference, region :
        Descan, see :func:`deflection_from_com`.
    scheduler, workers, block_bytes, progress :
        See :func:`frame_sums`.
    **reconstruct_options :
        Passed to :func:`dpcstem.reconstruct.reconstruct_deflection`.

    Returns
    -------
    DPCResult
        With ``extra`` holding ``com_x``, ``com_y`` (px, detector frame) and
        ``intensity`` (counts) over the mask.
    """
    from .reconstruct import reconstruct_deflection

    mrad_per_px = _angular_pixel_size(mrad_per_px)
    array, _ = _as_frames(data)
    mask = None
    attrs = {"mrad_per_px": float(mrad_per_px), "descan": "plane" if reference is None else "reference"}
    if mask_radius_px is not None:
        if mask_centre_yx is None:
            mask_centre_yx, _ = bright_field_disc(array)
        mask = disc_mask(tuple(array.shape[2:]), mask_centre_yx, mask_radius_px)
        attrs.update(mask_radius_px=float(mask_radius_px), mask_centre_y_px=float(mask_centre_yx[0]),
                     mask_centre_x_px=float(mask_centre_yx[1]))
    sums = centre_of_mass(array, mask=mask, scheduler=scheduler, workers=workers, block_bytes=block_bytes,
                          progress=progress)
    theta_x, theta_y = deflection_from_com(sums.com_x, sums.com_y, calibration, mrad_per_px=mrad_per_px,
                                           reference=reference, region=region)
    valid = np.isfinite(theta_x) & np.isfinite(theta_y)
    if not valid.any():
        raise InputDataError("no frame has a finite centre of mass: every frame holds zero counts or NaN inside the "
                             "mask (check the data, the mask radius and centre)")
    result = reconstruct_deflection(theta_x, theta_y, calibration, valid=valid, **reconstruct_options)
    result.extra["com_x"] = (sums.com_x.astype(np.float32), "px")
    result.extra["com_y"] = (sums.com_y.astype(np.float32), "px")
    result.extra["intensity"] = (sums.intensity.astype(np.float32), "counts")
    result.attrs.update(attrs)
    return result
