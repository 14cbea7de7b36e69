"""Shared machinery of the validation references: abTEM multislice, the truth, the files.

Runs only in the validation environment (``bash validation/env.sh``), never in dpcstem's:
it imports abTEM, and nothing from dpcstem (the references must not share dpcstem's
forward model or its constants).

What a reference is
-------------------
A specimen is given as slices of the electrostatic potential V(x, y) in volts (the
thickness average of each slice, on a periodic grid of ``sampling_nm``). abTEM propagates
a probe (convergence semi-angle α, no aberrations, 2/3 anti-aliasing) through the slices
(multislice: transmission exp(iσV·dz), Fresnel propagation over dz) for every scan
position, and the far-field intensity |FFT ψ_exit|² of the exit wave is the diffraction
pattern. The acquisitions (4D frames, four annular segments) are made from those patterns.

The truth
---------
For each slice i the in-plane field E_i = −∇V_i and the charge density ρ_i = −ε0 ∇²V_i
are computed from the slice's potential on the grid (spectral derivatives, exactly what
the multislice transmission sees). The *probe-weighted* truth at a scan position is the
mean over the slices of each map weighted by the probe intensity entering that slice,
normalised to unit sum:

    E_w = (1/n) Σ_i Σ_r I_i(r) E_i(r) / Σ_r I_i(r)     (likewise ρ_w and V_w)

which is what the centre of mass of the diffraction pattern measures (Ehrenfest: each
slice adds (λ/2π)⟨∇φ_i⟩ to the mean momentum, weighted by the intensity it acts on), so a
detector can do no better. The *unweighted* truth is the thickness-averaged map at the
probe position itself. Each script checks the identity on its own patterns: the centre of
mass of the full (uncropped) pattern must equal the weighted field to ``COM_IDENTITY_TOL``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

# Physical constants (CODATA 2018), written here so the references share nothing with dpcstem.
H = 6.62607015e-34
E_CHARGE = 1.602176634e-19
M_E = 9.1093837015e-31
C_LIGHT = 299_792_458.0
EPS0 = 8.8541878128e-12

COM_IDENTITY_TOL = 2e-3  # relative; the multislice's band limit and float32 set this floor


def wavelength_nm(kv):
    u = kv * 1e3
    return H / math.sqrt(2 * M_E * E_CHARGE * u * (1 + E_CHARGE * u / (2 * M_E * C_LIGHT**2))) * 1e9


def pv_over_e(kv):
    u = kv * 1e3
    u0 = M_E * C_LIGHT**2 / E_CHARGE
    return u * (u + 2 * u0) / (u + u0)


def spectral_derivatives(v, sampling_nm):
    """−∂V/∂x, −∂V/∂y (V/m) and −ε0∇²V (C/m³) of a periodic map V (V), [y, x] indexed."""
    ny, nx = v.shape
    ky = np.fft.fftfreq(ny, sampling_nm * 1e-9)[:, None]
    kx = np.fft.fftfreq(nx, sampling_nm * 1e-9)[None, :]
    f = np.fft.fft2(v)
    if ny % 2 == 0:
        ky = ky.copy(); ky[ny // 2] = 0.0  # the Nyquist row has no defined derivative
    if nx % 2 == 0:
        kx = kx.copy(); kx[0, nx // 2] = 0.0
    ex = -np.fft.ifft2(2j * np.pi * kx * f).real
    ey = -np.fft.ifft2(2j * np.pi * ky * f).real
    rho = EPS0 * np.fft.ifft2((4 * np.pi**2) * (kx**2 + ky**2) * f).real
    return ex, ey, rho


def scan_positions(shape, step_nm, offset_nm=(0.0, 0.0)):
    """Scan positions (y, x) in nm, row-major, of a raster starting at offset (y, x)."""
    ny, nx = shape
    yy, xx = np.meshgrid(offset_nm[0] + step_nm * np.arange(ny), offset_nm[1] + step_nm * np.arange(nx),
                         indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def run_multislice(slices_v, sampling_nm, slice_nm, kv, alpha_mrad, positions_yx_nm, *, crop_mrad,
                   batch=32, log=print):
    """Multislice every scan position; return the cropped patterns and the truth.

    Parameters
    ----------
    slices_v : ndarray (n_slices, ny, nx)
        Thickness-averaged potential of each slice in V, [y, x] indexed, periodic.
    positions_yx_nm : ndarray (n, 2)
        Probe positions (y, x) in nm.
    crop_mrad : float
        Half-width of the square of the diffraction pattern kept, in mrad.

    Returns
    -------
    dict with ``patterns`` (n, k, k) float64 (total intensity 1 per incident probe, the
    optical axis at index k // 2, rows ky, columns kx), ``mrad_per_px``,
    ``com_full_mrad`` (n, 2) (y, x) centre of mass of the whole pattern, and the
    weighted truth ``field_x_w``, ``field_y_w`` (V/m), ``charge_w`` (C/m³),
    ``potential_w`` (V), each (n,), plus ``total_intensity`` (n,) (the fraction of the
    incident probe left in the pattern after the anti-aliasing band limit).
    """
    import abtem

    import dask

    abtem.config.set({"device": "cpu", "fft": "numpy", "precision": "float64",
                      "diagnostics.progress_bar": False})
    dask.config.set(scheduler="synchronous")  # one core: the machine is shared
    nz, ny, nx = slices_v.shape
    lam = wavelength_nm(kv)
    d_a = sampling_nm * 10.0
    # abTEM indexes arrays [x, y] in Å and wants the projected potential of a slice in V·Å.
    projected = np.ascontiguousarray((slices_v * slice_nm * 10.0).transpose(0, 2, 1))
    potential = abtem.PotentialArray(projected, slice_thickness=slice_nm * 10.0, sampling=d_a, exit_planes=1)
    probe = abtem.Probe(energy=kv * 1e3, semiangle_cutoff=alpha_mrad)
    probe.grid.match(potential)

    fields = [spectral_derivatives(s, sampling_nm) for s in slices_v]
    mrad_per_px = lam / (nx * sampling_nm) * 1e3
    if ny != nx:
        raise ValueError("square grids only")
    half = int(round(crop_mrad / mrad_per_px))
    kc = nx // 2
    kxa = (np.arange(nx) - kc) * mrad_per_px
    n = len(positions_yx_nm)
    out = {"patterns": np.empty((n, 2 * half, 2 * half)), "com_full_mrad": np.empty((n, 2)),
           "total_intensity": np.empty(n)}
    for key in ("field_x_w", "field_y_w", "charge_w", "potential_w"):
        out[key] = np.zeros(n)
    start = time.time()
    for b0 in range(0, n, batch):
        pos = positions_yx_nm[b0:b0 + batch]
        waves = probe.multislice(potential, scan=np.ascontiguousarray(pos[:, ::-1] * 10.0)).compute().array
        waves = np.asarray(waves).swapaxes(-1, -2)  # (nz + 1, b, y, x)
        for i in range(nz):
            inten = np.abs(waves[i]) ** 2
            inten /= inten.sum(axis=(-2, -1), keepdims=True)
            ex, ey, rho = fields[i]
            out["field_x_w"][b0:b0 + len(pos)] += (inten * ex).sum(axis=(-2, -1)) / nz
            out["field_y_w"][b0:b0 + len(pos)] += (inten * ey).sum(axis=(-2, -1)) / nz
            out["charge_w"][b0:b0 + len(pos)] += (inten * rho).sum(axis=(-2, -1)) / nz
            out["potential_w"][b0:b0 + len(pos)] += (inten * slices_v[i]).sum(axis=(-2, -1)) / nz
        incident = (np.abs(waves[0]) ** 2).sum(axis=(-2, -1))[:, None, None]
        pattern = np.fft.fftshift(np.abs(np.fft.fft2(waves[nz])) ** 2, axes=(-2, -1)) / (nx * ny * incident)
        total = pattern.sum(axis=(-2, -1))
        out["total_intensity"][b0:b0 + len(pos)] = total
        out["com_full_mrad"][b0:b0 + len(pos), 0] = (pattern.sum(axis=-1) * kxa).sum(axis=-1) / total
        out["com_full_mrad"][b0:b0 + len(pos), 1] = (pattern.sum(axis=-2) * kxa).sum(axis=-1) / total
        out["patterns"][b0:b0 + len(pos)] = pattern[:, kc - half:kc + half, kc - half:kc + half]
        log(f"  {b0 + len(pos)}/{n} positions, {time.time() - start:.0f} s")
    out["mrad_per_px"] = mrad_per_px
    out["optical_axis_px"] = float(half)
    return out


def check_com_identity(sim, kv, thickness_nm, *, mask=None):
    """Relative error of the full-pattern centre of mass against the weighted field.

    The Ehrenfest identity that defines the truth: θ = −(e t / pv) E_w. Returns the error
    relative to the largest |E_w| (over ``mask`` where given)."""
    scale = -pv_over_e(kv) / (thickness_nm * 1e-9) * 1e-3  # mrad → V/m
    ex = sim["com_full_mrad"][:, 1] * scale
    ey = sim["com_full_mrad"][:, 0] * scale
    err = np.hypot(ex - sim["field_x_w"], ey - sim["field_y_w"])
    ref = np.hypot(sim["field_x_w"], sim["field_y_w"])
    if mask is not None:
        err, ref = err[mask], ref[mask]
    return float(err.max() / ref.max())


def require_com_identity(sim, kv, thickness_nm):
    """Print the centre-of-mass identity's error and stop when the multislice breaks it."""
    identity = check_com_identity(sim, kv, thickness_nm)
    print(f"centre-of-mass identity: {identity:.2e} of the peak weighted field")
    if identity > COM_IDENTITY_TOL:
        raise SystemExit(f"the multislice breaks the centre-of-mass identity ({identity:.2e})")


def rows_to_simulate(doc, argv, n_rows):
    """The scan rows a reference script computes: all of them, or those given by ``--check ROWS``.

    Returns (rows, checking): with ``--check`` the script recomputes only those rows and
    compares them with the committed file (:func:`compare_rows`) instead of writing it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--check", metavar="ROWS", help="comma-separated scan rows to recompute and compare")
    args = parser.parse_args(argv)
    if args.check is None:
        return list(range(n_rows)), False
    return [int(r) for r in args.check.split(",")], True


def supersampled_segments(shape, mrad_per_px, centre_px, inner_mrad, outer_mrad, rotation_deg, flip, sub=4):
    """Masks (4, k, k) of the fraction of each pixel in annular quadrants A, B, C, D.

    Segment A is centred at azimuth ψ = ``rotation_deg`` from scan +x toward scan +y, B at
    ψ+90°, C at ψ+180°, D at ψ+270°; with ``flip`` B at ψ−90° and D at ψ+90°. Each pixel
    is split into sub×sub points."""
    k = shape[0]
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    grid = (np.arange(k)[:, None] + offs[None, :]).ravel()
    ty = (grid - centre_px) * mrad_per_px
    tx = (grid - centre_px) * mrad_per_px
    TY, TX = np.meshgrid(ty, tx, indexing="ij")
    r = np.hypot(TX, TY)
    az = np.degrees(np.arctan2(TY, TX))
    ring = (r >= inner_mrad) & (r < outer_mrad)
    sign = -1.0 if flip else 1.0
    masks = []
    for j in range(4):
        centre = rotation_deg + sign * 90.0 * j
        delta = (az - centre + 180.0) % 360.0 - 180.0
        m = ring & (np.abs(delta) < 45.0)
        masks.append(m.reshape(k, sub, k, sub).mean(axis=(1, 3)))
    return np.array(masks)


def write_h5(path, datasets, attrs, truth, truth_attrs, *, dataset_attrs=None):
    """One reference file: the acquisition datasets at the root with their attributes, and
    the truth maps in group ``truth`` (each with a ``units`` attribute)."""
    import h5py

    with h5py.File(path, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for name, array in datasets.items():
            ds = f.create_dataset(name, data=array, compression="gzip", compression_opts=9, shuffle=True)
            for key, value in (dataset_attrs or {}).get(name, {}).items():
                ds.attrs[key] = value
        g = f.create_group("truth")
        for key, value in truth_attrs.items():
            g.attrs[key] = value
        for name, (array, units) in truth.items():
            ds = g.create_dataset(name, data=np.asarray(array, dtype=np.float64), compression="gzip",
                                  compression_opts=9, shuffle=True)
            ds.attrs["units"] = units


def compare_rows(path, truth, rows, *, tol=1e-6):
    """Compare recomputed truth rows with a committed file's; 0 when every map agrees to
    ``tol`` of its largest magnitude, else 1 (and the worst differences are printed)."""
    import h5py

    worst = 0.0
    with h5py.File(path, "r") as f:
        for name, (array, _units) in truth.items():
            stored = f["truth"][name][()]
            scale = float(np.abs(stored).max()) or 1.0
            diff = float(np.abs(stored[rows] - array).max()) / scale
            print(f"{name}: largest difference {diff:.2e} of its largest magnitude")
            worst = max(worst, diff)
    print(f"{path.name}: rows {rows} {'reproduce' if worst <= tol else 'DIFFER from'} the committed truth "
          f"(worst {worst:.2e}, tolerance {tol:.0e})")
    return 0 if worst <= tol else 1


def segment_stack(patterns, mrad_per_px, centre_px, inner_mrad, outer_mrad, rotation_deg, flip, dose, shape):
    """The four segment images (4, ny, nx) float32 of ``dose`` electrons per probe."""
    masks = supersampled_segments(patterns.shape[1:], mrad_per_px, centre_px, inner_mrad, outer_mrad,
                                  rotation_deg, flip)
    return (np.einsum("skl,nkl->sn", masks, patterns) * dose).reshape(4, *shape).astype(np.float32)


def sample_at(maps, positions_yx_nm, sampling_nm):
    """Values of [y, x] maps at the grid points nearest the positions (periodic)."""
    n = maps[0].shape[-1]
    idx = np.round(np.asarray(positions_yx_nm) / sampling_nm).astype(int) % n
    return [m[idx[:, 0], idx[:, 1]] for m in maps]


def truth_maps(sim, unweighted, shape):
    """The truth group's content: weighted maps from the multislice, unweighted given."""
    units = {"field_x": "V/m", "field_y": "V/m", "charge_density": "C/m^3", "potential": "V"}
    weighted = {"field_x": sim["field_x_w"], "field_y": sim["field_y_w"], "charge_density": sim["charge_w"],
                "potential": sim["potential_w"]}
    truth = {f"{k}_weighted": (v.reshape(shape), units[k]) for k, v in weighted.items()}
    truth.update({k: (np.asarray(v).reshape(shape), units[k]) for k, v in unweighted.items()})
    return truth


def vacuum_run(grid_n, sampling_nm, n_slices, slice_nm, kv, alpha_mrad, n_positions, *, crop_mrad):
    """The multislice through vacuum: every position's pattern is the same, so one is
    computed (two, as abTEM wants a scan axis) and repeated."""
    sim = run_multislice(np.zeros((n_slices, grid_n, grid_n)), sampling_nm, slice_nm, kv, alpha_mrad,
                         np.zeros((2, 2)), crop_mrad=crop_mrad)
    sim["patterns"] = np.repeat(sim["patterns"][:1], n_positions, axis=0)
    return sim
