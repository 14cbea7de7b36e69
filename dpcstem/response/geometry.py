"""The response of a four-quadrant annular detector to a shifted bright-field disc.

Geometry (DESIGN.md §3): a uniform disc of radius α (the convergence semi-angle) is shifted
by θ = s·α. Four quadrant segments A, B, C, D lie between collection angles β_in and β_out,
centred at azimuths 0°, 90°, 180°, 270° of the *detector frame* (the frame whose first axis
is segment A's; 
:meth:`dpcstem.Calibration.to_scan_frame` maps it to the scan frame). The
counts in a segment are the overlap area of the disc with it.

Everything here works in units of α: a shift (u, v) along the A and B axes, collection radii
``inner = β_in/α`` and ``outer = β_out/α``. The normalised difference signals are
``dA = (A − C)/(A + B + C + D)`` and ``dB = (B − D)/(A + B + C + D)``.

The overlap has a closed form while the disc covers the detector centre (s < 1): along
azimuth t from the shift direction the disc edge lies at ρ(t) = s·cos t + sqrt(1 − s² sin² t),
and ½∫ρ² dt = G(t) = ½[t + ½s² sin 2t + w·sqrt(1 − w²) + arcsin w] with w = s·sin t. ρ(t) ≥ r
exactly where |t| ≤ T(r), cos T(r) = (r² + s² − 1)/(2rs), so a segment's area is a sum of
G differences and constant-radius sector terms.

References
----------
Close, Chen, Shibata, Findlay, Ultramicroscopy 159 (2015) 124, doi:10.1016/j.ultramic.2015.09.002
Brown et al., Ultramicroscopy 182 (2017) 169, doi:10.1016/j.ultramic.2017.07.002
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputDataError

#: Largest shift (in units of α) the exact inversion covers; the model needs s < 1.
S_MAX = 0.98
_SEGMENT_CENTRES = np.arange(4) * (np.pi / 2)
_HALF_WIDTH = np.pi / 4


def _edge_angle(r, s):
    """T(r): the disc edge lies beyond radius r for |t| ≤ T(r) (t from the shift direction)."""
    if r == 0:
        return np.full_like(s, np.pi)
    if math.isinf(r):
        return np.zeros_like(s)
    c = (r * r + s * s - 1.0) / (2.0 * r * s)
    return np.arccos(np.clip(c, -1.0, 1.0))


def _g(t, s):
    """Antiderivative of ρ(t)²/2."""
    w = s * np.sin(t)
    return 0.5 * (t + 0.5 * s * s * np.sin(2 * t) + w * np.sqrt(np.clip(1 - w * w, 0, None)) + np.arcsin(w))


def _clipped(a, b, big_t, s, *, with_integral=True):
    """Length of [a, b] ∩ [−T, T] and ∫ρ²/2 over it."""
    lo = np.maximum(a, -big_t)
    hi = np.minimum(b, big_t)
    inside = hi > lo
    length = np.where(inside, hi - lo, 0.0)
    if not with_integral:
        return length, None
    integral = np.where(inside, _g(np.where(inside, hi, 0), s) - _g(np.where(inside, lo, 0), s), 0.0)
    return length, integral


def segment_areas(u, v, *, inner=0.0, outer=math.inf):
    """Overlap of a unit disc shifted by (u, v) with the four quadrant segments.

    Parameters
    ----------
    u, v : array_like
        Shift of the disc along the A and B segment axes, in units of α. Must have
        sqrt(u² + v²) < 1 (the disc covers the detector centre).
    inner, outer : float
        Inner and outer collection radii in units of α (``outer`` may be ``inf``).

    Returns
    -------
    ndarray, shape (4, ...)
        Areas of A, B, C, D in units of α²; a centred disc on a full detector gives π/4 each.
    """
    u, v = np.broadcast_arrays(np.asarray(u, dtype=float), np.asarray(v, dtype=float))
    s = np.hypot(u, v)
    if np.any(s >= 1):
        raise InputDataError(f"the exact detector model needs shifts below α (s < 1), got s up to {s.max():.3f}")
    s = np.maximum(s, 1e-12)
    phi_s = np.arctan2(v, u)
    t_in = _edge_angle(inner, s)
    t_out = _edge_angle(outer, s)
    areas = np.empty((4, *s.shape))
    for k, centre in enumerate(_SEGMENT_CENTRES):
        a = np.mod(centre - _HALF_WIDTH - phi_s + np.pi, 2 * np.pi) - np.pi  # in [−π, π)
        b = a + 2 * _HALF_WIDTH
        area = np.zeros_like(s)
        # The segment may wrap past +π: split it into [a, min(b, π)] and [−π, b − 2π].
        for lo, hi in ((a, np.minimum(b, np.pi)), (np.full_like(a, -np.pi), np.maximum(b - 2 * np.pi, -np.pi))):
            len_in, int_in = _clipped(lo, hi, t_in, s)
            area += int_in - 0.5 * inner**2 * len_in
            if not math.isinf(outer):
                len_out, int_out = _clipped(lo, hi, t_out, s)
                area += -(int_out - 0.5 * inner**2 * len_out) + 0.5 * (outer**2 - inner**2) * len_out
        areas[k] = area
    return areas


def shift_signals(u, v, *, inner=0.0, outer=math.inf):
    """Normalised differences (dA, dB) and the total S = A+B+C+D the model gives for a shift (u, v) in units of α.

    Examples
    --------
    >>> d_a, d_b, total = shift_signals(0.1, 0.0)
    >>> round(float(d_a), 4), round(float(d_b), 12)
    (0.09, 0.0)
    """
    a, b, c, d = segment_areas(u, v, inner=inner, outer=outer)
    total = a + b + c + d
    return (a - c) / total, (b - d) / total, total


def difference_signals(segments, *, gains=None, offsets=None):
    """Normalised differences dA = (A−C)/S, dB = (B−D)/S and the sum S of segment counts.

    The one place where counts become difference signals (the fused kernel does the same
    per pixel, in :mod:`dpcstem.kernels.segments`).

    Parameters
    ----------
    segments : array_like, shape (4, ...)
        Counts of A, B, C, D (e.g. (4, n) means over vacuum scans at n tilts).
    gains, offsets : array_like, shape (4,), optional
        True counts = (raw − offset) / gain.

    Returns
    -------
    d_a, d_b, total : ndarray, float64, shape (...)
        NaN or inf where the sum is zero.

    Examples
    --------
    >>> d_a, d_b, total = difference_signals([3.0, 1.0, 1.0, 1.0])
    >>> float(d_a), float(d_b), float(total)
    (0.3333333333333333, 0.0, 6.0)
    """
    from .. import _validate

    seg = np.asarray(segments, dtype=np.float64)
    if seg.ndim < 1 or seg.shape[0] != 4:
        raise InputDataError(f"segments must have A, B, C, D along the first axis, got shape {seg.shape}")
    extra = (1,) * (seg.ndim - 1)
    if offsets is not None:
        seg = seg - _validate.four("offsets", offsets).reshape(4, *extra)
    if gains is not None:
        seg = seg / _validate.four("gains", gains, positive_only=True).reshape(4, *extra)
    total = seg.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (seg[0] - seg[2]) / total, (seg[1] - seg[3]) / total, total
