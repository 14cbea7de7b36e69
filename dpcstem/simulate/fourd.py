"""Synthetic pixelated 4D-STEM acquisitions: the shifted, blurred bright-field disc per probe position.

Each frame is the bright-field disc of semi-angle α (radius α / mrad_per_px detector
pixels), shifted by the beam deflection at that scan position, with its edge blurred by a
Gaussian of ``blur_px`` (the probe's finite source size and partial coherence), normalised
to ``dose`` electrons per frame and, with ``noise``, drawn with Poisson counting noise into
uint16 counts. Scan rows are made one block at a time, so a data set far larger than
memory is written to HDF5 or ``.npy`` with a footprint of one block
(:func:`write_frames`). Each scan row has its own random stream derived from the seed:
the same seed gives the same frames, bit for bit, whatever the block size.

The deflection is given in the scan frame (mrad) and drawn on the detector through the
calibration's ``detector_rotation_deg`` and ``flip`` (DESIGN.md §2): the detector's +kx
axis lies along scan azimuth ψ and its +ky axis along ψ+90° (ψ−90° with flip).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.special import erfc

from .. import _validate
from ..calibration import Calibration
from ..calibration.descan import descan_surface
from ..errors import InputDataError

#: Largest count a uint16 frame pixel holds.
_UINT16_MAX = np.iinfo(np.uint16).max
#: Detector pixels computed at a time in float64 (a few temporaries of 1 MiB each).
_BATCH_PIXELS = 2**17


def disc_frames(shift_x_px, shift_y_px, *, frame_shape, radius_px, centre_yx=None, blur_px=0.5, dose=1e4):
    """Expected counts of blurred bright-field discs shifted by the given amounts.

    Parameters
    ----------
    shift_x_px, shift_y_px : ndarray, shape (n,)
        Shift of the disc along the detector's columns (kx) and rows (ky), in pixels.
    frame_shape : (int, int)
        (ky, kx).
    radius_px : float
        Disc radius in pixels (α / mrad_per_px).
    centre_yx : (float, float), optional
        Undeflected disc centre (row, column) in pixels; default: the frame's middle.
    blur_px : float
        Standard deviation of the Gaussian edge blur in pixels (> 0).
    dose : float
        Electrons per frame (the integral of the disc).

    Returns
    -------
    ndarray of float64, shape (n, ky, kx)
        Expected counts; each frame sums to ``dose`` up to what falls off the detector.

    Notes
    -----
    The edge of a disc of radius R convolved with a Gaussian of width σ ≪ R is
    ½·erfc((r − R)/(√2 σ)) at distance r from its centre; the profile is symmetric about
    the centre, so the centre of mass of a frame is the disc centre plus its shift, up to
    the sampling of the detector.
    """
    ky, kx = (int(n) for n in frame_shape)
    if centre_yx is None:
        centre_yx = ((ky - 1) / 2, (kx - 1) / 2)
    sx = np.asarray(shift_x_px, dtype=np.float64).reshape(-1, 1, 1)
    sy = np.asarray(shift_y_px, dtype=np.float64).reshape(-1, 1, 1)
    y = np.arange(ky, dtype=np.float64).reshape(1, -1, 1) - centre_yx[0]
    x = np.arange(kx, dtype=np.float64).reshape(1, 1, -1) - centre_yx[1]
    r = np.sqrt((y - sy) ** 2 + (x - sx) ** 2)
    profile = 0.5 * erfc((r - radius_px) / (math.sqrt(2.0) * blur_px))
    area = math.pi * (radius_px**2 + blur_px**2)  # ∫ of the blurred edge profile over the plane
    return profile * (dose / area)


def _detector_shift_px(theta_x_mrad, theta_y_mrad, calibration, mrad_per_px):
    """Scan-frame deflection → shift on the detector (kx, ky) in pixels."""
    u, v = calibration.to_detector_frame(theta_x_mrad, theta_y_mrad)  # detector +kx, +ky
    return u / mrad_per_px, v / mrad_per_px


class FrameSimulator:
    """Frames of one 4D-STEM acquisition, made block by block of scan rows.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Beam deflection in the scan frame, mrad (e.g. from
        :func:`dpcstem.simulate.deflection_from_truth`).
    calibration : Calibration
        ``alpha_mrad`` (disc radius), ``detector_rotation_deg`` and ``flip``.
    frame_shape : (int, int)
        Detector (ky, kx) in pixels.
    mrad_per_px : float
        Angular size of a detector pixel in mrad (for a camera length L in mm and a pixel
        pitch p in µm: p / L, see :func:`dpcstem.fourd.mrad_per_px`).
    centre_yx : (float, float), optional
        Undeflected disc centre in pixels; default: the middle of the frame.
    descan_px_per_step : array-like, shape (2, 2), optional
        Drift of the pattern centre with scan position, px per scan step:
        ``[[dkx/dx, dkx/dy], [dky/dx, dky/dy]]``.
    blur_px : float
        Gaussian edge blur of the disc in pixels.
    dose : float
        Electrons per probe position.
    noise : bool
        Poisson counting noise and uint16 frames; without it, float32 expected counts.
    seed : int
        Seed of the counting noise.
    """

    def __init__(self, theta_x_mrad, theta_y_mrad, calibration: Calibration, *, frame_shape, mrad_per_px,
                 centre_yx=None, descan_px_per_step=None, blur_px=0.5, dose=1e4, noise=True, seed=0):
        tx = np.asarray(theta_x_mrad, dtype=np.float64)
        ty = np.asarray(theta_y_mrad, dtype=np.float64)
        if tx.ndim != 2 or tx.shape != ty.shape or tx.size == 0:
            raise InputDataError(f"deflection maps must be two non-empty 2-D arrays of one shape, got "
                                 f"{tx.shape}, {ty.shape}")
        if not (np.isfinite(tx).all() and np.isfinite(ty).all()):
            raise InputDataError("deflection maps must be finite everywhere")
        self.frame_shape = tuple(int(n) for n in frame_shape)
        if len(self.frame_shape) != 2 or min(self.frame_shape) < 1:
            raise InputDataError(f"frame_shape must be (ky, kx) positive, got {frame_shape}")
        mrad_per_px = _validate.positive("mrad_per_px", mrad_per_px)
        blur_px = _validate.positive("blur_px", blur_px)
        dose = _validate.positive("dose", dose, what="electrons per probe position")
        ky, kx = self.frame_shape
        self.centre_yx = ((ky - 1) / 2, (kx - 1) / 2) if centre_yx is None else tuple(map(float, centre_yx))
        self.mrad_per_px = float(mrad_per_px)
        self.radius_px = calibration.alpha_mrad / self.mrad_per_px
        self.blur_px = float(blur_px)
        self.dose = float(dose)
        self.noise = bool(noise)
        self.dtype = np.dtype(np.uint16 if noise else np.float32)
        u, v = _detector_shift_px(tx, ty, calibration, self.mrad_per_px)
        if descan_px_per_step is not None:
            d = np.asarray(descan_px_per_step, dtype=np.float64).reshape(2, 2)
            centre_x, centre_y = (tx.shape[1] - 1) / 2, (tx.shape[0] - 1) / 2  # zero at the first scan position
            du, dv = descan_surface([d[0, 0] * centre_x + d[0, 1] * centre_y, d[0, 0], d[0, 1]],
                                    [d[1, 0] * centre_x + d[1, 1] * centre_y, d[1, 0], d[1, 1]], tx.shape)
            u, v = u + du, v + dv
        self.shift_x_px, self.shift_y_px = u, v
        self.scan_shape = tx.shape
        self._row_seeds = np.random.SeedSequence(seed).spawn(tx.shape[0])

    @property
    def shape(self):
        """(scan_y, scan_x, ky, kx)."""
        return (*self.scan_shape, *self.frame_shape)

    @property
    def nbytes(self):
        return math.prod(self.shape) * self.dtype.itemsize

    def rows(self, y0, y1):
        """Frames of scan rows y0..y1−1, shape (y1 − y0, nx, ky, kx)."""
        nx = self.scan_shape[1]
        out = np.empty((y1 - y0, nx, *self.frame_shape), self.dtype)
        batch = max(1, _BATCH_PIXELS // math.prod(self.frame_shape))
        for i, row in enumerate(range(y0, y1)):
            rng = np.random.default_rng(self._row_seeds[row])  # one stream per row, drawn in order
            for x0 in range(0, nx, batch):
                x1 = min(x0 + batch, nx)
                mean = disc_frames(self.shift_x_px[row, x0:x1], self.shift_y_px[row, x0:x1],
                                   frame_shape=self.frame_shape, radius_px=self.radius_px,
                                   centre_yx=self.centre_yx, blur_px=self.blur_px, dose=self.dose)
                if self.noise:
                    counts = rng.poisson(mean)
                    np.minimum(counts, _UINT16_MAX, out=counts)
                    out[i, x0:x1] = counts
                else:
                    out[i, x0:x1] = mean
        return out

    def blocks(self, rows_per_block):
        """Yield (y0, y1, frames) over the scan, ``rows_per_block`` scan rows at a time."""
        ny = self.scan_shape[0]
        for y0 in range(0, ny, rows_per_block):
            y1 = min(y0 + rows_per_block, ny)
            yield y0, y1, self.rows(y0, y1)

    def all(self):
        """Every frame in memory, shape (scan_y, scan_x, ky, kx) (small sets only)."""
        return self.rows(0, self.scan_shape[0])


def simulate_frames(theta_x_mrad, theta_y_mrad, calibration: Calibration, **options) -> np.ndarray:
    """A whole 4D-STEM set in memory (see :class:`FrameSimulator` for the options).

    Returns
    -------
    ndarray, shape (ny, nx, ky, kx)
        uint16 counts with noise, float32 expected counts without.
    """
    return FrameSimulator(theta_x_mrad, theta_y_mrad, calibration, **options).all()


def write_frames(path, theta_x_mrad, theta_y_mrad, calibration: Calibration, *, block_bytes=32 * 2**20,
                 overwrite=False, **options) -> Path:
    """Write a 4D-STEM set to HDF5 (``.h5``/``.hdf5``) or ``.npy``, one block of scan rows at a time.

    Parameters
    ----------
    path : path-like
        Output file; written to a temporary name and renamed into place.
    theta_x_mrad, theta_y_mrad, calibration, **options :
        See :class:`FrameSimulator`.
    block_bytes : int
        About how many bytes of frames are made and written at a time (at least one scan
        row); peak memory grows with this, not with the size of the set.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path

    Notes
    -----
    The HDF5 file holds the frames as dataset ``frames`` (scan_y, scan_x, ky, kx), chunked
    one scan row per chunk, with attributes ``mrad_per_px``, ``kv``, ``step_x_nm``,
    ``step_y_nm`` and ``units`` = "counts", and the true deflection as ``truth/deflection_x``
    and ``truth/deflection_y`` (mrad, scan frame).
    """
    from .. import io

    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5", ".npy"):
        raise InputDataError(f"{path}: a simulated 4D-STEM set is written as .h5, .hdf5 or .npy, not "
                             f"{path.suffix.lower()!r}")
    sim = FrameSimulator(theta_x_mrad, theta_y_mrad, calibration, **options)
    rows = max(1, int(block_bytes // (sim.nbytes // sim.scan_shape[0])))
    attrs = {"units": "counts", "mrad_per_px": sim.mrad_per_px, "kv": calibration.kv,
             "step_x_nm": calibration.step_x_nm, "step_y_nm": calibration.step_y_nm,
             "alpha_mrad": calibration.alpha_mrad, "dose_e_per_frame": sim.dose}
    truth = {f"truth/{name}": (np.asarray(value, dtype=np.float64), "mrad")
             for name, value in (("deflection_x", theta_x_mrad), ("deflection_y", theta_y_mrad))}
    return io.write_frames(path, sim.shape, sim.dtype, sim.blocks(rows), attrs=attrs, extra=truth,
                           overwrite=overwrite)
