"""Centre of mass of 4D-STEM frames by the peer packages, timed on the array dpcstem was timed on.

Run in the separate environment made by ``benchmarks/peers_env.sh`` (LiberTEM, py4DSTEM and
pyxem pin their own NumPy, so they are never installed beside dpcstem)::

    .venv-peers/bin/python benchmarks/peers.py FRAMES.npy --repeats 3 --out RESULT.json

``FRAMES.npy`` holds a (scan_y, scan_x, det_y, det_x) array (dpcstem's benchmark writes it).
Each peer computes the centre of mass of every whole frame, without a mask, after a warm-up
run; the median time over ``--repeats`` runs is reported. The centre of mass each peer found
(in detector pixels, column ``com_x`` and row ``com_y``) is saved beside the JSON as
``RESULT.<peer>.npz`` so the caller can check that the same computation was timed.

The JSON printed (and written to ``--out``) is::

    {"peers": {"libertem": {"version", "median_s", "times_s", "how"} or {"error": "..."}, ...}}

where ``error`` is "not installed" for a package that cannot be imported.

Validation (docs/validation.md, made by validation/report.py): with ``--reference VACUUM.npy``
(a vacuum scan of the same shape) nothing is timed; each peer computes the centre of mass of
both scans, saved as ``com_x``, ``com_y``, ``ref_com_x``, ``ref_com_y``, and, where it has one,
its phase reconstruction from the deflection (``phase``, rad, [y, x]) with ``--mrad-per-px``,
``--step-nm`` and ``--kv``::

    .venv-peers/bin/python benchmarks/peers.py FRAMES.npy --reference VACUUM.npy --mrad-per-px 0.3135 \
        --step-nm 1 --kv 200 --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def _time(func, repeats):
    """Warm-up call, then ``repeats`` timed calls; returns (last result, times in s)."""
    result = func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return result, times


def libertem_com(data, repeats, threads):
    """LiberTEM's centre-of-mass analysis (``Context.create_com_analysis``) on a memory data set."""
    import libertem
    from libertem.api import Context

    ctx = Context.make_with("threads", cpus=threads)
    try:
        ds = ctx.load("memory", data=data, sig_dims=2)
        ky, kx = data.shape[2:]
        cx, cy = kx / 2, ky / 2
        analysis = ctx.create_com_analysis(dataset=ds, cx=cx, cy=cy, mask_radius=None)

        def run():
            return ctx.run(analysis)

        res, times = _time(run, repeats)
        # 'x' and 'y' are the centre of mass relative to (cx, cy), detector frame, no rotation.
        com_x = np.asarray(res["x"].raw_data) + cx
        com_y = np.asarray(res["y"].raw_data) + cy
    finally:
        ctx.close()
    how = f"Context.make_with('threads', cpus={threads}).create_com_analysis(mask_radius=None), memory data set"
    return libertem.__version__, times, com_x, com_y, how


def py4dstem_com(data, repeats, threads):
    """py4DSTEM's DPC preprocessing: centre of mass of each frame (vectorised) and its plane fit."""
    import py4DSTEM
    from py4DSTEM.process.phase import DPC

    datacube = py4DSTEM.DataCube(data=data)

    def run():
        dpc = DPC(datacube=datacube, energy=200e3, verbose=False)
        dpc.preprocess(
            force_com_rotation=0.0, force_com_transpose=False, fit_function="plane",
            vectorized_com_calculation=True, plot_center_of_mass=False, plot_rotation=False,
        )
        return dpc

    dpc, times = _time(run, repeats)
    # py4DSTEM's first detector axis (Qx) is the row: its "x" CoM is our row coordinate.
    com_y = np.asarray(dpc._com_measured_x, dtype=np.float64)
    com_x = np.asarray(dpc._com_measured_y, dtype=np.float64)
    how = ("DPC(energy=200e3).preprocess(force_com_rotation=0, force_com_transpose=False, fit_function='plane', "
           "vectorized_com_calculation=True)")
    return py4DSTEM.__version__, times, com_x, com_y, how


def pyxem_com(data, repeats, threads):
    """pyxem's ``Diffraction2D.get_direct_beam_position(method="center_of_mass")`` on an in-memory signal."""
    import dask
    import pyxem
    from pyxem.signals import Diffraction2D

    signal = Diffraction2D(data)
    ky, kx = data.shape[2:]

    def run():
        with dask.config.set(scheduler="threads", num_workers=threads):
            return signal.get_direct_beam_position(method="center_of_mass", lazy_output=False)

    shifts, times = _time(run, repeats)
    # shifts = frame centre − centre of mass; signal index 0 is x (columns), 1 is y (rows).
    s = np.asarray(shifts.data, dtype=np.float64)
    com_x = kx / 2 - s[..., 0]
    com_y = ky / 2 - s[..., 1]
    how = "Diffraction2D.get_direct_beam_position(method='center_of_mass', lazy_output=False), dask threads"
    return pyxem.__version__, times, com_x, com_y, how


PEERS = {"libertem": libertem_com, "py4dstem": py4dstem_com, "pyxem": pyxem_com}


def wavelength_angstrom(kv):
    """Relativistic electron wavelength in Å (for the peers' own calibrations)."""
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    volts = kv * 1e3
    return h / np.sqrt(2 * m * e * volts * (1 + e * volts / (2 * m * c**2))) * 1e10


def py4dstem_phase(data, ref_com_x, ref_com_y, mrad_per_px, step_nm, kv):
    """py4DSTEM's iterative DPC phase: the datacube calibrated (scan step in Å, detector pixel in
    mrad), the vacuum's centre of mass forced as the CoM shifts (the descan), no rotation."""
    import py4DSTEM
    from py4DSTEM.process.phase import DPC

    datacube = py4DSTEM.DataCube(data=data)
    datacube.calibration.set_R_pixel_size(step_nm * 10.0)
    datacube.calibration.set_R_pixel_units("A")
    datacube.calibration.set_Q_pixel_size(mrad_per_px)
    datacube.calibration.set_Q_pixel_units("mrad")
    dpc = DPC(datacube=datacube, energy=kv * 1e3, verbose=False)
    # py4DSTEM's first detector axis is the row: its CoM "x" is our row coordinate
    dpc.preprocess(force_com_rotation=0.0, force_com_transpose=False,
                   force_com_shifts=(np.asarray(ref_com_y, np.float32), np.asarray(ref_com_x, np.float32)),
                   vectorized_com_calculation=True, plot_center_of_mass=False, plot_rotation=False)
    dpc.reconstruct(progress_bar=False)
    how = ("DataCube calibrated (R pixel {:g} Å, Q pixel {:g} mrad); DPC(energy={:g}).preprocess(force_com_rotation=0, "
           "force_com_transpose=False, force_com_shifts=vacuum CoM).reconstruct() → object_phase").format(
               step_nm * 10.0, mrad_per_px, kv * 1e3)
    return np.asarray(dpc.object_phase, np.float64), how


def pyxem_phase(data, reference, mrad_per_px, step_nm, kv):
    """pyxem's Kottler phase retrieval of its beam shift minus the vacuum's, given as the phase
    gradient in rad per nm on navigation axes in nm."""
    from pyxem.signals import Diffraction2D

    shifts = []
    for frames in (data, reference):
        s = Diffraction2D(frames).get_direct_beam_position(method="center_of_mass", lazy_output=False)
        shifts.append(s)
    beam = shifts[0] - shifts[1]  # frame centre − CoM, minus the vacuum's: minus the deflection in px
    gradient = -(2 * np.pi / (wavelength_angstrom(kv) / 10.0)) * mrad_per_px * 1e-3  # rad/nm per px of deflection
    beam.data = beam.data * gradient
    for axis in beam.axes_manager.navigation_axes:
        axis.scale, axis.units = step_nm, "nm"
    phase = beam.phase_retrieval(method="kottler")
    how = ("Diffraction2D.get_direct_beam_position(method='center_of_mass') minus the vacuum's, × (2π/λ)·mrad_per_px "
           "(the phase gradient in rad/nm, navigation axes in nm) → BeamShift.phase_retrieval(method='kottler')")
    return np.asarray(phase.data, np.float64), how


def validate(data, reference, args):
    """Each peer's centre of mass of the scan and of the vacuum scan, and its phase where it has one."""
    report = {}
    for name in args.only:
        try:
            version, _, com_x, com_y, how = PEERS[name](data, 0, args.threads)
            _, _, ref_x, ref_y, _ = PEERS[name](reference, 0, args.threads)
        except ImportError as exc:
            report[name] = {"error": "not installed", "detail": str(exc)}
            continue
        except Exception as exc:
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "detail": traceback.format_exc(limit=3)}
            continue
        arrays = {"com_x": com_x, "com_y": com_y, "ref_com_x": ref_x, "ref_com_y": ref_y}
        entry = {"version": version, "how": how}
        phase = {"py4dstem": lambda: py4dstem_phase(data, ref_x, ref_y, args.mrad_per_px, args.step_nm, args.kv),
                 "pyxem": lambda: pyxem_phase(data, reference, args.mrad_per_px, args.step_nm, args.kv)}.get(name)
        if phase is not None:
            try:
                arrays["phase"], entry["phase_how"] = phase()
            except Exception as exc:
                entry["phase_error"] = f"{type(exc).__name__}: {exc}"
        report[name] = entry
        if args.out is not None:
            np.savez(args.out.with_suffix(f".{name}.npz"), **arrays)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=Path, help=".npy file of shape (scan_y, scan_x, det_y, det_x)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="worker threads each peer may use (default 2)")
    parser.add_argument("--only", nargs="+", choices=sorted(PEERS), default=sorted(PEERS), help="peers to run")
    parser.add_argument("--out", type=Path, help="JSON file to write (the centres of mass go beside it)")
    parser.add_argument("--reference", type=Path, help="validation: a vacuum scan (.npy) of the same shape; no timing")
    parser.add_argument("--mrad-per-px", type=float, help="validation: detector pixel in mrad")
    parser.add_argument("--step-nm", type=float, default=1.0, help="validation: scan step in nm")
    parser.add_argument("--kv", type=float, default=200.0, help="validation: accelerating voltage in kV")
    args = parser.parse_args(argv)

    data = np.load(args.frames)  # into memory: every peer reads the same in-memory array
    if args.reference is not None:
        text = json.dumps({"peers": validate(data, np.load(args.reference), args)}, indent=1)
        if args.out is not None:
            args.out.write_text(text)
        print(text)
        return 0
    report = {}
    for name in args.only:
        try:
            version, times, com_x, com_y, how = PEERS[name](data, args.repeats, args.threads)
        except ImportError as exc:
            report[name] = {"error": "not installed", "detail": str(exc)}
            continue
        except Exception as exc:  # a peer that fails is reported, not fatal to the others
            report[name] = {"error": f"{type(exc).__name__}: {exc}",
                            "detail": traceback.format_exc(limit=3)}
            continue
        report[name] = {"version": version, "median_s": statistics.median(times), "times_s": times, "how": how}
        if args.out is not None:
            np.savez(args.out.with_suffix(f".{name}.npz"), com_x=com_x, com_y=com_y)
    text = json.dumps({"peers": report}, indent=1)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
