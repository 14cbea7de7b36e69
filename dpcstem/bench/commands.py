"""End-to-end cases: a command of the real command line, run as a subprocess on a file the
benchmark writes, timed from start to exit, against the time to read its input and write its
output measured in the same run on the same folder.

``cli_bias_series_uint16_Mx4xNxN`` runs ``dpcstem bias-series`` on M such files (biases 0,
0.5, 1, … V) with the same options. For ``cli_reconstruct_uint16_4xNxN`` the acquisition is a (4, N, N) uint16 ``.npy`` stack (the
synthetic segments of :mod:`.cases`, unit gains); the command is
``dpcstem reconstruct FILE --kv 200 --alpha 10 --collection 0 20 --step 0.5 --thickness 100
-o OUT.h5`` (exact response, finite-difference charge, mirror potential: the defaults).
``cli_com_uint16_SxSxFxF`` runs ``dpcstem com`` on an (S, S, F, F) uint16 ``.npy`` of frames
(a bright-field disc; :func:`com_options`), only cold (the file evicted before each run); the
full configuration's largest file is larger than the machine's memory, so the reduction streams
from disk; ``read_rate_fraction`` = the cold read time / the command's time, the read time
being the faster of reading through the page cache and around it (``read_s_direct``,
``O_DIRECT``, which the command uses for a file too large to stay cached).
Reported:

* ``median_s`` of the command (interpreter start and imports included: what a user waits);
* ``read_s``: reading the input file's bytes, with the page cache emptied of it first
  (``posix_fadvise(DONTNEED)``: cold) and again straight after (warm); ``write_s``: writing
  as many bytes as the result file holds to a new file in the same folder and forcing them to
  the disk (fsync, as the command does before the rename), the faster of through the page
  cache (``write_s_buffered``) and around it (``write_s_direct``); ``ratio_vs_io`` =
  median_s / (cold read + write);
* ``start_s``: the same command on a 64 × 64 scan (warm): what it costs whatever the size
  (interpreter start, imports, loading Numba's cache); ``ratio_vs_io_and_start`` =
  median_s / (cold read + write + start_s), how far the size-dependent work is from the I/O;
* ``peak_rss_mb``: the command's peak resident memory (its own VmHWM, see :func:`run_command`);
* ``command_stages``: the stage times the command printed (``stage times: …``) in its timed run
  nearest the median (each run's in ``runs``);
* ``stages``: the same work in this process, stage by stage (read, the segment kernel, the
  checks of the defaults the command makes (rotation, descan plane), field, charge
  and potential, the SHA-256 of the input, the HDF5 write with the default compression), and the result file written with each compression offered
  (``compression``: seconds and MB), which is how the default was chosen.

The command runs cold first (the input evicted from the page cache), then warm.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..memory import DIRECT_ALIGN, aligned_bytes
from ..progress import read_summary
from .cases import Spec, _rng, bias_segments

#: The options of the timed command (a 0.5 nm step, 100 nm thick, 200 kV, α = 10 mrad).
RECONSTRUCT_OPTIONS = ("--kv", "200", "--alpha", "10", "--collection", "0", "20", "--step", "0.5",
                       "--thickness", "100")

COMPRESSIONS = (None, "lzf", "gzip")


def _evict(path: Path):
    """Drop a file's pages from the page cache (clean pages only; no privileges needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_seconds(path: Path, *, cold: bool, direct: bool = False) -> float | None:
    """Seconds to read a whole file in 16 MiB blocks (after evicting it when ``cold``), with the
    kernel told the reading is sequential (its larger read-ahead); ``direct``: in 64 MiB blocks
    around the page cache (``O_DIRECT``, as :mod:`dpcstem.fourd.reading` reads a file too large
    to stay cached), or None where the file system refuses it."""
    if cold:
        _evict(path)
    start = time.perf_counter()
    if direct:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except (OSError, AttributeError):
            return None
        buffer = aligned_bytes(64 << 20, DIRECT_ALIGN)
        try:
            position = 0
            while (n := os.preadv(fd, [buffer], position)) == buffer.size:  # a short read is the end
                position += n
        except OSError:
            return None
        finally:
            os.close(fd)
        return time.perf_counter() - start
    with open(path, "rb", buffering=0) as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while fh.read(16 << 20):
            pass
    return time.perf_counter() - start


def write_seconds(folder: Path, nbytes: int, *, direct: bool = False) -> float | None:
    """Seconds to write ``nbytes`` to a new file in ``folder`` in 16 MiB blocks and force it to
    the disk, as every dpcstem output is before it is renamed into place
    (:func:`dpcstem.io.output.atomic_output`); ``direct``: around the page cache (``O_DIRECT``,
    as a bias series' maps are written), or None where the file system refuses it. The file is
    removed after."""
    block = aligned_bytes(min(-(-nbytes // DIRECT_ALIGN) * DIRECT_ALIGN, 16 << 20), DIRECT_ALIGN)
    block[:] = np.random.default_rng(0).integers(0, 255, block.size, dtype=np.uint8)
    path = folder / "write-probe.bin"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    start = time.perf_counter()
    if direct:
        try:
            fd = os.open(path, flags | os.O_DIRECT, 0o644)
        except (OSError, AttributeError):
            return None
    else:
        fd = os.open(path, flags, 0o644)
    try:
        left = nbytes
        while left > 0:  # a direct write takes whole device blocks: the last one is cut back after
            left -= os.write(fd, block[:min(len(block), -(-left // DIRECT_ALIGN) * DIRECT_ALIGN if direct else left)])
        os.ftruncate(fd, nbytes)
        os.fsync(fd)
    except OSError:
        if not direct:
            raise
        return None
    finally:
        os.close(fd)
        path.unlink()
    return time.perf_counter() - start


#: Runs ``python -m dpcstem ARGS`` and, at exit, writes the process's own peak resident memory
#: (VmHWM, kB) to the file named by DPCSTEM_BENCH_PEAK: a forked child's ``ru_maxrss`` would keep
#: the peak of the parent it was forked from, the benchmark's.
_LAUNCH = """
import atexit, os, runpy, sys

def _peak():
    with open("/proc/self/status") as fh:
        kb = next((line.split()[1] for line in fh if line.startswith("VmHWM:")), "")
    with open(os.environ["DPCSTEM_BENCH_PEAK"], "w") as fh:
        fh.write(kb)

atexit.register(_peak)
sys.argv[0] = "dpcstem"
runpy.run_module("dpcstem", run_name="__main__", alter_sys=True)
"""


def run_command(args, *, env=None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, output) of ``python -m dpcstem ARGS`` as a subprocess.

    The peak is the command's own (VmHWM) where /proc exists, else ``wait4``'s ``ru_maxrss``
    (which can hold the benchmark's own peak, inherited through the fork).
    """
    own_peak = Path("/proc/self/status").is_file()
    with tempfile.NamedTemporaryFile(prefix="dpcstem-peak-", delete=False) as fh:
        peak_file = Path(fh.name)
    env = dict(os.environ if env is None else env, DPCSTEM_BENCH_PEAK=str(peak_file))
    launch = ["-c", _LAUNCH] if own_peak else ["-m", "dpcstem"]
    try:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *launch, *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        with proc.stdout:
            out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        kb = peak_file.read_text().strip() if own_peak else ""
    finally:
        peak_file.unlink()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = out.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"dpcstem {args[0]} failed (status {proc.returncode}): {tail[0]}")
    peak_mb = int(kb) / 1024 if kb else usage.ru_maxrss / 1024  # both in KiB on Linux
    return seconds, peak_mb, out


def _stages(path: Path, folder: Path, log) -> tuple[dict, dict]:
    """The reconstruct command's work in this process, stage by stage, and each compression."""
    import h5py

    from ..calibration import Calibration
    from ..io import read_segments, write_result
    from ..io.results import sha256_file
    from ..reconstruct import reconstruct_deflection, segment_deflection

    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=0.5, thickness_nm=100, collection_inner_mrad=0,
                      collection_outer_mrad=20, sources={"detector_rotation_deg": "default", "flip": "default"})
    stages = {}

    def timed(name, call):
        start = time.perf_counter()
        value = call()
        stages[name] = time.perf_counter() - start
        log(f"  stage {name}: {stages[name]:.2f} s")
        return value

    acquisition = timed("read", lambda: read_segments(path))
    tx, ty, _, valid = timed("segment kernel", lambda: segment_deflection(acquisition.segments, cal))
    timed("checks of the defaults (rotation, descan plane)", lambda: _default_checks(tx, ty, cal, valid))
    result = timed("field, charge, potential", lambda: reconstruct_deflection(tx, ty, cal, valid=valid))
    timed("sha256 of the input", lambda: sha256_file(path))
    maps = result.maps()
    out = folder / "stage.h5"
    timed("write (default compression)", lambda: write_result(out, maps, cal.to_attrs(), overwrite=True))
    out.unlink()
    compression = {}
    for method in COMPRESSIONS:
        target = folder / f"compression-{method}.h5"
        start = time.perf_counter()
        with h5py.File(target, "w") as f:
            for name, (array, _) in maps.items():
                array = np.asarray(array)
                array = array.astype(np.float32) if array.dtype.kind == "f" else array.astype(np.uint8)
                f.create_dataset(name, data=array, chunks=array.shape if array.ndim == 2 else None,
                                 compression=method, shuffle=method is not None and array.ndim == 2)
        seconds = time.perf_counter() - start
        compression[str(method)] = {"seconds": seconds, "mb": target.stat().st_size / 1e6}
        log(f"  compression {method}: {seconds:.2f} s, {compression[str(method)]['mb']:.0f} MB")
        target.unlink()
    return stages, compression


def _default_checks(tx, ty, cal, valid):
    """What the command does for what the file does not record: the rotation check (the curl of
    the assumed rotation and of the best one) and the descan plane check, as ``workflows`` runs them."""
    import warnings

    from ..workflows.common import PYTHON_NAMES, _rotation_lines, descan_plane_lines

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _rotation_lines(tx, ty, cal, valid, names=PYTHON_NAMES), descan_plane_lines(tx, ty, valid, cal,
                                                                                          PYTHON_NAMES, {})


def _reconstruct_job(spec: Spec, folder: Path):
    _, n, _ = spec["shape"]
    path = folder / f"acquisition-{n}.npy"
    np.save(path, bias_segments(1, n, _rng(1, n, 7))[0])
    return [path], ["reconstruct", path, *RECONSTRUCT_OPTIONS], f"a {n}×{n} acquisition"


def _bias_series_job(spec: Spec, folder: Path):
    m, _, n, _ = spec["shape"]
    paths = []
    for i, seg in enumerate(bias_segments(m, n, _rng(m, n, 8))):
        paths.append(folder / f"bias-{i}.npy")
        np.save(paths[-1], seg)
    biases = [f"{0.5 * i:g}" for i in range(m)]
    return paths, ["bias-series", *paths, "--bias", *biases, *RECONSTRUCT_OPTIONS], f"{m} acquisitions of {n}×{n}"


#: The com command's options besides the detector's (set from the frame size by :func:`com_options`).
COM_OPTIONS = ("--kv", "200", "--alpha", "10", "--step", "0.5", "--thickness", "100")


def com_options(size):
    """The com command's options for frames of side ``size``: a bright-field disc of radius
    0.16·size is α = 10 mrad, the mask 1.2 times the disc."""
    radius = 0.16 * size
    return (*COM_OPTIONS, "--mrad-per-px", f"{10 / radius:.6g}", "--mask-radius", f"{1.2 * radius:.6g}")


def disc_frames(count, size, rng):
    """``count`` (size, size) uint16 frames: a bright-field disc of radius 0.16·size and ~1000
    counts, shifted by up to ±2 % of the frame, on a background of ~10 counts (Poisson noise)."""
    ky, kx = np.indices((size, size)) - (size - 1) / 2
    radius = 0.16 * size
    out = np.empty((count, size, size), np.uint16)
    for i in range(count):
        dy, dx = rng.uniform(-0.02, 0.02, 2) * size
        lam = np.where((ky - dy) ** 2 + (kx - dx) ** 2 <= radius ** 2, 1000.0, 10.0)
        out[i] = rng.poisson(lam)
    return out


def _com_job(spec: Spec, folder: Path):
    scan, _, f, _ = spec["shape"]
    path = folder / f"frames-{scan}.npy"
    # one block of distinct frames written over and over: the file's bytes are what is timed
    pattern = disc_frames(min(1024, scan * scan), f, _rng(scan, f, 9)).reshape(-1)
    frames = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(scan, scan, f, f))
    flat = frames.reshape(-1)
    for start in range(0, flat.size, pattern.size):
        part = flat[start:start + pattern.size]
        part[...] = pattern[:part.size]
        if start % (256 * pattern.size) == 0:
            frames.flush()  # written back as it goes, so that the page cache can drop it
    frames.flush()
    del frames, flat, part
    return [path], ["com", path, *com_options(f)], f"a {scan}×{scan} scan of {f}×{f} frames"


#: kind → the job: (input files written to the folder, the command's arguments, a description).
JOBS = {"cli_reconstruct": _reconstruct_job, "cli_bias_series": _bias_series_job, "cli_com": _com_job}

#: Kinds run only with the input evicted from the page cache: a file as large as memory is not
#: cached between runs, and streaming from disk is what is measured.
COLD_ONLY = ("cli_com",)


#: The scan side of the command run to measure its size-independent cost (``start_s``).
START_SIDE = 64


def _small(spec: Spec) -> Spec:
    """The same case on a scan of START_SIDE × START_SIDE (or its own, if smaller)."""
    shape = tuple(spec["shape"])
    if spec.kind == "cli_com":  # (scan, scan, frame, frame)
        shape = (min(START_SIDE, shape[0]), min(START_SIDE, shape[1]), *shape[2:])
    else:  # (..., 4, scan, scan)
        shape = (*shape[:-2], min(START_SIDE, shape[-2]), min(START_SIDE, shape[-1]))
    return Spec(spec.kind, tuple((k, shape if k == "shape" else v) for k, v in spec.params))


def start_seconds(spec: Spec, repeats=2) -> float:
    """Median warm time of the command on a START_SIDE-pixel scan (after one untimed run)."""
    with tempfile.TemporaryDirectory(prefix="dpcstem-bench-start-") as tmp:
        folder = Path(tmp)
        _, args, _ = JOBS[spec.kind](_small(spec), folder)
        times = [run_command([*args, "-o", folder / "result.h5", "--overwrite"])[0] for _ in range(repeats + 1)]
    return float(np.median(times[1:]))


def measure_command(spec: Spec, config, log=print) -> dict:
    """Run one end-to-end case (see the module docstring) and return its record entry."""
    with tempfile.TemporaryDirectory(prefix="dpcstem-bench-") as tmp:
        folder = Path(tmp)
        inputs, args, what = JOBS[spec.kind](spec, folder)
        out = folder / "result.h5"
        size = sum(p.stat().st_size for p in inputs)
        log(f"{spec.name}: dpcstem {args[0]} of {what} ({size / 1e6:.0f} MB)")
        runs = []
        repeats = max(config.command_repeats, 1)
        caches = ["cold"] * repeats if spec.kind in COLD_ONLY else ["cold"] + ["warm"] * repeats
        for cache in caches:
            if cache == "cold":
                for p in inputs:
                    _evict(p)
            seconds, rss, printed = run_command([*args, "-o", out, "--overwrite"])
            runs.append({"cache": cache, "seconds": seconds, "peak_rss_mb": rss, "stages": read_summary(printed)})
            log(f"  command ({cache} cache): {seconds:.2f} s, peak RSS {rss:.0f} MB")
        written = out.stat().st_size
        read_cold = sum(read_seconds(p, cold=True) for p in inputs)
        read_warm = sum(read_seconds(p, cold=False) for p in inputs)
        write_buffered, write_direct = write_seconds(folder, written), write_seconds(folder, written, direct=True)
        write = min(w for w in (write_buffered, write_direct) if w is not None)
        log(f"  read {read_cold:.2f} s cold, {read_warm:.2f} s warm; write {write_buffered:.2f} s"
            + ("" if write_direct is None else f", {write_direct:.2f} s around the page cache (O_DIRECT)"))
        read_direct, read = None, read_cold
        if spec.kind == "cli_com":  # the file's read rate: the faster of through and around the page cache
            read_direct = read_seconds(inputs[0], cold=True, direct=True)
            if read_direct is not None:
                log(f"  read {read_direct:.2f} s cold around the page cache (O_DIRECT)")
                read = min(read_cold, read_direct)
        stages, compression = _stages(inputs[0], folder, log) if spec.kind == "cli_reconstruct" else ({}, {})
    start = start_seconds(spec, max(config.command_repeats, 1))
    log(f"  the same command on a {START_SIDE}×{START_SIDE} scan: {start:.2f} s")
    timed_runs = [r for r in runs if r["cache"] == ("cold" if spec.kind in COLD_ONLY else "warm")]
    median = float(np.median([r["seconds"] for r in timed_runs]))
    pixels = int(np.prod(spec["shape"][:2])) if spec.kind == "cli_com" else int(np.prod(spec["shape"])) // 4
    entry = {
        "name": spec.name,
        "shape": list(spec["shape"]),
        "dtype": spec["dtype"],
        "command": "dpcstem " + " ".join(str(a) if not isinstance(a, Path) else a.name for a in args) + " -o OUT.h5",
        "pixels": pixels,
        "median_s": median,
        "cold_s": runs[0]["seconds"],
        "runs": runs,
        "bytes_read": size,
        "bytes_written": written,
        "read_s_cold": read_cold,
        "read_s_warm": read_warm,
        "read_s_direct": read_direct,
        "write_s": write,
        "write_s_buffered": write_buffered,
        "write_s_direct": write_direct,
        "io_s": read + write,
        "ratio_vs_io": median / (read + write),
        "start_s": start,
        "ratio_vs_io_and_start": median / (read + write + start),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "stages": stages,
        # the stage times the command printed in its timed run nearest the median
        "command_stages": min(timed_runs, key=lambda r: abs(r["seconds"] - median))["stages"],
        "compression": compression,
    }
    if spec.kind == "cli_com":
        # the share of the file's sequential (cold) read rate the whole command reaches
        entry["read_rate_fraction"] = read / median
        log(f"  {entry['read_rate_fraction']:.0%} of the file's sequential read rate")
    return entry
