"""The segment response of a bright-field disc whose edge is blurred, computed numerically.

Probe aberrations, partial coherence and inelastic scattering in a thick specimen blur the
disc edge; :func:`blurred_segment_areas` gives the overlap of such a disc with the four
quadrant segments on a fine grid of the detector plane (areas in units of α²).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

from .. import _validate
from ..errors import InputDataError

#: Grid points per α of the detector-plane grid of the blurred response.
POINTS_PER_ALPHA = 256

#: Gaussian tails beyond this many widths are left out of the blurred disc.
_BLUR_REACH = 5.0


@dataclass(frozen=True)
class _BlurredTable:
    coefficients: np.ndarray  # (4, m, m) cubic-spline coefficients of the segment areas
    step: float               # grid spacing in units of α
    centre: float             # index of zero shift
    reach: float              # largest shift covered, units of α


def _quantise_reach(s_max):
    return max(1.0, math.ceil((float(s_max) + 1e-9) * 4) / 4)


@functools.lru_cache(maxsize=8)
def _blurred_table(inner, outer, blur, reach, points_per_alpha=POINTS_PER_ALPHA):
    """Segment areas of the blurred disc on a grid of shifts, by FFT correlation.

    Works in the frame turned by 45° from the detector's (a = (u − v)/√2, b = (u + v)/√2),
    where the quadrant boundaries are the grid axes and the quadrant masks are exact; the
    disc edge and the collection circles are antialiased by the fraction of each pixel they
    cover. The disc is blurred by multiplying its transform by a Gaussian's.
    """
    half = 1.0 + reach + _BLUR_REACH * blur + 4.0 / points_per_alpha
    n = fft.next_fast_len(int(math.ceil(2 * half * points_per_alpha)), real=True)
    n += n % 2
    h = 2 * half / n
    c = (np.arange(n) + 0.5 - n / 2) * h  # no point on an axis
    a = c[:, None]
    b = c[None, :]
    r = np.hypot(a, b)
    edge = h * (np.abs(a) + np.abs(b)) / np.maximum(r, 1e-300)  # pixel width across a circle
    disc = np.clip(0.5 - (r - 1.0) / edge, 0.0, 1.0)
    annulus = np.ones_like(r)
    if inner > 0:
        annulus *= np.clip(0.5 + (r - inner) / edge, 0.0, 1.0)
    if math.isfinite(outer):
        annulus *= np.clip(0.5 - (r - outer) / edge, 0.0, 1.0)
    del r, edge
    spectrum = np.conj(fft.rfft2(disc))
    if blur > 0:
        fa = fft.fftfreq(n, h)[:, None]
        fb = fft.rfftfreq(n, h)[None, :]
        spectrum *= np.exp(-2 * np.pi**2 * blur**2 * (fa**2 + fb**2))
    keep = int(math.ceil((reach + 0.05) / h)) + 3
    lo, hi = n // 2 - keep, n // 2 + keep + 1
    tables = []
    for sign_a, sign_b in ((1, 1), (-1, 1), (-1, -1), (1, -1)):  # A, B, C, D
        mask = annulus * ((np.sign(a) == sign_a) & (np.sign(b) == sign_b))
        # C[m] = Σ_q D(q − m·h) M(q) h²: the area of segment k with the disc shifted by m·h.
        corr = fft.fftshift(fft.irfft2(spectrum * fft.rfft2(mask), s=(n, n))) * h * h
        tables.append(ndimage.spline_filter(corr[lo:hi, lo:hi], order=3))
    return _BlurredTable(np.array(tables), h, float(n // 2 - lo), reach)


def blurred_segment_areas(u, v, *, inner=0.0, outer=math.inf, blur=0.0, points_per_alpha=POINTS_PER_ALPHA):
    """Overlap of a blurred unit disc shifted by (u, v) with the four quadrant segments.

    The disc (radius 1, i.e. α) is convolved with a 2-D Gaussian of standard deviation
    ``blur`` (in units of α) and its overlap with each segment is computed on a grid of
    ``points_per_alpha`` points per α, then interpolated (cubic spline) at the shifts.
    With ``blur = 0`` it reproduces :func:`dpcstem.response.geometry.segment_areas` to a few parts
    in 10⁵ of the disc area, and, unlike it, it also covers shifts beyond α.

    Parameters
    ----------
    u, v : array_like
        Shift along the A and B segment axes, in units of α.
    inner, outer : float
        Collection radii in units of α (``outer`` may be ``inf``).
    blur : float
        Gaussian standard deviation of the edge blur, in units of α.
    points_per_alpha : int

    Returns
    -------
    ndarray, float64, shape (4, ...)
        Areas of A, B, C, D in units of α² (a centred disc on a full detector: π/4 each).
    """
    u, v = np.broadcast_arrays(np.asarray(u, dtype=float), np.asarray(v, dtype=float))
    blur = _validate.non_negative("edge blur", blur, what="units of alpha")
    s = np.hypot(u, v)
    s_max = float(np.max(s)) if s.size else 0.0
    if not math.isfinite(s_max) or s_max > 4:
        raise InputDataError(f"disc shifts must be finite and at most 4 α, got up to {s_max:.4g} α")
    table = _blurred_table(float(inner), float(outer), float(blur), _quantise_reach(s_max), int(points_per_alpha))
    ia = (u - v) / math.sqrt(2) / table.step + table.centre
    ib = (u + v) / math.sqrt(2) / table.step + table.centre
    coordinates = np.array([ia.ravel(), ib.ravel()])
    areas = np.array([ndimage.map_coordinates(t, coordinates, order=3, prefilter=False) for t in table.coefficients])
    return areas.reshape(4, *u.shape)
