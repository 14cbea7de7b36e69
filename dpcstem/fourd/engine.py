"""Pixelated 4D-STEM, the accumulation: every frame reduced to a few numbers, in one pass.

The block loop and the Dask path share the block plan and the sums; how the blocks are read
is :mod:`.reading`'s.

Every frame is reduced in one pass (:mod:`dpcstem.kernels.com`) to its masked intensity,
first moments and virtual-segment sums; all later steps work on those few maps. The
frames may come as

* an in-memory NumPy array or a ``numpy.memmap`` (reduced block by block; a memory-mapped
  file is read from the file, hashed on the way, see :mod:`.reading`);
* an ``h5py.Dataset`` (read block by block, so peak memory is one block);
* a Dask array or a (lazy) HyperSpy signal, or a :class:`~dpcstem.io.pixelated.PixelatedData`
  from :func:`~dpcstem.io.pixelated.open_pixelated`, computed on the local threaded
  scheduler or on a ``dask.distributed`` cluster (``workers=N`` starts a ``LocalCluster``
  for the call; ``scheduler="tcp://host:port"`` uses a running one);

and every path gives the same numbers. Frames are (scan_y, scan_x, ky, kx): scan rows,
"""

from __future__ import annotations

import mmap
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .. import _validate
from ..errors import InputDataError
from ..kernels.com import FRAME_DTYPES, bounding_box, reduce_frames, reduce_frames_serial
from .reading import block_source


#: Target size of one block of frames read at a time (bytes), for arrays and HDF5 datasets.
BLOCK_BYTES = 64 * 2**20
#: Work of more frames than this shows a progress bar by default (when stderr is a terminal).
PROGRESS_FRAMES = 4096
#: A stage longer than this (seconds) says so in one line on stderr when no progress bar is shown.
STAGE_LINE_S = 2.0


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


def frame_sums(data, *, mask=None, labels=None, scheduler=None, workers=None, block_bytes=None,
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
    block_bytes : int, optional
        Bytes of frames read and reduced at a time; default :data:`BLOCK_BYTES`, and an
        array already in memory (not a memory map) reduced locally in one call: each call
        wakes Numba's sleeping threads, which cost a quarter of the time in 64 MiB blocks
        (537 MB, two threads).
    progress : bool, optional
        Show a progress bar (tqdm, on stderr); default: for more than
        :data:`PROGRESS_FRAMES` frames when stderr is a terminal, and otherwise one line
        on stderr when the reduction took more than :data:`STAGE_LINE_S` seconds.

    Returns
    -------
    FrameSums
    """
    array, kind = as_frames(data)
    sy, sx, ky, kx = (int(n) for n in array.shape)
    mask, labels, n_seg, boxes = _prepare_masks(mask, labels, (ky, kx))
    if progress is None:  # a bar on a terminal; otherwise one line for a long reduction
        progress = sy * sx > PROGRESS_FRAMES if sys.stderr.isatty() else "line"
    if scheduler is not None and workers is not None:
        raise InputDataError("give scheduler (a running cluster) or workers (a local cluster), not both")
    local = scheduler is None and workers is None and kind != "dask"
    if block_bytes is None:
        block_bytes = array.nbytes if local and kind == "memory" and not isinstance(array, np.memmap) else BLOCK_BYTES
    if not local:
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
    array, _ = as_frames(data)
    no_moments = np.zeros(tuple(array.shape[2:]), bool)
    return frame_sums(array, mask=no_moments, labels=labels, **engine).segments


def as_frames(data):
    """The 4-D array behind ``data`` and how to read it: 'memory', 'hdf5' or 'dask'."""
    from ..io.pixelated import PixelatedData

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
    """Reduce block by block, the next blocks read on other threads while this one is reduced.

    The kernels release the GIL, so the reading (:mod:`.reading`) and the reduction overlap:
    streaming from disk costs the larger of the two, not their sum. A few blocks are held at a
    time.
    """
    sy, sx, ky, kx = array.shape
    out = np.empty((sy, sx, 3 + n_seg))
    stored = getattr(array, "chunks", None) if kind == "hdf5" else None
    blocks = list(_blocks(array.shape, np.dtype(array.dtype).itemsize, block_bytes, stored))
    start = time.perf_counter()
    with _progress_bar(progress, sy * sx, "frames") as bar, block_source(array, kind, blocks) as source:
        for rows, cols, block in source:
            out[rows, cols] = _reduce_block(block, mask, labels, boxes, n_seg, True)
            del block
            bar.update((rows.stop - rows.start) * (cols.stop - cols.start))
    _stage_line(progress, f"{sy * sx} frames ({array.nbytes / 1e9:.2f} GB)", time.perf_counter() - start)
    return out[..., :3], out[..., 3:]


def _stage_line(progress, what, seconds):
    """Without a progress bar: one line on stderr for a stage that took more than STAGE_LINE_S seconds."""
    if progress != "line" or seconds < STAGE_LINE_S:
        return
    print(f"4D-STEM: reduced {what} in {seconds:.1f} s", file=sys.stderr, flush=True)


# -- Dask -----------------------------------------------------------------------------------

def _as_dask(array, kind, block_bytes):
    import dask.array as da

    from ..io.hdf5 import frame_chunks, lazy_dataset

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
    workers = _validate.whole("workers", workers)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


@contextmanager
def _progress_bar(enabled, total, unit):
    if enabled is not True:
        class _Silent:
            def update(self, n=1):
                pass

        yield _Silent()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, unit=unit, desc="4D-STEM", file=sys.stderr, leave=False) as bar:
        yield bar
