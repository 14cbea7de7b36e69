"""Drift correction between the acquisitions of a series, on a channel that does not change with bias.

Registration must not take structure that changes with bias for specimen structure. In the
segment sum of an annular detector the layer itself shows (its field moves the disc across the
detector's edges), and that contrast grows and widens with the bias; a least-squares shift then
aligns the layers of different biases instead of the specimen. So the shift is fitted
*robustly*, and kept only on evidence:

1. The fit (iteratively reweighted Gauss–Newton, Tukey weights on the residual in noise units)
   lets the pixels whose contrast changed lose their weight; those pixels, after the best shift,
   are the changed region.
2. The pixels that stay the same must hold most of the structure of the pixels the two images
   share after the shift (:data:`STAYS_FRACTION`), with a structure SNR above
   :data:`STRUCTURE_SIGNIFICANCE` of their own, and the shift must explain them (residual down to
   the noise). Pixels the drift moves out of view, and those whose smoothed value would reach
   beyond the scan, are not compared: they are neither the same nor changed.
3. The shift must lower their residual significantly (:data:`SHIFT_SIGNIFICANCE`): one that does
   not is not applied (with images that already agree, "no drift" is the measurement), since
   any sub-pixel shift interpolates maps that hold sharp fields.
4. Its standard error (from that residual and that structure) must be within
   :data:`MAX_SHIFT_STDERR_PX`; a shift the structure fixes only to ±0.4 px is not a correction.

Otherwise no shift is applied and the registration says why, so the caller warns: a wrong shift
moves the whole net map; no shift with a warning is the honest answer.

Measured (tests/test_registration.py): a texture that stays plus a layer that grows with bias,
drift (0.6, −1.3) px: recovered within 0.03 px (a plain least-squares fit refuses it); a
noise-free texture in a 32-row strip drifted by (3, 8.5) px: within 0.005 px (counting the
pixels near the scan's edge and those the drift moves out of view put it 0.02 px off). The
multislice references of the validation suite (32 × 128 scans at 0.2 nm): the structured one
(grain in patches beside a layer that grows with bias) within 0.005 px of its drift; the one
without grain, whose sum holds the MIP step at the interface (which stays) and the layer, along
x only, 0.067 px off, nothing invented along y; without drift, no shift.

The noise floor is the larger of the image's own noise, estimated from neighbour
differences, and :data:`CONTRAST_FLOOR` of its mean level: noise-free simulations and
images whose contrast is far below their counting noise get a floor that still holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

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
#: Tukey scale (noise units of the smoothed difference, times the residual's own spread where that is larger):
#: pixels whose residual exceeds it changed.
TUKEY_SCALE = 4.685
#: Images of more pixels than this are fitted binned first (the full image only refines the result).
FIT_PIXELS = 256 * 256
#: The fit has converged when a step moves the shift by less than this (pixels).
CONVERGED_PX = 1e-3
#: Gauss–Newton steps from each start before the better one is carried on.
TRIAL_STEPS = 3
#: Pixels next to a changed one count as changed.
CHANGED_MARGIN_PX = 1
#: A shift is kept only when it lowers the chi-square of the pixels that stay by at least this.
SHIFT_SIGNIFICANCE = 25.0
#: The pixels that agree after the shift must hold at least this fraction of the image's structure
#: (gradient energy); otherwise the structure is what changed.
STAYS_FRACTION = 0.5
#: A shift whose standard error exceeds this (pixels) is not applied: below 0.1 px a shift is as good
#: as none, and a net map shifted by an unreliable amount is wrong everywhere.
MAX_SHIFT_STDERR_PX = 0.1


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
        Root of the structure-tensor eigenvalue over the noise floor's: of the whole image
        (its largest) when no shift was fitted, else of the pixels that stay the same (its
        smallest in the directions registered). Significant above ``sqrt(STRUCTURE_SIGNIFICANCE)``.
    residual_before, residual_after : float
        RMS difference of the smoothed images before and after the shift, in units of the
        noise of that difference (about 1 when the images agree to their noise).
    reason : str
        Why no shift was applied (empty when one was measured).
    shift_stderr_px : float
        Standard error of the shift (pixels, along its least certain direction), from the
        residual and the structure of the pixels that stay the same (NaN when not measured).
    """

    shift_px: tuple
    source: str
    constrained: bool = False
    structure_snr: float = math.nan
    residual_before: float = math.nan
    residual_after: float = math.nan
    reason: str = ""
    shift_stderr_px: float = math.nan

    @property
    def measured(self) -> bool:
        return self.source == "measured"


class PreparedReference:
    """A reference image prepared once for :func:`register` against every acquisition of a series.

    What depends on the reference alone (the image in float64, where it is finite) is kept
    from the start; what depends on it and on the pixels a call uses (its level and noise,
    the smoothing weights and the smoothed image, the pixels clear of the excluded region,
    its gradients and structure tensor, ...) is computed when a call first needs it and kept
    for the next call that uses the same pixels, as the acquisitions of a series usually do;
    other pixels are prepared afresh. Either way :func:`register` computes the same numbers
    as with the bare image.

    Parameters
    ----------
    reference : ndarray, shape (ny, nx)
        The reference image (a channel that does not change with bias).
    """

    def __init__(self, reference):
        self.image = np.asarray(reference, dtype=float)
        self.finite = np.isfinite(self.image)
        self._pixels = None

    @property
    def shape(self):
        return self.image.shape

    def on(self, use) -> _ReferencePixels:
        """The reference prepared over the pixels ``use`` (kept while the next call uses the same)."""
        if self._pixels is None or not np.array_equal(self._pixels.use, use):
            self._pixels = _ReferencePixels(self.image, use)
        return self._pixels


class _ReferencePixels:
    """The reference over one set of used pixels; each quantity computed once, when first asked for."""

    def __init__(self, image, use):
        self.image, self.use = image, use
        self._structured = self._binned = None

    @cached_property
    def level(self):
        return abs(float(np.mean(self.image[self.use])))

    @cached_property
    def noise_sigma(self):
        return _noise_sigma(self.image, self.use)

    @cached_property
    def local_sigma(self):
        return _local_sigma(self.image, self.use)

    @cached_property
    def weights(self):
        """The smoothing's weight at each pixel: its support's share on used pixels (shared by the moving image)."""
        return _smoothing_weights(self.use)

    @cached_property
    def inner(self):
        return self.weights > 0.99

    @cached_property
    def smoothed(self):
        return _smooth(self.image, self.use, self.weights)

    @cached_property
    def gradient(self):
        """(gy, gx) of the smoothed reference."""
        return np.gradient(self.smoothed)

    @cached_property
    def structure(self):
        return _structure(self.gradient, self.inner)

    @cached_property
    def fill(self):
        return self.smoothed[self.inner].mean()

    @cached_property
    def window(self):
        ref = self.smoothed
        return np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1])) if min(ref.shape) > 4 else 1.0

    @cached_property
    def windowed(self):
        """The smoothed reference less its mean, zero outside the inner pixels, windowed (for the phase correlation)."""
        return np.where(self.inner, self.smoothed - self.fill, 0) * self.window

    def structured(self, threshold):
        """:func:`_structured` of the smoothed reference, kept for the last ``threshold``."""
        if self._structured is None or self._structured[0] != threshold:
            self._structured = (threshold, _structured(self.gradient, self.inner, threshold))
        return self._structured[1]

    def binned(self, factor):
        """The smoothed reference and the inner pixels binned by ``factor``, kept for the last ``factor``."""
        if self._binned is None or self._binned[0] != factor:
            self._binned = (factor, _bin(self.smoothed, factor), _bin(self.inner, factor) == 1)
        return self._binned[1:]


def register(reference, moving, *, valid=None, exclude=None, upsample=20, iterations=20) -> Registration:
    """Sub-pixel shift that brings ``moving`` onto ``reference``, or none with the reason.

    1. Structure: the structure tensor of the smoothed reference (Gaussian of
       :data:`SMOOTHING_PX`), over the pixels used, against the gradient energy the noise
       floor alone gives. No direction above :data:`STRUCTURE_SIGNIFICANCE` times it: no shift.
       One direction only (a straight edge): the shift is kept to it (``constrained``).
    2. Shift: from no shift and from a windowed phase correlation (scikit-image), an
       iteratively reweighted Gauss–Newton fit on the smoothed images, over the structured
       pixels (flat ones tell nothing about a shift), with an intensity gain
       as a further unknown (a beam current that changed scales the whole image; an offset
       would let a contrast that follows the bias pass for one); the fit with the lower
       robust cost is judged.
    3. Judgement (module docstring): the pixels that agree after the shift must hold most of
       the structure and be explained by it, the shift must be significant, and its standard
       error within :data:`MAX_SHIFT_STDERR_PX`.

    Parameters
    ----------
    reference : ndarray, shape (ny, nx), or PreparedReference
        Image of a channel that does not change with bias (ADF/HAADF, or a segment sum); a
        series registers every acquisition on one :class:`PreparedReference`.
    moving : ndarray, shape (ny, nx)
        The image to bring onto it.
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

    prepared = reference if isinstance(reference, PreparedReference) else PreparedReference(reference)
    moving = np.asarray(moving, dtype=float)
    if prepared.image.ndim != 2 or prepared.shape != moving.shape:
        raise InputDataError(f"registration images must be two 2-D images of one shape, got {prepared.shape} "
                             f"and {moving.shape}")
    use = prepared.finite & np.isfinite(moving)
    if valid is not None:
        use &= np.asarray(valid, bool)
    if exclude is not None:
        use &= ~np.asarray(exclude, bool)
    if use.sum() < 16:
        return Registration((0.0, 0.0), "rejected", reason="fewer than 16 pixels left to register on")
    reference = prepared.on(use)
    sigma = max(reference.noise_sigma, _noise_sigma(moving, use), CONTRAST_FLOOR * reference.level)
    if sigma == 0:
        return Registration((0.0, 0.0), "rejected", reason="the registration image is constant")
    # The smoothing's support depends on the used pixels alone, so the inner pixels are the reference's.
    ref, inner = reference.smoothed, reference.inner
    if inner.sum() < 16:
        return Registration((0.0, 0.0), "rejected", reason="too few pixels away from the excluded region")
    noise_energy = sigma**2 * _gradient_gain()
    energies, directions = reference.structure
    snr = math.sqrt(max(energies[-1], 0.0) / noise_energy)
    significant = energies > STRUCTURE_SIGNIFICANCE * noise_energy
    if not significant.any():
        return Registration((0.0, 0.0), "rejected", structure_snr=snr,
                            reason=f"no structure above the noise (structure SNR {snr:.2f})")
    keep = directions[:, significant]  # (2, k): the directions with structure
    mov = _smooth(moving, use, reference.weights)
    # noise of a difference of the two smoothed images, where the structure is
    local = math.hypot(reference.local_sigma, _local_sigma(moving, use))
    noise_diff = max(math.sqrt(2.0) * sigma, local) * _smoothing_gain()

    fill = reference.fill
    first, _, _ = phase_cross_correlation(reference.windowed, np.where(inner, mov - fill, 0) * reference.window,
                                          upsample_factor=upsample, normalization=None)
    filled_mov = np.where(inner, mov, fill)
    del mov
    structured = reference.structured(STRUCTURE_SIGNIFICANCE * 2 * noise_energy)
    # Two starts (a layer can pull the phase correlation off), a few steps each; the better one is carried on.
    # A large image is fitted binned first, and the full one only from where that ends.
    starts = [np.zeros(2), keep @ (keep.T @ np.asarray(first, dtype=float))]
    if np.max(np.abs(starts[1])) < 0.25:
        starts = starts[:1]
    # The fit narrows its mask in place (_warp hands an unshifted one back), so it gets copies, not the reference's.
    inner = inner.copy()
    factor = int(math.sqrt(ref.size / FIT_PIXELS))
    if factor > 1:
        binned_ref, binned_inner = reference.binned(factor)
        coarse = _best_fit(binned_ref, _bin(filled_mov, factor), binned_inner.copy(), _bin(structured, factor) > 0,
                           [s / factor for s in starts], keep, noise_diff, iterations)
        starts = [coarse[0] * factor] if coarse is not None else starts
    fit = _best_fit(ref, filled_mov, inner, structured, starts, keep, noise_diff, iterations)
    if fit is None:
        return Registration((0.0, 0.0), "rejected", False, snr,
                            reason="the shift moves the structure out of the scan")
    shift, stays = fit[:2]
    return _judge(ref, filled_mov, inner, stays, shift, keep, noise_energy, noise_diff, snr, reference.gradient)


def _tukey_weights(r, c):
    """Tukey biweight weights of residuals ``r`` (noise units) at scale ``c``."""
    return np.where(np.abs(r) < c, (1 - (r / c) ** 2) ** 2, 0.0)


def _tukey_cost(r, c):
    rho = np.where(np.abs(r) < c, 1 - (1 - (r / c) ** 2) ** 3, 1.0)
    return float(np.mean(rho)) * c**2 / 6


def _warp(image, inner, shift):
    """``image`` shifted by ``shift`` (cubic spline) and where it comes wholly from ``inner``."""
    if not np.any(shift):
        return image, inner
    warped = ndimage.shift(image, shift, order=3, mode="nearest")
    ok = inner.copy()
    for dy in {math.floor(shift[0]), math.ceil(shift[0])}:  # the pixels a linear interpolation reads
        for dx in {math.floor(shift[1]), math.ceil(shift[1])}:
            ok &= _moved(inner, dy, dx)
    return warped, ok


def _moved(mask, dy, dx):
    """``mask`` moved by whole pixels (dy, dx); what comes from outside is False."""
    out = np.zeros(mask.shape, bool)
    ny, nx = mask.shape
    if abs(dy) < ny and abs(dx) < nx:
        out[max(dy, 0):ny + min(dy, 0), max(dx, 0):nx + min(dx, 0)] = \
            mask[max(-dy, 0):ny + min(-dy, 0), max(-dx, 0):nx + min(-dx, 0)]
    return out


def _gain_residual(moved, fixed, weights=None):
    """moved − gain·fixed (vectors), the gain fitted by weighted least squares, or without
    weights their median ratio (robust to a region whose level changed)."""
    if weights is None:
        nonzero = fixed != 0
        gain = float(np.median(moved[nonzero] / fixed[nonzero])) if nonzero.any() else 1.0
    else:
        den = float(np.dot(weights, fixed * fixed))
        gain = float(np.dot(weights, fixed * moved) / den) if den > 0 else 1.0
    return moved - gain * fixed


def _structured(gradient, inner, threshold):
    """The pixels the fit uses: where the gradient energy (``gradient``: (gy, gx) of the smoothed image) exceeds
    ``threshold``, two pixels around (all of ``inner`` where fewer than 16 do); flat pixels tell nothing about a shift."""
    gy, gx = gradient
    edges = inner & (gy**2 + gx**2 > threshold)
    return ndimage.binary_dilation(edges, iterations=2) & inner if edges.sum() >= 16 else inner


def _bin(image, factor):
    """Mean over blocks of ``factor`` × ``factor`` pixels (the edge rows and columns that do not fill one dropped)."""
    ny, nx = (n // factor * factor for n in image.shape)
    return image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def _best_fit(ref, mov, inner, fit, starts, keep, noise_diff, iterations):
    """The robust fit carried on from whichever start does better after :data:`TRIAL_STEPS` steps, or None."""
    if len(starts) > 1:
        trials = [f for f in (_robust_fit(ref, mov, inner, fit, s, keep, noise_diff, TRIAL_STEPS) for s in starts)
                  if f is not None]
        if not trials:
            return None
        starts = [min(trials, key=lambda f: f[2])[0]]
    return _robust_fit(ref, mov, inner, fit, starts[0], keep, noise_diff, iterations)


def _robust_fit(ref, mov, inner, fit, shift, keep, noise_diff, iterations):
    """Iteratively reweighted Gauss–Newton from ``shift``: (shift, pixels that agree, robust cost), or None.

    Tukey weights on the residual in noise units, at the scale :func:`_scale` gives: far from
    the answer most pixels still count, and as the shift converges the scale narrows to the
    noise, where the pixels whose contrast changed lose their weight (and, at the end, count as
    changed). Where strong structure leaves a residual above the noise everywhere (scan
    distortion, interpolation), the scale stays with that residual, so only what changed more
    than the rest counts as changed.
    """
    for _ in range(iterations):
        warped, ok = _warp(mov, inner, shift)
        ok &= fit
        if ok.sum() < 16:
            return None
        moved, fixed = warped[ok], ref[ok]
        r = _gain_residual(moved, fixed) / noise_diff
        scale = _scale(r)
        w = _tukey_weights(r, scale)
        if np.count_nonzero(w) < 8:
            return None
        w = _tukey_weights(_gain_residual(moved, fixed, w) / noise_diff, scale)
        gy, gx = np.gradient(warped)
        design = np.column_stack([np.column_stack([gy[ok], gx[ok]]) @ keep, fixed / noise_diff])
        weighted = design.T * w
        solution = np.linalg.lstsq(weighted @ design, weighted @ (moved - fixed), rcond=None)[0]
        step = keep @ solution[: keep.shape[1]]
        shift = shift + step
        if np.max(np.abs(step)) < CONVERGED_PX:
            break
    warped, ok = _warp(mov, inner, shift)
    if ok.sum() < 16:
        return None
    moved, fixed = warped[ok], ref[ok]
    r = _gain_residual(moved, fixed) / noise_diff
    scale = _scale(r)  # the noise, or what the residual of the pixels that agree reaches (strong structure)
    r = _gain_residual(moved, fixed, _tukey_weights(r, scale)) / noise_diff
    stays = np.zeros(ref.shape, bool)
    stays[ok] = np.abs(r) < scale
    return shift, stays, _tukey_cost(r, scale)


def _scale(r):
    """Tukey scale for residuals ``r`` (noise units): :data:`TUKEY_SCALE` times their robust spread,
    from the quartile of their magnitude (up to three quarters may be outliers), at least the noise."""
    return TUKEY_SCALE * max(1.0, float(np.quantile(np.abs(r), 0.25)) / 0.3186)


def _judge(ref, mov, inner, stays, shift, keep, noise_energy, noise_diff, snr, gradient):
    """Keep the fitted shift only if the pixels that agree after it hold most of the structure,
    it explains them, it is significant and its standard error is small (see :func:`register`).
    ``gradient``: (gy, gx) of ``ref``."""
    constrained = keep.shape[1] == 1

    def rejected(reason, snr_=snr, before=math.nan, after=math.nan, stderr=math.nan):
        return Registration((0.0, 0.0), "rejected", constrained, snr_, before, after, reason, stderr)

    def residual(shift_, pixels):
        warped = _warp(mov, inner, shift_)[0]
        return float(np.sqrt(np.mean(_gain_residual(warped[pixels], ref[pixels]) ** 2))) / noise_diff

    gy, gx = gradient
    energy = (np.column_stack([gy.ravel(), gx.ravel()]) @ keep) ** 2
    energy = energy.sum(axis=1).reshape(ref.shape)
    both = _warp(mov, inner, shift)[1]  # the pixels the shift lets us compare: outside them nothing is known
    changed = ndimage.binary_dilation(both & ~stays, iterations=CHANGED_MARGIN_PX)
    stays = stays & ~changed
    kept = float(energy[stays].sum() / energy[both].sum())
    if kept < STAYS_FRACTION or stays.sum() < 16:
        return rejected(f"a shift does not explain the change between the images ({1 - kept:.0%} of the "
                        f"structure changed beyond the noise after the best shift): the registration image "
                        "changes with bias", before=residual(np.zeros(2), both), after=residual(shift, both))
    grads = np.column_stack([gy[stays], gx[stays]]) @ keep
    weakest = float(np.linalg.eigvalsh(np.atleast_2d(grads.T @ grads) / len(grads))[0])
    stay_snr = math.sqrt(max(weakest, 0.0) / noise_energy)
    before, after = residual(np.zeros(2), stays), residual(shift, stays)
    if weakest <= STRUCTURE_SIGNIFICANCE * noise_energy:
        return rejected(f"the structure changes with the bias (structure SNR {snr:.2f} in the image, {stay_snr:.2f} "
                        "where it stays the same)", stay_snr, before, after)
    if not (after <= RESIDUAL_TOLERANCE or after <= RESIDUAL_FRACTION * before):
        return rejected(f"a shift does not explain the change between the images (residual {after:.1f}x the noise "
                        f"after the best shift, {before:.1f}x before): the registration image changes with bias",
                        stay_snr, before, after)
    # Independent samples of the smoothed residual, and the shift's standard error from them.
    samples = stays.sum() * _smoothing_gain() ** 2
    stderr = max(after, 1.0) * noise_diff / math.sqrt(samples * weakest)
    if stderr > MAX_SHIFT_STDERR_PX:
        return rejected(f"the structure that stays the same fixes the shift only to ±{stderr:.2f} px (structure "
                        f"SNR {stay_snr:.2f})", stay_snr, before, after, stderr)
    if samples * (before**2 - after**2) < SHIFT_SIGNIFICANCE:
        if before <= RESIDUAL_TOLERANCE:  # the images agree as they are: no drift to correct
            return Registration((0.0, 0.0), "measured", constrained, stay_snr, before, before, "", stderr)
        return rejected(f"no shift explains the change between the images significantly better than none "
                        f"(residual {before:.1f}x the noise before, {after:.1f}x after the best shift): the "
                        "registration image changes with bias", stay_snr, before, after, stderr)
    return Registration((float(shift[0]), float(shift[1])), "measured", constrained, stay_snr, before, after, "",
                        stderr)


#: The noise estimates read every k-th scan row of a large map, about this many pixels: the
#: median absolute deviation of n values has a relative standard error of about 1.2/√n (0.1 %
#: here), and two medians of a whole 2048² map were 60 % of a registration's time.
NOISE_SAMPLES = 2**20


def _sampled_rows(image, use):
    step = max(1, -(-image.size // NOISE_SAMPLES))
    return image[::step], use[::step]


def _noise_sigma(image, use):
    """Per-pixel noise σ from differences of horizontal neighbours that are both used (median
    absolute deviation), over :data:`NOISE_SAMPLES` pixels at most."""
    image, use = _sampled_rows(image, use)
    pair = use[:, 1:] & use[:, :-1]
    if pair.sum() < 8:
        return 0.0
    return 1.4826 * _median_deviation(np.diff(image, axis=1)[pair]) / math.sqrt(2)


def _local_sigma(image, mask):
    """Per-pixel noise σ from second differences along x over ``mask`` (median absolute
    deviation), over :data:`NOISE_SAMPLES` pixels at most."""
    image, mask = _sampled_rows(image, mask)
    triple = mask[:, 2:] & mask[:, 1:-1] & mask[:, :-2]
    if triple.sum() < 8:
        return 0.0
    d2 = (image[:, 2:] - 2 * image[:, 1:-1] + image[:, :-2])[triple]
    return 1.4826 * _median_deviation(d2) / math.sqrt(6)


def _median_deviation(values):
    """Median absolute deviation from the median of the 1-D float array ``values``, which it overwrites."""
    values -= np.median(values, overwrite_input=True)
    return float(np.median(np.abs(values, out=values), overwrite_input=True))


def _smoothing_weights(use):
    """The Gaussian (:data:`SMOOTHING_PX`) of the used pixels: the share of each pixel's smoothing on them
    (above 0.99 where its support lies wholly inside them).

    Outside the image counts as unused: near the scan's edge a smoothed value would otherwise
    repeat the edge, which is not the same specimen in two drifted scans, and those pixels
    would read as changed (in a 16-row scan drifted by 3 rows, up to 10 times the noise)."""
    return ndimage.gaussian_filter(use.astype(float), SMOOTHING_PX, mode="constant", cval=0.0)


def _smooth(image, use, weights):
    """Normalised Gaussian smoothing over the used pixels (``weights``: :func:`_smoothing_weights` of them)."""
    num = ndimage.gaussian_filter(np.where(use, image, 0.0), SMOOTHING_PX, mode="constant", cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weights > 0, num / weights, 0.0)


def _structure(gradient, inner):
    """Eigenvalues (ascending) and eigenvectors ((y, x) columns) of the structure tensor over ``inner``
    (``gradient``: (gy, gx) of the smoothed image)."""
    gy, gx = gradient
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


#: Order of the spline that shifts the maps. A map sampled finely enough for the probe (a step of
#: λ/(4α) or less) is band-limited near the sampling's Nyquist frequency, where a cubic spline
#: loses percents: on the structured bias-series reference (0.2 nm steps, 2 mrad) the truth's own
#: field, shifted back by the exact drift, misses the undrifted scan by 6.8 % of the layer's net
#: field with a cubic spline and by 0.6 % with a quintic one.
SHIFT_SPLINE_ORDER = 5


def shift_map(values, shift_px, valid=None):
    """Shift a map by (dy, dx) pixels (spline of :data:`SHIFT_SPLINE_ORDER`); pixels that leave the scan become NaN.

    Returns the shifted map (float64; with no shift, a floating-point map keeps its dtype) and
    its validity: a pixel is valid where it came from inside the scan and from valid pixels
    (the 6×6 neighbourhood the quintic spline reads).
    """
    values = np.asarray(values)
    if values.dtype.kind != "f":
        values = values.astype(float)
    ok = np.isfinite(values) if valid is None else (np.asarray(valid, bool) & np.isfinite(values))
    if tuple(shift_px) == (0.0, 0.0):
        return np.where(ok, values, np.nan), ok
    values = values.astype(float, copy=False)
    mean = values[ok].mean() if ok.any() else 0.0
    shifted = ndimage.shift(np.where(ok, values, mean), shift_px, order=SHIFT_SPLINE_ORDER, mode="nearest")
    reach = SHIFT_SPLINE_ORDER // 2  # beyond the two pixels a linear interpolation reads
    support = ndimage.binary_erosion(ok, np.ones((2 * reach + 1, 2 * reach + 1), bool), border_value=1)
    weight = ndimage.shift(support.astype(float), shift_px, order=1, mode="constant", cval=0.0)
    good = weight > 1 - 1e-6
    return np.where(good, shifted, np.nan), good
