"""Drift correction between the acquisitions of a series, on a channel that does not change with bias.

A shift is measured only when the registration image has structure that stands above its
noise, and kept only when it *explains* the moving image: after the shift the two images
differ by no more than their noise. Otherwise no shift is applied and the registration says
why, so the caller can warn (a wrong shift moves the whole net map; no shift with a
warning is the honest answer).

The noise floor is the larger of the image's own noise, estimated from neighbour
differences, and :data:`CONTRAST_FLOOR` of its mean level: noise-free simulations and
images whose contrast is far below their counting noise get a floor that still holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputDataError

#: Relative contrast (a fraction of the image's mean level) below which nothing is structure,
#: whatever the noise estimate says: a noise-free image has a noise estimate near zero, and
#: then contrast at the 1e-6 level would set the shift.
CONTRAST_FLOOR = 1e-3
#: A direction has structure when its mean squared gradient (of the smoothed image) exceeds
#: this many times what the noise floor alone gives (a structure SNR of 2).
STRUCTURE_SIGNIFICANCE = 4.0
#: A shift explains the moving image when the residual after it, in units of the noise a
#: difference of the two (smoothed) images carries, is at most this …
RESIDUAL_TOLERANCE = 2.0
#: … or at most this fraction of the residual before it (strong structure, where the
#: shift's last thousandth of a pixel shows above the noise).
RESIDUAL_FRACTION = 0.1
#: Gaussian smoothing (pixels) of the images whose gradients judge structure and set the shift.
SMOOTHING_PX = 2.0


@dataclass(frozen=True)
class Registration:
    """The shift (dy, dx) in pixels that aligns one image onto the reference, and the evidence for it.

    Attributes
    ----------
    shift_px : (float, float)
        (dy, dx) to apply to the moving map (:func:`shift_map`); (0, 0) when none was applied.
    source : str
        ``"measured"`` (found and kept), ``"rejected"`` (no reliable shift: see ``reason``),
        ``"user"`` (given by hand), ``"none"`` (registration off) or ``"reference"``.
    constrained : bool
        The image had structure in one direction only; the shift was kept to it.
    structure_snr : float
        Root of the largest structure-tensor eigenvalue over the noise floor's (NaN when
        not measured). Structure is significant above ``sqrt(STRUCTURE_SIGNIFICANCE)``.
    residual_before, residual_after : float
        RMS difference of the smoothed images before and after the shift, in units of the
        noise of that difference (about 1 when the images agree to their noise).
    reason : str
        Why no shift was applied (empty when one was measured).
    """

    shift_px: tuple
    source: str
    constrained: bool = False
    structure_snr: float = math.nan
    residual_before: float = math.nan
    residual_after: float = math.nan
    reason: str = ""

    @property
    def measured(self) -> bool:
        return self.source == "measured"


def register(reference, moving, *, valid=None, exclude=None, upsample=20, iterations=20) -> Registration:
    """Sub-pixel shift that brings ``moving`` onto ``reference``, or none with the reason.

    1. Structure: the structure tensor of the smoothed reference (Gaussian of
       :data:`SMOOTHING_PX`), over the pixels used, against the gradient energy the noise
       floor alone gives. No direction above :data:`STRUCTURE_SIGNIFICANCE` times it: no shift.
       One direction only (a straight edge): the shift is kept to it (``constrained``).
    2. Shift: a windowed phase correlation (scikit-image) gives a first estimate, then
       Gauss–Newton least squares on the smoothed images, over the structured pixels, with
       an intensity gain as a further unknown (a beam current that changed scales the
       whole image; an offset would let a contrast that follows the bias pass for one).
    3. Check: the residual after the shift must fall to the noise of a difference of the two
       images (:data:`RESIDUAL_TOLERANCE`), or to a small fraction of the residual before it
       (:data:`RESIDUAL_FRACTION`); otherwise the image changed otherwise than by a shift
       (a layer whose contrast follows the bias), and no shift is applied.

    Parameters
    ----------
    reference, moving : ndarray, shape (ny, nx)
        Images of a channel that does not change with bias (ADF/HAADF, or a segment sum).
    valid : ndarray of bool, optional
        Pixels to use in both images.
    exclude : ndarray of bool, optional
        Pixels to leave out (a region whose contrast changes with bias, e.g. the interface band).
    upsample : int
        Precision 1/upsample (px) of the first estimate.
    iterations : int
        Largest number of Gauss–Newton steps.

    Returns
    -------
    Registration
    """
    from skimage.registration import phase_cross_correlation

    reference = np.asarray(reference, dtype=float)
    moving = np.asarray(moving, dtype=float)
    if reference.ndim != 2 or reference.shape != moving.shape:
        raise InputDataError(f"registration images must be two 2-D images of one shape, got {reference.shape} "
                             f"and {moving.shape}")
    use = np.isfinite(reference) & np.isfinite(moving)
    if valid is not None:
        use &= np.asarray(valid, bool)
    if exclude is not None:
        use &= ~np.asarray(exclude, bool)
    if use.sum() < 16:
        return Registration((0.0, 0.0), "rejected", reason="fewer than 16 pixels left to register on")
    level = abs(float(np.mean(reference[use])))
    sigma = max(_noise_sigma(reference, use), _noise_sigma(moving, use), CONTRAST_FLOOR * level)
    if sigma == 0:
        return Registration((0.0, 0.0), "rejected", reason="the registration image is constant")
    ref, inner = _smooth(reference, use)
    mov, inner_m = _smooth(moving, use)
    inner &= inner_m
    if inner.sum() < 16:
        return Registration((0.0, 0.0), "rejected", reason="too few pixels away from the excluded region")
    energies, directions = _structure(ref, inner)
    noise_energy = sigma**2 * _gradient_gain()
    snr = math.sqrt(max(energies[-1], 0.0) / noise_energy)
    significant = energies > STRUCTURE_SIGNIFICANCE * noise_energy
    if not significant.any():
        return Registration((0.0, 0.0), "rejected", structure_snr=snr,
                            reason=f"no structure above the noise (structure SNR {snr:.2f})")
    constrained = not significant.all()
    keep = directions[:, significant]  # (2, k): the directions with structure
    gy, gx = np.gradient(ref)
    edges = inner & (gy**2 + gx**2 > STRUCTURE_SIGNIFICANCE * 2 * noise_energy)
    edges = ndimage.binary_dilation(edges, iterations=2) & inner if edges.sum() >= 16 else inner

    fill = ref[inner].mean()
    window = np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1])) if min(ref.shape) > 4 else 1.0
    first, _, _ = phase_cross_correlation(np.where(inner, ref - fill, 0) * window,
                                          np.where(inner, mov - fill, 0) * window,
                                          upsample_factor=upsample, normalization=None)
    shift = keep @ (keep.T @ np.asarray(first, dtype=float))
    # noise of a difference of the two smoothed images
    noise_diff = math.sqrt(2.0) * sigma * _smoothing_gain()
    before = _residual(ref, mov, np.zeros(2), edges, inner)
    after = math.nan
    filled_mov = np.where(inner, mov, fill)
    for _ in range(iterations):
        warped = ndimage.shift(filled_mov, shift, order=3, mode="nearest")
        moved_ok = ndimage.shift(inner.astype(float), shift, order=1, mode="constant", cval=0.0) > 1 - 1e-6
        use_now = edges & moved_ok
        if use_now.sum() < 8:
            return Registration((0.0, 0.0), "rejected", constrained, snr,
                                reason="the shift moves the structure out of the scan")
        wy, wx = np.gradient(warped)
        diff = (warped - ref)[use_now]
        gradients = np.column_stack([wy[use_now], wx[use_now]]) @ keep
        design = np.column_stack([gradients, ref[use_now]])
        solution = np.linalg.lstsq(design, diff, rcond=None)[0]
        step = keep @ solution[: keep.shape[1]]
        shift = shift + step
        if np.max(np.abs(step)) < 1e-4:
            break
    after = _residual(ref, mov, shift, edges, inner)
    # The noise where the residual is taken: second differences cancel the structure's slope,
    # and a count-like image is noisier on its structure than on its background.
    local = math.hypot(_local_sigma(reference, edges & use), _local_sigma(moving, edges & use))
    noise_diff = max(noise_diff, local * _smoothing_gain())
    before_n, after_n = before / noise_diff, after / noise_diff
    if not (after_n <= RESIDUAL_TOLERANCE or after_n <= RESIDUAL_FRACTION * before_n):
        return Registration((0.0, 0.0), "rejected", constrained, snr, before_n, after_n,
                            reason=f"a shift does not explain the change between the images (residual "
                                   f"{after_n:.1f}x the noise after the best shift, {before_n:.1f}x before): the "
                                   "registration image changes with bias")
    return Registration((float(shift[0]), float(shift[1])), "measured", constrained, snr, before_n, after_n)


def _noise_sigma(image, use):
    """Per-pixel noise σ from differences of horizontal neighbours that are both used (median absolute deviation)."""
    pair = use[:, 1:] & use[:, :-1]
    if pair.sum() < 8:
        return 0.0
    diff = np.diff(image, axis=1)[pair]
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2))


def _local_sigma(image, mask):
    """Per-pixel noise σ from second differences along x over ``mask`` (median absolute deviation)."""
    triple = mask[:, 2:] & mask[:, 1:-1] & mask[:, :-2]
    if triple.sum() < 8:
        return 0.0
    d2 = (image[:, 2:] - 2 * image[:, 1:-1] + image[:, :-2])[triple]
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6))


def _smooth(image, use):
    """Normalised Gaussian smoothing over the used pixels, and where its support lies wholly inside them."""
    w = use.astype(float)
    num = ndimage.gaussian_filter(np.where(use, image, 0.0), SMOOTHING_PX, mode="nearest")
    den = ndimage.gaussian_filter(w, SMOOTHING_PX, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = np.where(den > 0, num / den, 0.0)
    return smooth, den > 0.99


def _structure(smoothed, inner):
    """Eigenvalues (ascending) and eigenvectors ((y, x) columns) of the structure tensor over ``inner``."""
    gy, gx = np.gradient(smoothed)
    gy, gx = gy[inner], gx[inner]
    tensor = np.array([[np.mean(gy * gy), np.mean(gy * gx)], [np.mean(gx * gy), np.mean(gx * gx)]])
    return np.linalg.eigh(tensor)


def _impulse():
    size = int(8 * SMOOTHING_PX) | 1
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1.0
    return ndimage.gaussian_filter(impulse, SMOOTHING_PX, mode="constant")


def _gradient_gain():
    """Mean squared gradient along one direction per unit noise variance, after the smoothing."""
    return float(np.sum(np.gradient(_impulse(), axis=1) ** 2))


def _smoothing_gain():
    """Standard deviation of smoothed white noise per unit σ."""
    return float(math.sqrt(np.sum(_impulse() ** 2)))


def _residual(ref, mov, shift, edges, inner):
    """RMS of (shifted moving − gain·reference) over the structured pixels both images cover."""
    fill = ref[inner].mean()
    warped = ndimage.shift(np.where(inner, mov, fill), shift, order=3, mode="nearest")
    ok = edges & (ndimage.shift(inner.astype(float), shift, order=1, mode="constant", cval=0.0) > 1 - 1e-6)
    if ok.sum() < 8:
        return math.inf
    gain = float(np.dot(warped[ok], ref[ok]) / np.dot(ref[ok], ref[ok])) if np.any(ref[ok]) else 1.0
    return float(np.sqrt(np.mean((warped[ok] - gain * ref[ok]) ** 2)))


def shift_map(values, shift_px, valid=None):
    """Shift a map by (dy, dx) pixels (cubic spline); pixels that leave the scan become NaN.

    Returns the shifted map (float64) and its validity: a pixel is valid where it came from
    inside the scan and from valid pixels (the 4×4 neighbourhood the spline reads).
    """
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values) if valid is None else (np.asarray(valid, bool) & np.isfinite(values))
    if tuple(shift_px) == (0.0, 0.0):
        return np.where(ok, values, np.nan), ok
    mean = values[ok].mean() if ok.any() else 0.0
    shifted = ndimage.shift(np.where(ok, values, mean), shift_px, order=3, mode="nearest")
    support = ndimage.binary_erosion(ok, np.ones((3, 3), bool), border_value=1)
    weight = ndimage.shift(support.astype(float), shift_px, order=1, mode="constant", cval=0.0)
    good = weight > 1 - 1e-6
    return np.where(good, shifted, np.nan), good
