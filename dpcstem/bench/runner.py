"""A benchmark run: the bandwidth probed at the start and the end, each case timed against
its NumPy counterpart, the peers on the headline 4D case, time against size and threads."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numba
import numpy as np

from ..errors import InputDataError
from . import cases as _cases
from .commands import measure_command
from .config import FULL, BenchConfig
from .peers import PEERS, default_peers_python, run_peers
from .report import fmt_ratio
from .probes import (PEAK_MEMORY_METHOD, OtherLoad, measure_bandwidth, on_threads, peak_memory_mb,
                     scaling_exponent, thread_counts, time_median)


def _time_case(factory, case, repeats):
    call = factory()
    if case.warm is not None:
        case.warm()
        median, times = time_median(call, repeats, warmup=0)
    else:
        median, times = time_median(call, repeats)
    return call, median, times


def measure(case: _cases.Case, repeats: int) -> dict:
    """Time one case and its NumPy counterpart, check they agree, and trace their peak memory."""
    repeats = case.repeats or repeats
    call, median, times = _time_case(case.kernel, case, repeats)
    got = call()
    del call
    numpy_median = agrees = numpy_peak = None
    if case.numpy is not None:
        ref, numpy_median, _ = _time_case(case.numpy, case, repeats)
        want = ref()
        try:
            case.check(got, want)
            agrees = True
        except AssertionError:
            agrees = False
        del ref, want
        numpy_peak = peak_memory_mb(case.numpy)
    return {
        "name": case.name,
        "shape": list(case.shape),
        "dtype": case.dtype,
        "median_s": median,
        "times_s": times,
        "pixels": case.pixels,
        "pixels_per_s": case.pixels / median,
        "bytes_read": case.bytes_read,
        "bytes_written": case.bytes_written,
        "numpy_median_s": numpy_median,
        "ratio_vs_numpy": None if numpy_median is None else numpy_median / median,
        "agrees_with_numpy": agrees,
        "peak_mb": peak_memory_mb(case.kernel),
        "numpy_peak_mb": numpy_peak,
        "peers": {p: None for p in PEERS},
        "_output": got if case.peers_frames is not None else None,
    }


def _add_rates(entry: dict, bandwidth: dict) -> dict:
    """GB/s read and moved, and their fractions of the read and triad bandwidth, from the times."""
    gbps = entry["bytes_read"] / entry["median_s"] / 1e9
    moved = (entry["bytes_read"] + entry["bytes_written"]) / entry["median_s"] / 1e9
    rates = {"gbps": gbps, "bandwidth_fraction": gbps / bandwidth["read_gbps"], "gbps_moved": moved,
             "moved_fraction": moved / bandwidth["triad_gbps"]}
    keys = list(entry)
    at = keys.index("bytes_written") + 1
    return {**{k: entry[k] for k in keys[:at]}, **rates, **{k: entry[k] for k in keys[at:]}}


def _versions():
    import scipy

    from .. import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"dpcstem": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "scipy": scipy.__version__, "platform": platform.platform(), "cpu": cpu}


def selected(name: str, only: Sequence[str] | None) -> bool:
    return only is None or any(name.startswith(token) for token in only)


def run(config: BenchConfig = FULL, *, only: Sequence[str] | None = None, peers_python: Path | None = None,
        log: Callable[[str], None] = print) -> dict:
    """Run the benchmarks of ``config`` and return the record (see :mod:`dpcstem.bench`).

    Parameters
    ----------
    config : BenchConfig
    only : sequence of str, optional
        Run only the benchmarks whose name starts with one of these (the bandwidth is
        always measured); ``"threads"`` selects the thread-scaling measurement.
    peers_python : path, optional
        Python of the peers environment (default :func:`default_peers_python`).
    log : callable
        Receives a line of progress per benchmark.

    Raises
    ------
    InputDataError
        When a name in ``only`` selects no benchmark.
    """
    names = _cases.case_names(config)
    if only:
        unknown = [t for t in only if not any(n.startswith(t) for n in names)]
        if unknown:
            raise InputDataError(f"--only {' '.join(unknown)}: no benchmark of that name; the names are "
                                 f"{', '.join(names)} (or any prefix, such as segments or com)")
    peers_python = default_peers_python() if peers_python is None else Path(peers_python)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    others = OtherLoad()
    counts = thread_counts()
    top = counts[-1]

    def probe(when):
        out = {}
        for t in counts:
            out[t] = measure_bandwidth(config.bandwidth_mib << 20, threads=t, repeats=config.repeats)
            log(f"bandwidth ({when}) on {t} thread(s): read {out[t]['read_gbps']:.1f} GB/s, "
                f"triad {out[t]['triad_gbps']:.1f} GB/s")
        return out

    start = probe("start")
    results = []
    commands = []
    with on_threads(top):
        for spec in _cases.specs(config):
            if not selected(spec.name, only):
                continue
            if spec.kind in _cases.COMMAND_KINDS:
                commands.append(measure_command(spec, config, log=log))
                continue
            case = _cases.build(spec, config)
            entry = measure(case, config.repeats)
            if case.peers_frames is not None and case.peers_frames.shape[0] == max(config.com_scans):
                com_x, com_y = entry["_output"]
                report = run_peers(case.peers_frames, com_x, com_y, python=peers_python,
                                   repeats=config.peer_repeats, threads=top)
                entry["peers"] = {p: (report[p]["median_s"] / entry["median_s"] if "median_s" in report.get(p, {})
                                      else None) for p in PEERS}
                entry["peer_details"] = report
            entry.pop("_output")
            results.append(entry)
            log(f"{case.name}: {entry['median_s'] * 1e3:.2f} ms, {fmt_ratio(entry['ratio_vs_numpy'])} NumPy")
            del case
    _cases.clear_inputs()
    threads = _thread_scaling(config, counts) if selected("threads", only) else {}
    end = probe("end")
    # The limit is the better of the two probes: one taken while another process ran is low.
    bandwidth = {t: {k: max(start[t][k], end[t][k]) for k in start[t]} for t in counts}
    results = [_add_rates(entry, bandwidth[top]) for entry in results]
    for row in threads.values():
        for t in counts:
            row[str(t)]["bandwidth_fraction"] = row[str(t)]["gbps"] / bandwidth[t]["read_gbps"]
    peer_versions = {}
    for entry in results:
        for name, detail in entry.get("peer_details", {}).items():
            peer_versions[name] = detail.get("version", detail.get("error"))
    machine = {
        "date": started.isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "threads": top,
        "threading_layer": numba.threading_layer(),
        "versions": {**_versions(), **peer_versions},
        "bandwidth_read_gbps": bandwidth[top]["read_gbps"],
        "bandwidth_triad_gbps": bandwidth[top]["triad_gbps"],
        "bandwidth_read_1thread_gbps": bandwidth[1]["read_gbps"],
        "bandwidth_triad_1thread_gbps": bandwidth[1]["triad_gbps"],
        "bandwidth_array_mib": config.bandwidth_mib,
        "bandwidth_probes": {when: {str(t): v for t, v in probe_.items()} for when, probe_ in
                             (("start", start), ("end", end))},
        "peak_memory_method": PEAK_MEMORY_METHOD,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "other_processes_cpu_fraction": others.fraction(),
        "config": dataclasses.asdict(config),
    }
    return {"machine": machine, "results": results, "commands": commands,
            "scaling": _size_scaling(results + commands), "threads": threads}


def _size_scaling(results) -> dict:
    """Time against size for the four-segment kernel (linear, float32), the centre of mass and the
    reconstruct, bias-series and com commands (end to end). A command's time holds a cost that does
    not grow with the scan (``start_s``); ``exponent_beyond_start`` fits what is left."""
    out = {}
    for series, prefix in (("segments_linear_float32", "segments_linear_float32_"), ("com_uint16", "com_uint16_"),
                           ("cli_reconstruct_uint16", "cli_reconstruct_uint16_"),
                           ("cli_bias_series_uint16", "cli_bias_series_uint16_"),
                           ("cli_com_uint16", "cli_com_uint16_")):
        chosen = sorted((r for r in results if r["name"].startswith(prefix)), key=lambda r: r["pixels"])
        if len(chosen) >= 2:
            pixels, times = [r["pixels"] for r in chosen], [r["median_s"] for r in chosen]
            out[series] = {"pixels": pixels, "median_s": times,
                           "ns_per_pixel": [t / p * 1e9 for p, t in zip(pixels, times)],
                           "exponent": scaling_exponent(pixels, times)}
            beyond = [r["median_s"] - r["start_s"] for r in chosen if "start_s" in r]
            if len(beyond) == len(chosen) and min(beyond) > 0:
                out[series]["exponent_beyond_start"] = scaling_exponent(pixels, beyond)
    return out


def _thread_scaling(config, counts) -> dict:
    """Median time of the headline four-segment and centre-of-mass kernels on 1 and all threads."""
    n = max(config.segment_sizes)
    s = max(config.com_scans)
    f = config.frame_size
    picks = [_cases.spec("segments", response="linear", dtype="float32", n=n),
             _cases.spec("com", dtype="uint16", shape=(s, s, f, f))]
    out = {}
    for spec in picks:
        case = _cases.build(spec, config)
        call = case.kernel()
        row = {}
        for t in counts:
            with on_threads(t):
                median, _ = time_median(call, config.repeats)
            row[str(t)] = {"median_s": median, "gbps": case.bytes_read / median / 1e9}
        if len(counts) > 1:
            row["speedup"] = row["1"]["median_s"] / row[str(counts[-1])]["median_s"]
        out[case.name] = row
        del call, case
        _cases.clear_inputs()
    return out
