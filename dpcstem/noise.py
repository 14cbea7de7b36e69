"""Uncertainty maps from counting statistics: deflection, field and charge density.

The electrons that reach each segment are Poisson-distributed and the segments are
independent; the corrected counts ``c = (raw − offset)/gain`` of a detector that gives g
counts per electron have variance g·c. Linear error propagation carries this through

1. the normalised differences dA = (A−C)/S and dB = (B−D)/S (which share S, so they are
   correlated): var dA = g((A+C)/S − dA²)/S, var dB = g((B+D)/S − dB²)/S,
   cov(dA, dB) = −g·dA·dB/S;
2. the inverse detector response (u, v)(dA, dB), through its Jacobian: the numerical
   derivative of the inverse table (exact and empirical responses) or 1/slope (linear);
3. the rotation into the scan frame and the factor α: θ = α·Mᵀ(u, v), M the segment axes;
4. the field E = −(pv/e)·θ/t;
5. the divergence: the finite-difference stencil of :func:`dpcstem.kernels.divergence`
   (central differences of independent pixels, one-sided where a neighbour is invalid), or
   the spectral divergence's window (its kernel squared, convolved with the variance map).

Each pixel's deflection comes from its own counts, so pixels are independent, and only the
x and y components of one pixel are correlated. Counting noise only: detector read noise,
scan noise and drift are not in these maps.
"""

from __future__ import annotations


import numpy as np
from scipy import fft

from . import _validate, physics
from .calibration import Calibration
from .calibration.gains import gains_from_vacuum
from .errors import CalibrationError, InputDataError
from .fourier import lowpass_window
from .options import ReconstructionOptions, check_options
from .reconstruct import check_segments, segment_deflection
from .response import LinearResponse, response_model
from .response.geometry import difference_signals, segment_areas


def deflection_covariance(segments, calibration: Calibration, *, options: ReconstructionOptions | None = None,
                          dose=None, counts_per_electron=None, vacuum=None, valid=None):
    """Variance and covariance of the deflection from the counting noise of the segments.

    Parameters
    ----------
    segments : array_like, shape (4, ny, nx)
        Segment images A, B, C, D in counts (as given to :func:`~dpcstem.reconstruct.reconstruct`).
    calibration : Calibration
    options : ReconstructionOptions, optional
        The options the deflection is reconstructed with (its response, gains, offsets):
        corrected counts are (raw − offset)/gain.
    dose : float, optional
        Mean electrons per probe position in the bright-field disc. The detector's counts
        per electron are then taken as the mean segment sum over the valid pixels divided
        by (dose × the fraction of a centred disc the segments collect); a specimen that
        scatters electrons out of the disc makes that an underestimate, so prefer
        ``counts_per_electron`` where it is known.
    counts_per_electron : float, optional
        Counts the detector records per electron (after the segment gains). Give this or
        ``dose``.
    vacuum : array_like, optional
        As for :func:`~dpcstem.reconstruct.segment_deflection` (gives the gains).
    valid : ndarray of bool, shape (ny, nx), optional
        Where the deflection is defined, as the reconstruction found it (with the same
        options): given, the segments do not pass through the kernel again.

    Returns
    -------
    var_x, var_y, cov_xy : ndarray, float64, (ny, nx)
        Var θx, Var θy and Cov(θx, θy) in mrad², scan frame; NaN where invalid.
    valid : ndarray of bool
        Where the deflection is defined (as in the reconstruction).
    """
    if (dose is None) == (counts_per_electron is None):
        raise CalibrationError("give either the dose (electrons per probe position) or the detector's "
                               "counts_per_electron, one of them, for the counting noise")
    options = check_options(options)
    if valid is None:
        _, _, _, valid = segment_deflection(segments, calibration, options=options, vacuum=vacuum, with_total=False)
    else:
        valid = _validate.mask("valid", valid, np.shape(segments)[1:])
    gains, offsets = options.gains, options.offsets
    if vacuum is not None:
        gains = gains_from_vacuum(vacuum, offsets=offsets)
    seg = check_segments(segments).astype(np.float64)
    d_a, d_b, total = difference_signals(seg, gains=gains, offsets=offsets)
    d_a = np.where(valid, d_a, np.nan)
    d_b = np.where(valid, d_b, np.nan)
    if offsets is not None:
        seg -= offsets.reshape(4, 1, 1)
    if gains is not None:
        seg /= gains.reshape(4, 1, 1)
    a, b, c, d = seg
    if counts_per_electron is None:
        dose = _validate.positive("dose", dose, what="electrons per probe position")
        collected = float(segment_areas(0.0, 0.0, inner=calibration.inner_over_alpha,
                                        outer=calibration.outer_over_alpha).sum() / np.pi)
        if not valid.any():
            raise InputDataError("no pixel has a valid deflection: the counts per electron cannot be found from the dose")
        g = float(np.mean(total[valid])) / (dose * collected)
    else:
        g = _validate.positive("counts_per_electron", counts_per_electron, what="detector counts per electron")
    with np.errstate(divide="ignore", invalid="ignore"):
        var_a = g * ((a + c) / total - d_a**2) / total
        var_b = g * ((b + d) / total - d_b**2) / total
        cov_ab = -g * d_a * d_b / total
    j = _inverse_jacobian(response_model(options.response, calibration), d_a, d_b)
    # Σ_uv = J Σ_d Jᵀ, J = [[du/dA, du/dB], [dv/dA, dv/dB]].
    var_u = j[0, 0] ** 2 * var_a + 2 * j[0, 0] * j[0, 1] * cov_ab + j[0, 1] ** 2 * var_b
    var_v = j[1, 0] ** 2 * var_a + 2 * j[1, 0] * j[1, 1] * cov_ab + j[1, 1] ** 2 * var_b
    cov_uv = j[0, 0] * j[1, 0] * var_a + (j[0, 0] * j[1, 1] + j[0, 1] * j[1, 0]) * cov_ab + j[0, 1] * j[1, 1] * var_b
    # θ = α R (u, v) (R the calibration's frame matrix), so Σ_θ = α² R Σ_uv Rᵀ.
    r = calibration.frame_matrix
    alpha2 = calibration.alpha_mrad**2
    var_x = alpha2 * (r[0, 0] ** 2 * var_u + 2 * r[0, 0] * r[0, 1] * cov_uv + r[0, 1] ** 2 * var_v)
    var_y = alpha2 * (r[1, 0] ** 2 * var_u + 2 * r[1, 0] * r[1, 1] * cov_uv + r[1, 1] ** 2 * var_v)
    cov_xy = alpha2 * (r[0, 0] * r[1, 0] * var_u + (r[0, 0] * r[1, 1] + r[0, 1] * r[1, 0]) * cov_uv
                       + r[0, 1] * r[1, 1] * var_v)
    nan = np.nan
    return (np.where(valid, var_x, nan), np.where(valid, var_y, nan), np.where(valid, cov_xy, nan), valid)


def _inverse_jacobian(model, d_a, d_b):
    """∂(u, v)/∂(dA, dB) at each pixel, shape (2, 2, ny, nx)."""
    if isinstance(model, LinearResponse):
        k = 1.0 / model.slope
        zero = np.zeros_like(d_a)
        return np.array([[zero + k, zero], [zero, zero + k]])
    return model.inverse_table().jacobian(d_a, d_b)


def uncertainty_from_covariance(var_x, var_y, cov_xy, calibration: Calibration, *, valid=None,
                                options: ReconstructionOptions | None = None) -> dict:
    """Uncertainty maps of deflection, field and charge density from the deflection's covariance.

    Parameters
    ----------
    var_x, var_y, cov_xy : ndarray, shape (ny, nx)
        Var θx, Var θy, Cov(θx, θy) in mrad², scan frame (pixels independent).
    calibration : Calibration
        Thickness (number or map), kV, scan steps, εr.
    valid : ndarray of bool, optional
        Pixels with a deflection (default: where the variances are finite), as given to
        :func:`~dpcstem.reconstruct.reconstruct_deflection`.
    options : ReconstructionOptions, optional
        Its ``charge_method`` and ``cutoff``, as given to the reconstruction.

    Returns
    -------
    dict
        name → (float32 map, unit): ``deflection_x_uncertainty``, ``deflection_y_uncertainty``
        (mrad); with a thickness also ``field_x_uncertainty``, ``field_y_uncertainty`` (V/m),
        ``charge_density_uncertainty`` (C/m^3) and, with εr, ``free_charge_density_uncertainty``.
        One standard deviation; NaN where the reconstruction's maps are (with a
        thickness and finite differences, also where the charge density is undefined).

    Notes
    -----
    Finite differences: at pixel i the x derivative is (E[i+1] − E[i−1])/(2Δx) with both
    neighbours valid, a one-sided difference with one; so, for instance,
    σ²(∇·E) = (σ²Ex[i+1] + σ²Ex[i−1])/(2Δx)² + (σ²Ey[j+1] + σ²Ey[j−1])/(2Δy)², plus the
    Ex–Ey covariance of a pixel that both one-sided stencils share.

    Spectral: the divergence is a convolution of the evenly extended maps with kernels
    hx, hy (the inverse transform of 2πi·k·W(k)); the variance is hx² ⊛ σ²Ex + hy² ⊛ σ²Ey
    + 2·hx·hy ⊛ cov, with the terms that pair a pixel with its mirror images (near the
    edges) taken at the local variance. Exact for a uniform variance, to first order in its
    change across the kernel otherwise.
    """
    var_x = np.asarray(var_x, dtype=np.float64)
    var_y = np.asarray(var_y, dtype=np.float64)
    cov_xy = np.asarray(cov_xy, dtype=np.float64)
    if var_x.ndim != 2 or var_x.shape != var_y.shape or var_x.shape != cov_xy.shape:
        raise InputDataError(f"variance maps must be 2-D of one shape, got {var_x.shape}, {var_y.shape}, "
                             f"{cov_xy.shape}")
    finite = np.isfinite(var_x) & np.isfinite(var_y) & np.isfinite(cov_xy)
    valid = finite if valid is None else (np.asarray(valid, bool) & finite)
    options = check_options(options)
    charge_method, cutoff = options.charge_method, options.cutoff

    def out(a, mask):
        return np.where(mask, a, np.nan).astype(np.float32)

    def deflection_maps(mask):
        return {"deflection_x_uncertainty": (out(np.sqrt(np.abs(var_x)), mask), "mrad"),
                "deflection_y_uncertainty": (out(np.sqrt(np.abs(var_y)), mask), "mrad")}

    if calibration.thickness_nm is None:
        return deflection_maps(valid)
    thickness = calibration.thickness_nm
    if np.ndim(thickness) == 2 and np.shape(thickness) != var_x.shape:
        raise CalibrationError(f"thickness map shape {np.shape(thickness)} does not match the scan {var_x.shape}")
    # E = −k θ with k = (pv/e)·1e-3/(t·1e-9) V/m per mrad.
    k = np.abs(physics.field_v_per_m_from_deflection(1.0, calibration.kv, thickness))
    k = np.broadcast_to(k, var_x.shape)
    zero = lambda a: np.where(valid, a, 0.0)  # noqa: E731
    var_ex, var_ey, cov_e = zero(k * k * var_x), zero(k * k * var_y), zero(k * k * cov_xy)
    step_x = calibration.step_x_nm * physics.NM_TO_M
    step_y = calibration.step_y_nm * physics.NM_TO_M
    if charge_method == "finite-difference":
        var_div, div_valid = _finite_difference_variance(var_ex, var_ey, cov_e, valid, step_x, step_y)
    else:
        cutoff_per_m = None if cutoff is None else cutoff * physics.M_TO_NM
        var_div = _spectral_variance(var_ex, var_ey, cov_e, step_x, step_y, cutoff_per_m)
        div_valid = valid
    # As in the reconstruction, every map is masked where the charge density is undefined.
    maps = deflection_maps(div_valid)
    maps["field_x_uncertainty"] = (out(np.sqrt(var_ex), div_valid), "V/m")
    maps["field_y_uncertainty"] = (out(np.sqrt(var_ey), div_valid), "V/m")
    sigma_rho = physics.VACUUM_PERMITTIVITY_F_M * np.sqrt(np.clip(var_div, 0.0, None))
    maps["charge_density_uncertainty"] = (out(sigma_rho, div_valid), "C/m^3")
    if calibration.eps_r is not None:
        maps["free_charge_density_uncertainty"] = (out(sigma_rho * calibration.eps_r, div_valid), "C/m^3")
    return maps


def _stencil(valid, axis, step):
    """Weights (w_minus, w_centre, w_plus) of the masked derivative along ``axis`` and where it exists."""
    n = valid.shape[axis]
    index = np.arange(n).reshape((-1, 1) if axis == 0 else (1, -1))
    minus = np.zeros_like(valid)
    plus = np.zeros_like(valid)
    if axis == 0:
        minus[1:] = valid[:-1]
        plus[:-1] = valid[1:]
    else:
        minus[:, 1:] = valid[:, :-1]
        plus[:, :-1] = valid[:, 1:]
    minus &= index > 0
    plus &= index < n - 1
    both = minus & plus
    w_minus = np.where(both, -0.5 / step, np.where(minus & ~plus, -1.0 / step, 0.0))
    w_plus = np.where(both, 0.5 / step, np.where(plus & ~minus, 1.0 / step, 0.0))
    w_centre = np.where(both, 0.0, np.where(plus, -1.0 / step, np.where(minus, 1.0 / step, 0.0)))
    return w_minus, w_centre, w_plus, minus | plus


def _neighbour(a, axis, shift):
    """a at the neighbour (index + shift along axis), zero outside."""
    out = np.zeros_like(a)
    if axis == 0:
        if shift > 0:
            out[:-1] = a[1:]
        else:
            out[1:] = a[:-1]
    else:
        if shift > 0:
            out[:, :-1] = a[:, 1:]
        else:
            out[:, 1:] = a[:, :-1]
    return out


def _finite_difference_variance(var_ex, var_ey, cov_e, valid, step_x, step_y):
    """Variance of the masked finite-difference divergence (the kernel's stencil)."""
    xm, xc, xp, ok_x = _stencil(valid, 1, step_x)
    ym, yc, yp, ok_y = _stencil(valid, 0, step_y)
    var = (xm**2 * _neighbour(var_ex, 1, -1) + xc**2 * var_ex + xp**2 * _neighbour(var_ex, 1, 1)
           + ym**2 * _neighbour(var_ey, 0, -1) + yc**2 * var_ey + yp**2 * _neighbour(var_ey, 0, 1)
           + 2 * xc * yc * cov_e)
    return var, valid & ok_x & ok_y


def _spectral_variance(var_ex, var_ey, cov_e, step_x, step_y, cutoff):
    """Variance of :func:`dpcstem.fourier.spectral_divergence` for independent pixels."""
    ny, nx = var_ex.shape
    my, mx = 2 * ny, 2 * nx
    ky = fft.fftfreq(my, d=step_y)[:, None]
    kx = fft.fftfreq(mx, d=step_x)[None, :]
    window = lowpass_window(np.hypot(kx, ky), cutoff)
    kernels = (fft.ifft2(2j * np.pi * kx * window).real, fft.ifft2(2j * np.pi * ky * window).real)
    spectra = [fft.fft2(h) for h in kernels]
    iy = (2 * np.arange(ny) + 1)[:, None]
    ix = (2 * np.arange(nx) + 1)[None, :]
    total = np.zeros((ny, nx))
    for (p, q, s, factor) in ((0, 0, var_ex, 1.0), (1, 1, var_ey, 1.0), (0, 1, cov_e, 2.0)):
        h1, h2 = kernels[p], kernels[q]
        extended = np.block([[s, s[:, ::-1]], [s[::-1, :], s[::-1, ::-1]]])
        direct = fft.ifft2(fft.fft2(h1 * h2) * fft.fft2(extended)).real[:ny, :nx]
        # Pairs of a pixel with its mirror images: Σ_m h1(m) h2(R(m) + 2p + 1) for the reflections R.
        f1x, f2x = fft.fft(h1, axis=1), fft.fft(h2, axis=1)
        across_x = fft.ifft(np.sum(f1x * f2x, axis=0)).real  # convolution in x, product in y
        f1y, f2y = fft.fft(h1, axis=0), fft.fft(h2, axis=0)
        across_y = fft.ifft(np.sum(f1y * f2y, axis=1)).real
        both = fft.ifft2(spectra[p] * spectra[q]).real
        mirror = across_x[ix % mx] + across_y[iy % my] + both[iy % my, ix % mx]
        total += factor * (direct + s * mirror)
    return total


def uncertainty_maps(segments, calibration: Calibration, *, options: ReconstructionOptions | None = None, dose=None,
                     counts_per_electron=None, vacuum=None, valid=None) -> dict:
    """One-standard-deviation maps of deflection, field and charge density from counting noise.

    Parameters
    ----------
    segments : array_like, shape (4, ny, nx)
        Segment images A, B, C, D in counts.
    calibration : Calibration
    options : ReconstructionOptions, optional
        The options given to the reconstruction.
    dose, counts_per_electron, vacuum, valid
        As for :func:`deflection_covariance`.

    Returns
    -------
    dict
        name → (float32 map (ny, nx), unit), ready for :attr:`dpcstem.DPCResult.extra`:
        ``deflection_x_uncertainty``, ``deflection_y_uncertainty`` (mrad),
        ``field_x_uncertainty``, ``field_y_uncertainty`` (V/m),
        ``charge_density_uncertainty`` (C/m^3) and, with εr,
        ``free_charge_density_uncertainty`` (C/m^3); NaN where the quantity is undefined.

    Examples
    --------
    >>> import numpy as np
    >>> from dpcstem import Calibration
    >>> from dpcstem.simulate import segments_from_deflection
    >>> cal = Calibration(kv=200, alpha_mrad=2, step_x_nm=1, thickness_nm=100)
    >>> segments = segments_from_deflection(np.zeros((8, 8)), np.zeros((8, 8)), cal, dose=1e4,
    ...                                     rng=np.random.default_rng(0))
    >>> maps = uncertainty_maps(segments, cal, dose=1e4)
    >>> sigma, unit = maps["deflection_x_uncertainty"]
    >>> unit, round(float(np.median(sigma)), 4)   # α·sqrt(1/2N)/(2√2/π) for N = 10⁴ electrons
    ('mrad', 0.0157)
    """
    var_x, var_y, cov_xy, valid = deflection_covariance(
        segments, calibration, options=options, dose=dose, counts_per_electron=counts_per_electron, vacuum=vacuum,
        valid=valid)
    return uncertainty_from_covariance(var_x, var_y, cov_xy, calibration, valid=valid, options=options)
