"""Per-frame reductions of 4D-STEM data in one pass: intensity, first moments, segment sums.

A block of diffraction frames ``(n, ky, kx)`` in its native dtype is reduced, frame by
frame, to

* the intensity inside a boolean mask (a disc or annulus around the bright-field disc),
  Σ I, and its first moments Σ kx·I and Σ ky·I, with kx the column and ky the row index
  of the pixel in the whole frame (the centre of mass is Σ kx·I / Σ I, Σ ky·I / Σ I);
* the sums of any number of virtual segments given by an integer label image (label 0 is
  ignored, label j = 1..m adds to segment j).

Each frame is read from memory once (the segments are summed while it is still in the
cache). Only the rows and columns inside the bounding box of the mask (or of the labelled
pixels) are touched. Integer frames are summed along each row in integers
(int32 for 8- and 16-bit frames, int64 for 32-bit frames: exact) and the row sums accumulated
in float64 (exact below 2**53, so a saturated frame cannot wrap); the moments are float64;
float frames are summed in float64. A NaN pixel inside the mask makes that frame's sums
NaN; a NaN pixel outside the mask is ignored.

The kernels take arrays and scalars only and do no validation: the caller
(:mod:`dpcstem.fourd`) checks shapes and dtypes and allocates the outputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .config import FASTMATH

#: Frame dtypes the kernels are compiled for (native byte order).
FRAME_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32,
                                            np.float32, np.float64))


#: Labels whose runs along the rows are shorter than this on average (pixels) are summed by
#: scattering each pixel into its segment; longer runs are summed run by run (vectorised).
_SHORT_RUN = 4


def _accumulator(frames, size):  # pragma: no cover - compiled code uses the overload
    raise NotImplementedError


@overload(_accumulator)
def _accumulator_overload(frames, size):
    """Zeros (of shape ``size``) of the type A that sums ``frames`` exactly: int32 (8/16-bit),
    int64 (32-bit), float64."""
    dtype = frames.dtype
    if isinstance(dtype, types.Integer) and dtype.bitwidth <= 16:
        return lambda frames, size: np.zeros(size, dtype=np.int32)
    if isinstance(dtype, types.Integer):
        return lambda frames, size: np.zeros(size, dtype=np.int64)
    return lambda frames, size: np.zeros(size, dtype=np.float64)


@njit(cache=True)
def _runs(labels, y0, y1, x0, x1):
    """The runs of one non-zero label along each row of ``labels[y0:y1, x0:x1]``.

    Returns ``(first, start, stop, label)``: the runs of row ``y0 + j`` are
    ``first[j]:first[j + 1]``; run k covers columns ``start[k]:stop[k]`` (uint64) of label
    ``label[k]``.
    """
    count = 0
    for r in range(y0, y1):
        previous = 0
        for c in range(x0, x1):
            v = labels[r, c]
            count += v != previous and v != 0
            previous = v
    first = np.zeros(max(y1 - y0, 0) + 1, np.int64)
    start = np.empty(count, np.uint64)
    stop = np.empty(count, np.uint64)
    label = np.empty(count, np.int64)
    k = 0
    for r in range(y0, y1):
        previous = 0
        for c in range(x0, x1):
            v = labels[r, c]
            if v != previous:
                if previous:
                    stop[k - 1] = c
                if v:
                    start[k] = c
                    label[k] = v
                    k += 1
                previous = v
        if previous:
            stop[k - 1] = x1
        first[r - y0 + 1] = k
    return first, start, stop, label


def _reduce_frames(frames, mask, labels, boxes, moments, segments):
    # Written for LLVM's vectoriser (8 int32 lanes of AVX2 for 8- and 16-bit frames):
    # * Numba types integer arithmetic as int64, so every sum is cast back to the accumulator
    #   type A (``A(a + b)``); LLVM then adds in A's lanes.
    # * Pixels are indexed with unsigned integers: no test for negative indices, and no row
    #   slices (a slice is a view with an atomic reference count, which cost more than the
    #   row's arithmetic).
    # * Each pixel is loaded before the mask decides whether it counts (a select, not a
    #   conditional load).
    # * Segments are summed over the runs of one label along each row (a plain vectorised
    #   sum per run); labels cut into runs shorter than _SHORT_RUN pixels on average are
    #   summed by scattering each pixel into its segment instead.
    # * The moments and the segments are two loops over the rows of a frame (the second
    #   finds the frame in the cache): each loop stays free of the other's tests.
    n = frames.shape[0]
    n_seg = segments.shape[1]
    my0, my1, mx0, mx1 = boxes[0, 0], boxes[0, 1], boxes[0, 2], boxes[0, 3]
    ly0, ly1, lx0, lx1 = boxes[1, 0], boxes[1, 1], boxes[1, 2], boxes[1, 3]
    if n_seg == 0:
        ly0 = ly1 = 0
    width = max(mx1 - mx0, 0)
    whole = True  # every pixel of the mask's box is in the mask: no per-pixel test needed
    for r in range(my0, my1):
        for c in range(mx0, mx1):
            if not mask[r, c]:
                whole = False
    first, start, stop, label = _runs(labels, ly0, ly1, lx0, lx1)
    scatter = _SHORT_RUN * len(start) > np.int64(np.sum(stop - start))
    ux0, uwidth = np.uint64(mx0), np.uint64(width)
    ulx0, ulwidth = np.uint64(lx0), np.uint64(max(lx1 - lx0, 0))
    for i in prange(n):
        frame = frames[i]
        cols = _accumulator(frames, max(width, 1))
        seg = np.zeros(max(n_seg, 1), dtype=np.float64)  # row sums are exact integers; their total may pass 2**31
        zero = cols[0]
        A = type(zero)
        total = 0.0
        row_moment = 0.0
        for r in range(my0, my1):
            ur = np.uint64(r)
            row = zero
            if whole:
                for c in range(uwidth):
                    v = A(frame[ur, ux0 + c])
                    cols[c] = A(cols[c] + v)
                    row = A(row + v)
            else:
                for c in range(uwidth):
                    v = A(frame[ur, ux0 + c])
                    t = v if mask[ur, ux0 + c] else zero
                    cols[c] = A(cols[c] + t)
                    row = A(row + t)
            total += np.float64(row)
            row_moment += r * np.float64(row)
        for r in range(ly0, ly1):
            ur = np.uint64(r)
            if scatter:
                for c in range(ulwidth):
                    j = np.int64(labels[ur, ulx0 + c])
                    if j > 0:
                        seg[j - 1] += np.float64(frame[ur, ulx0 + c])
            else:
                for k in range(first[r - ly0], first[r - ly0 + 1]):
                    acc = zero
                    for c in range(start[k], stop[k]):
                        acc = A(acc + A(frame[ur, c]))
                    seg[label[k] - 1] += np.float64(acc)
        col_moment = 0.0
        for c in range(width):
            col_moment += (mx0 + c) * np.float64(cols[c])
        moments[i, 0] = total
        moments[i, 1] = col_moment
        moments[i, 2] = row_moment
        for j in range(n_seg):
            segments[i, j] = seg[j]


_DOC = """Reduce a block of frames to masked moments and virtual-segment sums, in one pass.

    Parameters
    ----------
    frames : ndarray, shape (n, ky, kx)
        Diffraction frames in native byte order, dtype one of :data:`FRAME_DTYPES`
        (counts; any strides).
    mask : ndarray of bool, shape (ky, kx)
        Pixels that enter the intensity and the first moments (detector frame).
    labels : ndarray of uint8, shape (ky, kx)
        Virtual segment of each pixel: 0 ignored, j = 1..m adds to ``segments[:, j-1]``
        (m <= 255). Every label must be <= m.
    boxes : ndarray of int64, shape (2, 4)
        ``[[y0, y1, x0, x1] of mask, [y0, y1, x0, x1] of labels]``, half-open bounding boxes
        inside the frame that hold every True mask pixel and every non-zero label
        (see :func:`bounding_box`). An empty box (y0 == y1) skips that part.
    moments : ndarray of float64, shape (n, 3), written
        Per frame Σ I, Σ kx·I, Σ ky·I over the mask, kx the column and ky the row index
        of the pixel in the frame (counts, counts·px, counts·px).
    segments : ndarray of float64, shape (n, m), written
        Per frame the sum of each virtual segment (counts); m may be 0.
    """


#: Parallel over the frames of the block (numba ``prange``): for one caller on a machine.
reduce_frames = njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)(_reduce_frames)
reduce_frames.__doc__ = _DOC + "\n    Frames are shared out over Numba's threads.\n"

#: The same kernel on the calling thread only: for workers that already run in parallel
#: (Dask threads, ``dask.distributed`` workers).
reduce_frames_serial = njit(parallel=False, fastmath=FASTMATH, cache=True, nogil=True)(_reduce_frames)
reduce_frames_serial.__doc__ = _DOC + "\n    Runs on the calling thread only and releases the GIL.\n"


@njit(cache=True)
def bounding_box(image):
    """Half-open bounding box ``[y0, y1, x0, x1]`` (int64) of the non-zero pixels of a 2-D image.

    An image with no non-zero pixel gives ``[0, 0, 0, 0]``.
    """
    ny, nx = image.shape
    y0, y1, x0, x1 = ny, 0, nx, 0
    for r in range(ny):
        for c in range(nx):
            if image[r, c]:
                y0 = min(y0, r)
                y1 = max(y1, r + 1)
                x0 = min(x0, c)
                x1 = max(x1, c + 1)
    out = np.zeros(4, dtype=np.int64)
    if y1 > y0:
        out[0], out[1], out[2], out[3] = y0, y1, x0, x1
    return out
