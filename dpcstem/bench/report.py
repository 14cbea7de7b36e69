"""The record as Markdown tables (the README's form) and as a JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .peers import PEERS


def fmt_ratio(value):
    return "—" if value is None else f"{value:.1f}×"


def _fmt_same(value):
    return "—" if value is None else ("yes" if value else "NO")


def _fmt_mb(value):
    return "—" if value is None else f"{value:.0f}"


def format_table(record: dict) -> str:
    """The record as Markdown tables (the README's form)."""
    m = record["machine"]
    versions = m["versions"]
    lines = [
        f"dpcstem {versions['dpcstem']} benchmark, {m['date']}, {versions['cpu']}, {m['cores']} cores, "
        f"{m['threads']} Numba threads; NumPy {versions['numpy']}, Numba {versions['numba']}, "
        f"SciPy {versions['scipy']}",
        f"Memory bandwidth (the better of two probes in this run, {m['bandwidth_array_mib']} MiB arrays): read "
        f"{m['bandwidth_read_gbps']:.1f} GB/s ({m['bandwidth_read_1thread_gbps']:.1f} on one thread), triad "
        f"{m['bandwidth_triad_gbps']:.1f} GB/s ({m['bandwidth_triad_1thread_gbps']:.1f} on one thread). Other "
        f"processes used {100 * m['other_processes_cpu_fraction']:.0f}% of the machine's CPU time during the run.",
        "Ratios (× NumPy, × peers: their time / dpcstem's), not absolute times, are the figures to compare.",
        "",
        "| benchmark | median ms | Mpx/s | GB/s read | % of read BW | % of triad BW (read + written) | × NumPy | "
        "same result | peak MB (NumPy) | × LiberTEM | × py4DSTEM | × pyxem |",
        "|---|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|",
    ]
    for r in record["results"]:
        peers = r["peers"]
        lines.append(
            f"| {r['name']} | {r['median_s'] * 1e3:.1f} | {r['pixels_per_s'] / 1e6:.0f} | {r['gbps']:.2f} | "
            f"{100 * r['bandwidth_fraction']:.0f} | {100 * r['moved_fraction']:.0f} | {fmt_ratio(r['ratio_vs_numpy'])} | "
            f"{_fmt_same(r['agrees_with_numpy'])} | {r['peak_mb']:.0f} ({_fmt_mb(r['numpy_peak_mb'])}) | "
            f"{fmt_ratio(peers['libertem'])} | {fmt_ratio(peers['py4dstem'])} | {fmt_ratio(peers['pyxem'])} |")
    if record.get("commands"):
        lines += ["", "Commands end to end (a subprocess of the real command line; the time to read the input cold "
                  "and to write the output to the disk (fsync, as the commands do; the faster of through the "
                  "page cache and around it) measured in the same run, in the same folder; start: the same "
                  "command on a 64 × 64 scan, what it costs whatever the size):", "",
                  "| command | median s (warm) | cold s | read s cold (warm) | write s (buffered) | × (read + write) | "
                  "start s | × (read + write + start) | peak RSS MB | MB in → out |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in record["commands"]:
            lines.append(f"| {c['name']} | {c['median_s']:.2f} | {c['cold_s']:.2f} | {c['read_s_cold']:.2f} "
                         f"({c['read_s_warm']:.2f}) | {c['write_s']:.2f} ({c.get('write_s_buffered') or c['write_s']:.2f}) | "
                         f"{c['ratio_vs_io']:.1f}× | {c['start_s']:.2f} | "
                         f"{c['ratio_vs_io_and_start']:.1f}× | "
                         f"{c['peak_rss_mb']:.0f} | {c['bytes_read'] / 1e6:.0f} → {c['bytes_written'] / 1e6:.0f} |")
        for c in (c for c in record["commands"] if "read_rate_fraction" in c):
            direct = c.get("read_s_direct")
            around = "" if direct is None else f", {direct:.2f} s around it (O_DIRECT)"
            lines.append(f"- {c['name']}: every run cold (median {c['median_s']:.2f} s), "
                         f"{100 * c['read_rate_fraction']:.0f}% of the file's sequential read rate (reading it "
                         f"took {c['read_s_cold']:.2f} s through the page cache{around}), peak RSS "
                         f"{c['peak_rss_mb']:.0f} MB")
        for c in (c for c in record["commands"] if c.get("command_stages")):
            stages = "; ".join(f"{k} {v:.2f} s" for k, v in c["command_stages"].items())
            lines.append(f"- {c['name']}, the stage times the command printed: {stages}")
        for c in (c for c in record["commands"] if c["stages"]):
            stages = ", ".join(f"{k} {v:.2f} s" for k, v in c["stages"].items())
            comp = ", ".join(f"{k}: {v['seconds']:.2f} s, {v['mb']:.0f} MB" for k, v in c["compression"].items())
            lines.append(f"- {c['name']} in-process stages: {stages}; result file by compression: {comp}")
    details = [(r["name"], r["peer_details"]) for r in record["results"] if "peer_details" in r]
    for name, report in details:
        lines.append("")
        lines.append(f"Peers on {name}:")
        for peer in PEERS:
            d = report.get(peer, {"error": "not run"})
            if "error" in d:
                lines.append(f"- {peer}: {d['error']}")
            else:
                lines.append(f"- {peer} {d['version']}: {d['median_s'] * 1e3:.1f} ms, centre of mass within "
                             f"{d.get('max_diff_px', math.nan):.1e} px of dpcstem's; {d['how']}")
    if record["scaling"]:
        lines += ["", "Time against size (exponent of a power-law fit; 1 is linear):"]
        for series, s in record["scaling"].items():
            per = ", ".join(f"{p / 1e6:.2f} Mpx: {ns:.2f} ns/px" for p, ns in zip(s["pixels"], s["ns_per_pixel"]))
            beyond = f"; {s['exponent_beyond_start']:.2f} beyond the start" if "exponent_beyond_start" in s else ""
            lines.append(f"- {series}: exponent {s['exponent']:.2f}{beyond} ({per})")
    if record["threads"]:
        lines += ["", "Threads:"]
        for name, row in record["threads"].items():
            parts = [f"{t} thread(s) {v['median_s'] * 1e3:.1f} ms = {100 * v['bandwidth_fraction']:.0f}% of that "
                     f"bandwidth" for t, v in row.items() if t != "speedup"]
            speed = f"; speed-up {row['speedup']:.2f}" if "speedup" in row else ""
            lines.append(f"- {name}: {', '.join(parts)}{speed}")
    lines += ["", f"Peak memory: {m['peak_memory_method']}."]
    return "\n".join(lines)


def write_json(record: dict, path: Path) -> Path:
    """Write the record as JSON through a temporary file renamed into place."""
    from ..io.output import atomic_output

    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1, default=_json_default))
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
