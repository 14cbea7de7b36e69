"""Relative thickness t/λ = ln(I_t/I_0) of a low-loss spectrum or spectrum image (the log-ratio method).

R. F. Egerton, *Electron Energy-Loss Spectroscopy in the Electron Microscope*, 3rd ed.,
Springer (2011), doi:10.1007/978-1-4419-9583-4, §5.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _validate
from ..errors import InputDataError
from .spectrum import as_spectrum, is_dask

@dataclass(frozen=True, eq=False)
class LogRatioResult:
    """t/λ by the log-ratio method, with the integration windows used.

    For one spectrum every field is a number (the windows of shape (2,)); for a spectrum
    image each is a map of the navigation shape (windows (..., 2)). Pixels where no
    zero-loss peak could be integrated (NaN data, no positive intensity) are NaN.

    Attributes
    ----------
    t_over_lambda : float or ndarray
        ln(I_t / I_0), dimensionless.
    zero_loss_counts : float or ndarray
        I_0, the counts in the zero-loss window.
    total_counts : float or ndarray
        I_t, the counts in the total window.
    zlp_window_ev : ndarray, shape (..., 2)
        Low and high energy (eV) of the zero-loss window: outer edges of the first and last
        channels summed. Each edge is the first minimum of the spectrum below half the peak
        on that side of the zero-loss maximum (the spectrum's end where there is none); see
        :func:`log_ratio`.
    total_window_ev : ndarray, shape (..., 2)
        Low and high energy (eV) of the total window: from the zero-loss window's low edge
        to the end of the spectrum (or ``energy_max_ev``).
    zlp_position_ev : float or ndarray
        Energy of the zero-loss maximum in eV (channel centre).
    zlp_fwhm_ev : float or ndarray
        Full width at half maximum of the zero-loss peak in eV (linear interpolation).
    """

    t_over_lambda: object
    zero_loss_counts: object
    total_counts: object
    zlp_window_ev: np.ndarray
    total_window_ev: np.ndarray
    zlp_position_ev: object
    zlp_fwhm_ev: object

    @property
    def valid(self):
        """True where t/λ could be computed (a bool, or a map of the navigation shape)."""
        return np.isfinite(self.t_over_lambda)


_SMOOTH_PER_FWHM = 0.25  # Gaussian σ of the smoothing, in zero-loss FWHMs
_N_OUT = 8  # t/λ, I0, It, zlp low, zlp high, total high, position, fwhm


def _half_max_crossings(values, peak, half):
    """Half-maximum crossings (fractional channels) left and right of ``peak`` in each row, NaN if none."""
    m, n = values.shape
    rows = np.arange(m)
    idx = np.arange(n)
    under = values < half[:, None]
    right = under & (idx > peak[:, None])
    left = under & (idx < peak[:, None])
    jr = np.where(right.any(axis=1), right.argmax(axis=1), n - 1)
    jl = np.where(left.any(axis=1), n - 1 - left[:, ::-1].argmax(axis=1), 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xr = jr - 1 + (values[rows, jr - 1] - half) / (values[rows, jr - 1] - values[rows, jr])
        xl = jl + (half - values[rows, jl]) / (values[rows, jl + 1] - values[rows, jl])
    return np.where(left.any(axis=1), xl, np.nan), np.where(right.any(axis=1), xr, np.nan)


def _zlp_peak(smooth, lo_search, hi_search):
    segment = smooth[:, lo_search:hi_search + 1]
    peak = lo_search + np.where(np.isfinite(segment), segment, -np.inf).argmax(axis=1)
    return peak, smooth[np.arange(smooth.shape[0]), peak]


def _log_ratio_rows(counts, offset, step, lo_search, hi_search, end):
    """The log-ratio of each row of ``counts`` (m, n); returns (m, _N_OUT) float64. No validation."""
    from scipy.ndimage import gaussian_filter1d

    data = np.asarray(counts, dtype=np.float64)
    m, n = data.shape
    out = np.full((m, _N_OUT), np.nan)
    if m == 0:
        return out
    rows = np.arange(m)
    idx = np.arange(n)
    bad = ~np.isfinite(data[:, :end]).all(axis=1)
    # The zero-loss width, from the spectrum smoothed over one channel, sets the smoothing
    # under which the minima are looked for: wide enough that counting noise makes no false
    # minimum on the peak's flanks, narrow beside the plasmon valley.
    light = gaussian_filter1d(data, 1.0, axis=-1, mode="nearest")
    peak, height = _zlp_peak(light, lo_search, hi_search)
    xl, xr = _half_max_crossings(light, peak, height / 2.0)
    widths = (xr - xl)[~bad & np.isfinite(xr - xl)]
    sigma = max(1.0, _SMOOTH_PER_FWHM * float(np.median(widths))) if widths.size else 1.0
    smooth = gaussian_filter1d(data, sigma, axis=-1, mode="nearest")
    peak, height = _zlp_peak(smooth, lo_search, hi_search)
    bad |= ~(height > 0)
    below = smooth < (height / 2.0)[:, None]
    # Right edge: first channel past the peak, below half maximum, after which the spectrum rises.
    rises = np.zeros_like(below)
    rises[:, :-1] = smooth[:, 1:] > smooth[:, :-1]
    right = below & rises & (idx > peak[:, None]) & (idx < end)
    hi = np.where(right.any(axis=1), right.argmax(axis=1), end - 1)
    # Left edge: last channel before the peak, below half maximum, before which the spectrum falls.
    falls = np.zeros_like(below)
    falls[:, 1:] = smooth[:, :-1] > smooth[:, 1:]
    left = below & falls & (idx < peak[:, None])
    lo = np.where(left.any(axis=1), n - 1 - left[:, ::-1].argmax(axis=1), 0)
    # The smoothing moves a minimum by up to about σ: take the lowest lightly smoothed channel
    # within 2σ of each edge, on the same side of the peak.
    reach = np.arange(-math.ceil(2 * sigma), math.ceil(2 * sigma) + 1)
    near = np.clip(hi[:, None] + reach, np.minimum(peak + 1, end - 1)[:, None], end - 1)
    hi = np.where(right.any(axis=1), near[rows, light[rows[:, None], near].argmin(axis=1)], hi)
    near = np.clip(lo[:, None] + reach, 0, np.maximum(peak - 1, 0)[:, None])
    lo = np.where(left.any(axis=1), near[rows, light[rows[:, None], near].argmin(axis=1)], lo)

    cumulative = np.zeros((m, n + 1))
    np.cumsum(np.nan_to_num(data), axis=1, out=cumulative[:, 1:])
    i0 = cumulative[rows, hi + 1] - cumulative[rows, lo]
    it = cumulative[rows, end] - cumulative[rows, lo]
    bad |= ~(i0 > 0) | ~(it > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_over_lambda = np.log(it / i0)
    # FWHM reported from the counts themselves (half-maximum crossings interpolated linearly).
    raw_xl, raw_xr = _half_max_crossings(data, peak, data[rows, peak] / 2.0)

    out[:, 0] = t_over_lambda
    out[:, 1] = i0
    out[:, 2] = it
    out[:, 3] = offset + (lo - 0.5) * step
    out[:, 4] = offset + (hi + 0.5) * step
    out[:, 5] = offset + (end - 0.5) * step
    out[:, 6] = offset + peak * step
    out[:, 7] = (raw_xr - raw_xl) * step
    out[bad] = np.nan
    return out


def log_ratio(spectrum, *, energy_axis=None, zlp_search_ev=5.0, energy_max_ev=None) -> LogRatioResult:
    """Relative thickness t/λ = ln(I_t / I_0) of a low-loss spectrum or spectrum image.

    Parameters
    ----------
    spectrum : array_like, dask array, HyperSpy signal or Spectrum
        Low-loss intensities, energy axis last, shape (..., n_energy), with the zero-loss
        peak inside. Counts per channel with the dark reference removed; NaN pixels give
        NaN. See :func:`as_spectrum`.
    energy_axis : (float, float), optional
        (offset_ev, step_ev), needed for plain arrays.
    zlp_search_ev : float
        The zero-loss peak is the maximum within ±``zlp_search_ev`` eV of 0 eV.
    energy_max_ev : float, optional
        Highest energy loss (eV) counted in I_t; the end of the spectrum by default. Set it
        below the first core-loss edge when the spectrum reaches one.

    Returns
    -------
    LogRatioResult
        Numbers for one spectrum; maps of the navigation shape for a spectrum image.

    Raises
    ------
    InputDataError
        When the energy axis does not reach 0 eV within the search range, the spectrum is
        too short, or (for one spectrum) no positive zero-loss intensity can be found.

    Notes
    -----
    I_0 is the sum of the counts between the first minima either side of the zero-loss
    maximum, I_t the sum from the same low edge to the end. The minima are looked for below
    half the peak height on the spectrum smoothed by a Gaussian of σ = FWHM/4 (the zero-loss
    width measured on the spectrum smoothed over one channel), so that counting noise on the
    peak's flanks makes no false minimum, then placed at the lowest channel of the spectrum
    smoothed over one channel within 2σ. The method assumes Poisson statistics of
    the inelastic events (Egerton 2011, §5.1.1); the spectrum should extend to several plasmon
    energies beyond the last significant multiple-scattering peak (for t/λ ≈ 3, beyond
    about 10 plasmon energies) or I_t is short.

    Examples
    --------
    >>> e = -5 + 0.1 * np.arange(1000)
    >>> zlp = np.exp(-0.5 * (e / 0.4) ** 2)
    >>> plasmon = np.where(e > 3, np.exp(-0.5 * ((e - 20) / 4) ** 2), 0.0)
    >>> s = 1e5 * (zlp / zlp.sum() + 0.5 * plasmon / plasmon.sum())
    >>> round(log_ratio(s, energy_axis=(-5, 0.1)).t_over_lambda, 3)  # ln(1.5)
    0.405
    """
    spec = as_spectrum(spectrum, energy_axis=energy_axis)
    where = spec.source or "spectrum"
    shape = tuple(spec.counts.shape)
    if len(shape) < 1 or shape[-1] < 3:
        raise InputDataError(f"{where}: a spectrum needs at least 3 energy channels, got shape {shape}")
    n = shape[-1]
    if spec.counts.dtype.kind not in "uif":
        raise InputDataError(f"{where}: spectrum intensities must be numbers, got dtype {spec.counts.dtype}")
    search = _validate.positive("zlp_search_ev", zlp_search_ev, what="in eV")
    offset, step = spec.energy_offset_ev, spec.energy_step_ev
    e_last = offset + (n - 1) * step
    lo_search = max(0, math.ceil((-search - offset) / step))
    hi_search = min(n - 1, math.floor((search - offset) / step))
    if lo_search > hi_search:
        raise InputDataError(
            f"{where}: the energy axis runs from {offset:g} to {e_last:g} eV and has no channel within "
            f"±{search:g} eV of 0 eV, where the zero-loss peak is looked for; calibrate the energy axis "
            "(offset and step in eV) so that the zero-loss peak sits at 0 eV")
    end = n
    if energy_max_ev is not None:
        emax = float(energy_max_ev)
        if not math.isfinite(emax) or emax <= search:
            raise InputDataError(
                f"{where}: energy_max_ev must exceed the zero-loss search range ({search:g} eV), got {energy_max_ev!r}")
        end = min(n, math.floor((emax - offset) / step) + 1)
    if end <= hi_search + 1:
        raise InputDataError(f"{where}: the spectrum ends at {e_last:g} eV, inside the zero-loss peak search range")

    nav = shape[:-1]
    args = (offset, step, lo_search, hi_search, end)

    def rows_of(block):  # spectra in slabs of about a million channels: small temporaries
        flat = np.asarray(block).reshape(-1, n)
        rows = max(1, (1 << 20) // n)
        out = [_log_ratio_rows(flat[i:i + rows], *args) for i in range(0, flat.shape[0], rows)]
        return (np.concatenate(out) if out else np.empty((0, _N_OUT))).reshape(*block.shape[:-1], _N_OUT)

    if is_dask(spec.counts):
        counts = spec.counts.rechunk({len(shape) - 1: -1})
        out = counts.map_blocks(rows_of, dtype=np.float64, chunks=counts.chunks[:-1] + ((_N_OUT,),)).compute()
    else:
        out = rows_of(spec.counts)

    if not nav:
        if not np.isfinite(out[0]):
            raise InputDataError(
                f"{where}: no positive zero-loss intensity found within ±{search:g} eV of 0 eV (or the spectrum "
                "holds NaN); the log-ratio needs a spectrum whose zero-loss peak is inside the energy range")
        scalar = [float(v) for v in out]
        return LogRatioResult(scalar[0], scalar[1], scalar[2], np.array(scalar[3:5]), np.array([scalar[3], scalar[5]]),
                              scalar[6], scalar[7])
    return LogRatioResult(out[..., 0], out[..., 1], out[..., 2], out[..., 3:5].copy(),
                          np.stack([out[..., 3], out[..., 5]], axis=-1), out[..., 6], out[..., 7])
