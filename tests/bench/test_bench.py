"""The benchmark harness on tiny sizes: the record's schema, ratios taken from the measured
times, and NumPy references that compute what the kernels compute. No wall-clock limits."""

import dataclasses
import json
import math
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

from dpcstem import bench
from dpcstem.bench import probes
from dpcstem.cli import main
from dpcstem.response import QuadrantResponse
from dpcstem.kernels import deflection_linear, deflection_table

import naive
from helpers import assert_equal_to_float32_rounding, segments_with_faults

TINY = bench.BenchConfig(segment_sizes=(16, 24), derivative_size=17, fourier_size=12, com_scans=(2, 3),
                         frame_size=8, bias_maps=2, bias_size=16, command_sizes=(), com_command_scans=(), bandwidth_mib=1, repeats=2,
                         bias_repeats=1, peer_repeats=1)

RESULT_KEYS = {"name", "shape", "dtype", "median_s", "gbps", "bandwidth_fraction", "ratio_vs_numpy", "peak_mb",
               "peers"}
MACHINE_KEYS = {"cores", "versions", "bandwidth_read_gbps", "bandwidth_triad_gbps", "bandwidth_read_1thread_gbps",
                "bandwidth_triad_1thread_gbps", "date", "other_processes_cpu_fraction", "load_average_before"}


@pytest.fixture(scope="module")
def run_record(tmp_path_factory):
    """One tiny run, with a peers environment that does not exist, and its progress lines."""
    lines = []
    absent = tmp_path_factory.mktemp("nopeers") / "bin" / "python"
    record = bench.run(TINY, peers_python=absent, log=lines.append)
    return record, lines


@pytest.fixture(scope="module")
def cases():
    return {s.name: bench.build(s, TINY) for s in bench.specs(TINY)}


def test_record_has_the_schema_and_survives_json(run_record, tmp_path):
    record, lines = run_record
    assert MACHINE_KEYS <= set(record["machine"])
    assert record["machine"]["cores"] >= 1
    assert 0.0 <= record["machine"]["other_processes_cpu_fraction"] <= 1.0
    assert {"numpy", "numba", "scipy", "dpcstem", "python"} <= set(record["machine"]["versions"])
    names = [r["name"] for r in record["results"]]
    assert names == [n for n in bench.case_names(TINY) if n != "threads"]
    assert "segments_linear_float32_24" in names and "segments_exact_uint16_16" in names
    assert "com_uint16_3x3x8x8" in names and "bias_series_reconstruct_uint16_2x16x16" in names
    assert "bias_series_registered_uint16_2x16x16" in names
    for r in record["results"]:
        assert RESULT_KEYS <= set(r), r["name"]
        assert set(r["peers"]) == set(bench.PEERS)
        assert isinstance(r["shape"], list) and r["median_s"] > 0 and r["peak_mb"] >= 0
    path = bench.write_json(record, tmp_path / "bench.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(record))
    probes = len(bench.thread_counts())
    assert len(lines) == 2 * probes + len(names)  # bandwidth at the start and the end, one per benchmark
    assert all(line.startswith("bandwidth (start)") for line in lines[:probes])
    assert all(line.startswith("bandwidth (end)") for line in lines[-probes:])


def test_every_reference_agreed_with_its_kernel_in_the_run(run_record):
    record, _ = run_record
    disagree = [r["name"] for r in record["results"] if r["agrees_with_numpy"] is False]
    assert disagree == []
    without = [r["name"] for r in record["results"] if r["ratio_vs_numpy"] is None]
    assert without == ["bias_series_registered_uint16_2x16x16"]  # the one with no NumPy counterpart
    assert record["results"][-1]["agrees_with_numpy"] is None and record["results"][-1]["numpy_peak_mb"] is None


def test_ratios_and_rates_are_computed_from_the_measured_times(run_record):
    record, _ = run_record
    m = record["machine"]
    for r in record["results"]:
        assert r["median_s"] == statistics.median(r["times_s"])
        if r["numpy_median_s"] is not None:
            assert r["ratio_vs_numpy"] == pytest.approx(r["numpy_median_s"] / r["median_s"], rel=1e-12)
        assert r["gbps"] == pytest.approx(r["bytes_read"] / r["median_s"] / 1e9, rel=1e-12)
        assert r["bandwidth_fraction"] == pytest.approx(r["gbps"] / m["bandwidth_read_gbps"], rel=1e-12)
        assert r["pixels_per_s"] == pytest.approx(r["pixels"] / r["median_s"], rel=1e-12)
        moved = (r["bytes_read"] + r["bytes_written"]) / r["median_s"] / 1e9
        assert r["moved_fraction"] == pytest.approx(moved / m["bandwidth_triad_gbps"], rel=1e-12)


def test_the_table_shows_each_kernel_against_the_read_and_the_triad_bandwidth(run_record):
    """A kernel that writes as it reads is judged on both columns: its input against the read
    bandwidth, its input and output together against the triad."""
    record, _ = run_record
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in bench.format_table(record).splitlines()
            if line.startswith("| ")}
    header = rows.pop("benchmark")
    read, triad = header.index("% of read BW"), header.index("% of triad BW (read + written)")
    for r in record["results"]:
        cells = rows[r["name"]]
        assert cells[read] == f"{100 * r['bandwidth_fraction']:.0f}"
        assert cells[triad] == f"{100 * r['moved_fraction']:.0f}"


def test_the_limit_is_the_better_of_the_two_bandwidth_probes(run_record):
    record, _ = run_record
    m = record["machine"]
    probes = m["bandwidth_probes"]
    top = str(bench.thread_counts()[-1])
    for key, field in (("read_gbps", "bandwidth_read_gbps"), ("triad_gbps", "bandwidth_triad_gbps")):
        assert m[field] == max(probes["start"][top][key], probes["end"][top][key])
        assert m[field.replace("_gbps", "_1thread_gbps")] == max(probes["start"]["1"][key], probes["end"]["1"][key])
    for row in record["threads"].values():
        for t in bench.thread_counts():
            entry = row[str(t)]
            bw = max(probes["start"][str(t)]["read_gbps"], probes["end"][str(t)]["read_gbps"])
            assert entry["bandwidth_fraction"] == pytest.approx(entry["gbps"] / bw, rel=1e-12)


def test_bytes_read_are_the_inputs(run_record):
    record, _ = run_record
    by_name = {r["name"]: r for r in record["results"]}
    assert by_name["segments_linear_float32_24"]["bytes_read"] == 4 * 24 * 24 * 4
    assert by_name["segments_exact_uint16_16"]["bytes_read"] == 4 * 16 * 16 * 2
    assert by_name["com_uint16_3x3x8x8"]["bytes_read"] == 9 * 64 * 2
    assert by_name["com_uint16_3x3x8x8"]["pixels"] == 9 * 64


def test_scaling_and_threads_sections(run_record):
    record, _ = run_record
    seg = record["scaling"]["segments_linear_float32"]
    assert seg["pixels"] == [16 * 16, 24 * 24]
    assert seg["exponent"] == pytest.approx(bench.scaling_exponent(seg["pixels"], seg["median_s"]))
    assert record["scaling"]["com_uint16"]["pixels"] == [4 * 64, 9 * 64]
    counts = bench.thread_counts()
    for row in record["threads"].values():
        assert {str(t) for t in counts} <= set(row)
        if len(counts) > 1:
            assert row["speedup"] == pytest.approx(row["1"]["median_s"] / row[str(counts[-1])]["median_s"])


def test_absent_peers_are_null_and_said_to_be_not_installed(run_record):
    record, _ = run_record
    headline = next(r for r in record["results"] if r["name"] == "com_uint16_3x3x8x8")
    assert headline["peers"] == {p: None for p in bench.PEERS}
    assert all(headline["peer_details"][p]["error"].startswith("not installed") for p in bench.PEERS)
    table = bench.format_table(record)
    for peer in bench.PEERS:
        assert f"- {peer}: not installed" in table
    assert "the figures to compare" in table


def test_the_peers_run_in_the_environment_the_process_was_given(tmp_path):
    """dpcstem's kernel settings (OMP_WAIT_POLICY when the user gave none) do not reach the peers."""
    import os

    from dpcstem.kernels.config import SET_ENVIRONMENT

    python = tmp_path / "python"  # stands in for the peers' interpreter: reports what it was given
    python.write_text('#!/bin/sh\nwhile [ "$1" != "--out" ]; do shift; done\n'
                      'printf \'{"peers": {"libertem": {"error": "%s"}}}\' "${OMP_WAIT_POLICY-unset}" > "$2"\n')
    python.chmod(0o755)
    report = bench.run_peers(np.zeros((1, 1, 2, 2), np.uint16), np.zeros(1), np.zeros(1), python=python, repeats=1,
                             threads=1)
    given = "unset" if "OMP_WAIT_POLICY" in SET_ENVIRONMENT else os.environ["OMP_WAIT_POLICY"]
    assert report == {"libertem": {"error": given}}
    assert os.environ["OMP_WAIT_POLICY"] != "unset"  # this process has it, set by the user or by dpcstem


def test_peers_script_says_not_installed_where_the_packages_are_absent():
    """Run benchmarks/peers.py for real in this environment, which has none of the peers."""
    pytest.importorskip("numpy")
    for module in ("libertem", "py4DSTEM", "pyxem"):
        try:
            __import__(module)
        except ImportError:
            continue
        pytest.skip(f"{module} is installed in the test environment")
    frames = bench.synthetic_frames(2, 8, np.random.default_rng(0))
    com_x, com_y = bench.numpy_centre_of_mass(frames.reshape(-1, 8, 8))
    report = bench.run_peers(frames, com_x, com_y, python=Path(sys.executable), repeats=1, threads=1)
    assert report == {p: {"error": "not installed"} for p in bench.PEERS}


@pytest.mark.parametrize("name", [n for n in bench.case_names(TINY) if n != "threads" and "registered" not in n])
def test_numpy_reference_equals_the_kernel(cases, name):
    case = cases[name]
    got = case.kernel()()
    want = case.numpy()()
    case.check(got, want)
    assert any(np.isfinite(np.asarray(w, dtype=float)).any() for w in want)


@pytest.mark.parametrize("name", ["segments_exact_float32_16", "com_uint16_2x2x8x8", "integrate_dct_float64_12",
                                  "bias_series_reconstruct_uint16_2x16x16"])
def test_the_check_finds_a_difference(cases, name):
    case = cases[name]
    got = [np.array(g, dtype=float) for g in case.kernel()()]
    want = case.numpy()()
    got[0].flat[-1] += 1.0 + abs(got[0].flat[-1])
    with pytest.raises(AssertionError, match="Not equal to tolerance|Mismatched"):
        case.check(got, want)


def _dead_pixel_segments(rng, shape, dtype):
    seg = rng.uniform(200, 1200, (4, *shape))
    if shape[0] * shape[1] > 1:
        seg[:, 0, 0] = 0.0  # zero sum
        seg[0, -1, -1] = 5e4  # |dA| near 1: outside the exact response
        seg[2, -1, -1] = 0.0
    if np.dtype(dtype).kind == "f" and shape[0] * shape[1] > 3:
        seg[1, 0, 1] = np.nan
        seg[3, 1, 0] = np.inf
    if shape[0] * shape[1] > 5:
        seg[2, 1, 1] = 65535.0  # at the full scale of uint16: saturated
    return seg.astype(dtype)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (9, 4)])
def test_segment_references_on_dead_pixels_odd_shapes_and_one_pixel(dtype, shape):
    rng = np.random.default_rng([3, *shape, np.dtype(dtype).num])
    seg = _dead_pixel_segments(rng, shape, dtype)
    offset = np.array([3.0, 1.0, 2.0, 0.5])
    inv_gain = 1 / np.array([1.1, 0.9, 1.0, 1.05])
    axes = np.array([[0.6, 0.8], [-0.8, 0.6]])
    table = QuadrantResponse().inverse_table()
    outputs = [np.empty(shape, np.float32) for _ in range(3)] + [np.empty(shape, np.uint8)]
    full = 65535.0
    deflection_linear(seg, offset, inv_gain, 0.8, axes, 7.0, *outputs, full)
    bench.check_deflection(outputs, bench.numpy_deflection_linear(seg, offset, inv_gain, 0.8, axes, 7.0, full))
    deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin, table.step, axes, 7.0, *outputs, full)
    want = bench.numpy_deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin, table.step, axes, 7.0,
                                        full)
    bench.check_deflection(outputs, want)
    if shape != (1, 1):
        assert want[3][0, 0] == 0 and want[3][-1, -1] == 0 and want[3].sum() > 0
    if shape[0] * shape[1] > 5:
        assert want[3][1, 1] == 0  # the saturated pixel


def test_numpy_integrations_recover_a_known_potential():
    """The references are right, not merely equal to the library: a smooth f from its gradient."""
    ny, nx = 40, 56
    y, x = np.mgrid[0:ny, 0:nx] * 0.5
    f = np.cos(2 * np.pi * x / (nx * 0.5) * 1.5) * np.cos(2 * np.pi * y / (ny * 0.5) * 0.5) + 0.02 * x * y
    gy, gx = np.gradient(f, 0.5)
    for integrate in (bench.numpy_integrate_mirror, bench.numpy_integrate_dct):
        got = integrate(gx, gy, 0.5, 0.5)
        np.testing.assert_allclose(got, f - f.mean(), atol=0.03 * np.ptp(f))


def test_numpy_centre_of_mass_of_a_single_bright_pixel():
    frames = np.zeros((3, 6, 9), np.uint16)
    frames[0, 2, 7] = 10
    frames[1, 5, 0] = 3
    frames[2, 1, 1] = frames[2, 3, 5] = 4
    cx, cy = bench.numpy_centre_of_mass(frames)
    np.testing.assert_array_equal(cx, [7, 0, 3])
    np.testing.assert_array_equal(cy, [2, 5, 2])


def test_the_registered_series_runs_the_whole_bias_pipeline(cases):
    case = cases["bias_series_registered_uint16_2x16x16"]
    maps, net = case.kernel()()
    assert maps.shape == net.shape == (2, 16, 16)
    np.testing.assert_array_equal(net[0][np.isfinite(net[0])], 0.0)  # the 0 V map against itself
    assert np.isfinite(maps).mean() > 0.5


@pytest.mark.parametrize("size", [1, 4095, 4096, 3 * 4096 + 17])
def test_bandwidth_probes_compute_what_they_time(size):
    a = np.random.default_rng(size).random(size)
    assert probes.stream_sum(a) == pytest.approx(a.sum(), rel=1e-12)
    b, c, out = a[::-1].copy(), a * 2, np.empty(size)
    probes.triad(out, b, c, 3.0)
    np.testing.assert_allclose(out, b + 3.0 * c, rtol=1e-15)


def test_measure_bandwidth_reports_both_rates():
    rates = bench.measure_bandwidth(1 << 20, threads=1, repeats=2)
    assert set(rates) == {"read_gbps", "triad_gbps"}
    assert all(v > 0 and np.isfinite(v) for v in rates.values())


@pytest.mark.parametrize("sizes, times, exponent", [([1, 2, 4], [3, 6, 12], 1.0), ([10, 100], [1, 100], 2.0)])
def test_scaling_exponent(sizes, times, exponent):
    assert bench.scaling_exponent(sizes, times) == pytest.approx(exponent)


def test_peak_memory_sees_numpy_allocations():
    assert bench.peak_memory_mb(lambda: lambda: np.ones(2_000_000)) == pytest.approx(16.0, rel=0.05)


def test_cli_rejects_an_unknown_benchmark_name(capsys):
    assert main(["bench", "--quick", "--only", "segmnts"]) == 2
    err = capsys.readouterr().err
    assert "--only segmnts" in err and "segments_linear_uint16_512" in err


def test_cli_refuses_to_replace_a_json_record(tmp_path, capsys):
    out = tmp_path / "bench.json"
    out.write_text("{}")
    assert main(["bench", "--quick", "--only", "divergence", "--json", str(out)]) == 2
    assert "output exists" in capsys.readouterr().err
    assert out.read_text() == "{}"


def test_cli_runs_a_selection_and_writes_the_record(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--only", "curl", "--json", str(out),
                 "--peers-python", str(tmp_path / "none")]) == 0
    text = capsys.readouterr().out
    assert "| curl_float64_1024 |" in text and "the figures to compare" in text
    record = json.loads(out.read_text())
    assert [r["name"] for r in record["results"]] == ["curl_float64_1024"]
    assert record["threads"] == {} and record["machine"]["bandwidth_array_mib"] == 256


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_numpy_segment_baselines_equal_the_loop_oracles(dtype):
    """The baselines the kernels are timed against compute what the naive per-pixel loops compute."""
    rng = np.random.default_rng([6, np.dtype(dtype).num])
    seg = segments_with_faults(rng, (11, 23), dtype)
    offset, inv_gain = rng.uniform(0, 20, 4), 1 / rng.uniform(0.9, 1.1, 4)
    axes = np.array([[0.6, 0.8], [0.8, -0.6]])
    table = QuadrantResponse(0.2, 2.0).inverse_table()
    got = bench.numpy_deflection_linear(seg, offset, inv_gain, 0.8, axes, 3.0, 65535.0)
    assert_equal_to_float32_rounding(got, naive.deflection_linear(seg, offset, inv_gain, 0.8, axes, 3.0, 65535.0), 3.0)
    got = bench.numpy_deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin, table.step, axes, 3.0,
                                       65535.0)
    want = naive.deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin, table.step, axes, 3.0, 65535.0)
    assert_equal_to_float32_rounding(got, want, 3.0)
    assert want[3].sum() > 0


def test_names_derive_from_the_parameters_and_name_what_is_measured(cases):
    specs = bench.specs(dataclasses.replace(TINY, command_sizes=(16,)))
    names = [s.name for s in specs]
    assert len(set(names)) == len(names)
    assert bench.spec("segments", response="exact", dtype="float32", n=16).name == "segments_exact_float32_16"
    assert bench.spec("com", dtype="uint16", shape=(3, 3, 8, 8)).name == "com_uint16_3x3x8x8"
    assert "cli_reconstruct_uint16_4x16x16" in names and "cli_bias_series_uint16_2x4x16x16" in names
    for s in bench.specs(TINY):
        case = cases[s.name]
        assert case.name == s.name and case.dtype == s["dtype"]
        size = s["n"] if "n" in dict(s.params) else s["shape"][-1]
        assert case.shape[-1] == size and size in case.shape


def test_the_reconstruct_command_end_to_end_against_reading_and_writing(tmp_path):
    """Two tiny acquisitions through the real command line: the entry, its ratios and the stage table."""
    config = dataclasses.replace(TINY, command_sizes=(16, 32))
    lines = []
    record = bench.run(config, only=["cli_"], peers_python=tmp_path / "none", log=lines.append)
    assert record["results"] == []
    names = [c["name"] for c in record["commands"]]
    assert names == ["cli_reconstruct_uint16_4x16x16", "cli_reconstruct_uint16_4x32x32",
                     "cli_bias_series_uint16_2x4x16x16"]
    series = record["commands"].pop()
    assert series["pixels"] == 2 * 16 * 16 and series["bytes_read"] > 2 * 4 * 16 * 16 * 2 and series["stages"] == {}
    # the command's own stage times, as it printed them, sum to less than its run
    assert set(series["command_stages"]) == {"checking the files", "reconstructing, registering and subtracting",
                                             "layer figures and writing"}
    run = next(r for r in series["runs"] if r["stages"] == series["command_stages"])
    assert 0 < sum(series["command_stages"].values()) < run["seconds"]
    assert series["ratio_vs_io"] == pytest.approx(series["median_s"] / series["io_s"])
    for c in record["commands"]:
        n = c["shape"][-1]
        assert c["bytes_read"] > 4 * n * n * 2  # the .npy stack and its header
        assert c["bytes_written"] > 0 and c["peak_rss_mb"] > 0
        assert [r["cache"] for r in c["runs"]] == ["cold", "warm"]
        assert c["median_s"] == statistics.median(r["seconds"] for r in c["runs"] if r["cache"] == "warm")
        assert c["ratio_vs_io"] == pytest.approx(c["median_s"] / (c["read_s_cold"] + c["write_s"]))
        assert c["write_s"] == min(w for w in (c["write_s_buffered"], c["write_s_direct"]) if w is not None)
        assert 0 < c["start_s"] and c["ratio_vs_io_and_start"] == pytest.approx(
            c["median_s"] / (c["read_s_cold"] + c["write_s"] + c["start_s"]))
        assert {"read", "segment kernel", "field, charge, potential", "write (default compression)"} <= set(
            c["stages"])
        assert set(c["compression"]) == {"None", "lzf", "gzip"}
        assert {"reading", "segment kernel"} <= set(c["command_stages"])
        assert all(r["stages"] for r in c["runs"])
        assert all(v["mb"] > 0 for v in c["compression"].values())
    assert record["scaling"]["cli_reconstruct_uint16"]["pixels"] == [16 * 16, 32 * 32]
    table = bench.format_table(record)
    assert "| cli_reconstruct_uint16_4x32x32 |" in table and "in-process stages" in table
    assert any(line.startswith("  stage segment kernel") for line in lines)


def test_the_com_command_end_to_end_streams_cold_files(tmp_path):
    """Two small 4D files through the real com command, every run with the file evicted."""
    config = dataclasses.replace(TINY, frame_size=32, com_command_scans=(6, 9), command_repeats=2)
    record = bench.run(config, only=["cli_com"], peers_python=tmp_path / "none", log=lambda line: None)
    names = [c["name"] for c in record["commands"]]
    assert names == ["cli_com_uint16_6x6x32x32", "cli_com_uint16_9x9x32x32"]
    for c, scan in zip(record["commands"], (6, 9)):
        assert c["pixels"] == scan * scan and c["bytes_read"] > scan * scan * 32 * 32 * 2
        assert [r["cache"] for r in c["runs"]] == ["cold", "cold"]
        assert c["median_s"] == statistics.median(r["seconds"] for r in c["runs"])
        read = min(c["read_s_cold"], c["read_s_direct"] or math.inf)  # the faster way to read the file
        assert c["read_rate_fraction"] == pytest.approx(read / c["median_s"])
        assert c["bytes_written"] > 0 and c["peak_rss_mb"] > 0
    assert record["scaling"]["cli_com_uint16"]["pixels"] == [36, 81]
    assert "of the file's sequential read rate" in bench.format_table(record)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-cache residency (mincore) is read on Linux")
def test_the_direct_read_baseline_reads_around_the_page_cache(tmp_path):
    from dpcstem.bench.commands import read_seconds
    from dpcstem.fourd.reading import resident_fraction

    path = tmp_path / "f.npy"
    np.save(path, np.arange(3 * 2**20 + 5, dtype=np.uint16))  # not a whole number of blocks or pages
    seconds = read_seconds(path, cold=True, direct=True)
    if seconds is None:
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    assert seconds > 0 and resident_fraction(np.load(path, mmap_mode="r")) < 0.1
    read_seconds(path, cold=True)
    assert resident_fraction(np.load(path, mmap_mode="r")) == 1.0  # the other way, through the cache


@pytest.mark.parametrize("direct", [False, True], ids=["through the page cache", "around it"])
@pytest.mark.parametrize("nbytes", [1000, (16 << 20) + 4096 + 7])
def test_the_write_baseline_writes_every_byte_to_the_disk_as_the_commands_do(tmp_path, monkeypatch, direct, nbytes):
    """Every output is forced to the disk before its rename: the baseline it is held to too."""
    import fcntl

    from dpcstem.bench.commands import write_seconds

    forced, fsync = [], os.fsync

    def recorded(fd):
        fsync(fd)
        forced.append((os.fstat(fd).st_size, bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0))))

    monkeypatch.setattr(os, "fsync", recorded)
    seconds = write_seconds(tmp_path, nbytes, direct=direct)
    if seconds is None:
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    assert seconds > 0 and forced == [(nbytes, direct)]
    assert list(tmp_path.iterdir()) == []


def test_a_zero_com_scan_is_a_file_larger_than_memory():
    config = dataclasses.replace(TINY, frame_size=128, com_command_scans=(0,))
    (scan,) = bench.com_command_scans(config)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert memory < scan * scan * 128 * 128 * 2 < 1.1 * memory


def test_a_commands_peak_memory_is_its_own_not_the_benchmarks():
    """A forked child's ru_maxrss keeps the peak of the process it was forked from."""
    from dpcstem.bench.commands import run_command

    ballast = np.ones(600 * 2**20 // 8)  # 600 MiB resident in this process
    _, peak_mb, out = run_command(["--version"])
    assert "dpcstem" in out
    assert 0 < peak_mb < ballast.nbytes / 2**20


def test_a_commands_time_against_size_is_also_fitted_beyond_its_start_cost():
    """A fixed start of 1.5 s flattens the fit of the whole time; what grows with the scan is linear."""
    from dpcstem.bench.runner import _size_scaling

    rows = [{"name": f"cli_reconstruct_uint16_4x{n}x{n}", "pixels": n * n, "start_s": 1.5,
             "median_s": 1.5 + 2e-7 * n * n} for n in (1024, 2048, 4096)]
    fit = _size_scaling(rows)["cli_reconstruct_uint16"]
    assert fit["exponent"] < 0.8
    assert fit["exponent_beyond_start"] == pytest.approx(1.0, abs=1e-9)
    rows[0]["median_s"] = 1.4  # faster than its start: no fit beyond it
    assert "exponent_beyond_start" not in _size_scaling(rows)["cli_reconstruct_uint16"]
