"""Synthetic low-loss EELS spectra with a known t/λ, and a DM3 writer that stores them as Gatan does.

Shared by the EELS and the thickness-command tests.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from dpcstem import physics

# --------------------------------------------------------------------------------------
# Synthetic low-loss spectra with a known t/λ
# --------------------------------------------------------------------------------------


def single_scattering(loss_ev, *, plasmon_ev=22.0, damping_ev=6.0, kv=200.0, beta_mrad=15.0):
    """Single-scattering distribution (unnormalised) of a Drude solid collected within β.

    Im(−1/ε) for ε = 1 − Ep²/(E² + iEΓ), times the angular integral ln(1 + β²/θ_E²) with the
    characteristic angle θ_E = E/(pv) (E in eV, pv/e in kV gives mrad). Zero at E ≤ 0.
    """
    e = np.asarray(loss_ev, dtype=float)
    out = np.zeros_like(e)
    pos = e > 0
    ep = e[pos]
    loss_function = ep * damping_ev * plasmon_ev**2 / ((ep**2 - plasmon_ev**2) ** 2 + (ep * damping_ev) ** 2)
    theta_e_mrad = ep / (physics.pv_over_e_v(kv) * 1e-3)
    out[pos] = loss_function * np.log1p((beta_mrad / theta_e_mrad) ** 2)
    return out


def synthetic_low_loss(t_over_lambda, *, rng, total_counts=5e5, offset_ev=-10.0, step_ev=0.15, n=2048,
                       zlp_fwhm_ev=0.9, zlp_ev=0.07, read_noise=3.0, noise=True, **ssd):
    """A low-loss spectrum for a known t/λ: (counts, expected counts), each shape (n,).

    The zero-loss peak (Gaussian) is convolved with Σ_k P_k S^{*k}: the k-fold
    self-convolution of the normalised single-scattering distribution S, weighted by the
    Poisson probability P_k = e^{−τ} τ^k / k! of k inelastic events (τ = t/λ), order by order
    until P_k < 1e-12. Then Poisson counting noise and Gaussian read noise.
    """
    pad = 8 * n  # the k-fold convolutions stay far inside the padded grid
    s = single_scattering(np.arange(pad) * step_ev, **ssd)
    s /= s.sum()
    s_hat = np.fft.rfft(s)
    inelastic = np.zeros(pad)
    power = np.ones_like(s_hat)
    p_k = math.exp(-t_over_lambda)
    k = 0
    while True:
        k += 1
        p_k *= t_over_lambda / k
        power = power * s_hat  # FFT of S convolved with itself k times
        inelastic += p_k * np.fft.irfft(power, pad)
        if p_k < 1e-12 and k > t_over_lambda:
            break
    energy = offset_ev + step_ev * np.arange(n)
    zlp = np.exp(-0.5 * ((energy - zlp_ev) / (zlp_fwhm_ev / (2 * math.sqrt(2 * math.log(2))))) ** 2)
    zlp /= zlp.sum()
    zlp_padded = np.zeros(pad)
    zlp_padded[:n] = zlp
    spectrum = math.exp(-t_over_lambda) * zlp + np.fft.irfft(np.fft.rfft(zlp_padded) * np.fft.rfft(inelastic), pad)[:n]
    expected = total_counts * np.clip(spectrum, 0.0, None)
    if not noise:
        return expected, expected
    return rng.poisson(expected) + rng.normal(0.0, read_noise, n), expected


# --------------------------------------------------------------------------------------
# A DM3 writer (Gatan tag-file layout), so the real RosettaSciIO reader reads real files
# --------------------------------------------------------------------------------------


def _dm_name(name):
    raw = name.encode("latin-1")
    return struct.pack(">h", len(raw)) + raw


def _dm_group(name, tags, *, root=False):
    body = struct.pack(">BBi", 0, 1, len(tags)) + b"".join(tags)
    return body if root else struct.pack(">B", 20) + _dm_name(name) + body


def _dm_data(name, info, payload):
    return (struct.pack(">B", 21) + _dm_name(name) + b"%%%%" + struct.pack(">i", len(info))
            + b"".join(struct.pack(">i", v) for v in info) + payload)


def _dm_number(name, value, kind="f8"):
    code, fmt = {"f4": (6, "<f"), "f8": (7, "<d"), "i4": (3, "<i"), "u4": (5, "<I")}[kind]
    return _dm_data(name, [code], struct.pack(fmt, value))


def _dm_text(name, text):
    return _dm_data(name, [20, 4, len(text)], np.array([ord(c) for c in text], "<u2").tobytes())


def _dm_tree(name, tree):
    tags = []
    for key, value in tree.items():
        if isinstance(value, dict):
            tags.append(_dm_tree(key, value))
        elif isinstance(value, str):
            tags.append(_dm_text(key, value))
        else:
            tags.append(_dm_number(key, float(value)))
    return _dm_group(name, tags)


def write_dm3(path, counts, *, offset_ev, step_ev, kv=None, beta_mrad=None, alpha_mrad=None):
    """Write a DM3 EELS spectrum (n,) or spectrum image (ny, nx, n), float32, as Gatan does.

    DM stores dimensions fastest first (x, y, energy for a spectrum image, whose array is
    (energy, y, x) in C order) with per-dimension Origin (in channels), Scale and Units.
    """
    counts = np.asarray(counts, dtype="<f4")
    if counts.ndim == 1:
        data, fmt = counts, "Spectrum"
        dims = [(-offset_ev / step_ev, step_ev, "eV")]
    else:
        data, fmt = np.ascontiguousarray(np.moveaxis(counts, -1, 0)), "Spectrum image"
        dims = [(0.0, 1.0, "nm"), (0.0, 1.0, "nm"), (-offset_ev / step_ev, step_ev, "eV")]
    dimension = [_dm_group("", [_dm_number("Origin", o, "f4"), _dm_number("Scale", s, "f4"), _dm_text("Units", u)])
                 for o, s, u in dims]
    image_data = _dm_group("ImageData", [
        _dm_group("Calibrations", [
            _dm_group("Brightness", [_dm_number("Origin", 0.0, "f4"), _dm_number("Scale", 1.0, "f4"),
                                     _dm_text("Units", "")]),
            _dm_group("Dimension", dimension)]),
        _dm_data("Data", [20, 6, data.size], data.tobytes()),
        _dm_number("DataType", 2, "i4"),
        _dm_group("Dimensions", [_dm_number("", n, "u4") for n in data.shape[::-1]]),
        _dm_number("PixelDepth", 4, "i4")])
    tags = {"Meta Data": {"Format": fmt, "Signal": "EELS"}}
    if kv is not None:
        tags["Microscope Info"] = {"Voltage": kv * 1e3}
    conditions = {}
    if beta_mrad is not None:
        conditions["Collection semi-angle (mrad)"] = beta_mrad
    if alpha_mrad is not None:
        conditions["Convergence semi-angle (mrad)"] = alpha_mrad
    if conditions:
        tags["EELS"] = {"Experimental Conditions": conditions}
    image = _dm_group("", [image_data, _dm_tree("ImageTags", tags), _dm_text("Name", "EELS Spectrum")])
    root = _dm_group("", [_dm_group("ImageList", [image])], root=True)
    Path(path).write_bytes(struct.pack(">iii", 3, len(root) + 16, 1) + root + b"\0" * 8)
