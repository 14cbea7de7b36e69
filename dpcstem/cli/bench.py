"""``dpcstem bench``: kernel throughput against the memory bandwidth, NumPy and the peers."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bench", help="benchmark the kernels against the measured memory bandwidth, NumPy and peer packages",
        description="Measure the memory bandwidth (streaming read and triad, GB/s), then time each kernel "
                    "(median of repeats after a warm-up) and a plain NumPy implementation of the same "
                    "computation in the same run; print a table of throughput (pixels/s, GB/s of input read), "
                    "fraction of the bandwidth, ratio to NumPy and peak memory (MB). The 4D centre of mass "
                    "is also timed in LiberTEM, py4DSTEM and pyxem where benchmarks/peers_env.sh has made "
                    ".venv-peers. Then `dpcstem reconstruct` runs end to end as a subprocess on 1024², 2048² "
                    "and 4096² acquisitions, `dpcstem bias-series` on 8 × 2048², and `dpcstem com` on 4D files "
                    "read cold (the largest larger than this machine's memory, written to and removed from a "
                    "temporary folder), against the time to read its input and write its output measured in "
                    "the same run, with peak RSS and a stage table. Ratios in one run, not absolute times, are "
                    "the figures to compare.")
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes (segments up to 1024², 64×64 scan of 128×128 frames, the commands on 1024² "
                        "and 2048², com on 0.13 and 0.5 GB files): a few minutes")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the machine-readable record (JSON) here")
    p.add_argument("--overwrite", action="store_true", help="replace the --json FILE if it exists")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only the benchmarks whose name starts with NAME (e.g. segments_linear, com, "
                        "divergence, bias_series, cli_reconstruct, cli_com, threads); the bandwidth is always measured")
    p.add_argument("--peers-python", type=Path, metavar="PYTHON",
                   help="Python of the peers environment (default: .venv-peers/bin/python in the source tree)")
    p.set_defaults(run=run)


def run(args):
    from .. import bench
    from ._common import check_output

    if args.json is not None:
        check_output(args.json, args.overwrite, suffixes=(".json",), what="benchmark record")
    config = bench.QUICK if args.quick else bench.FULL
    record = bench.run(config, only=args.only, peers_python=args.peers_python,
                       log=lambda line: print(line, flush=True))
    print()
    print(bench.format_table(record))
    if args.json is not None:
        bench.write_json(record, args.json)
        print(f"\nwrote {args.json}")
    return 0
