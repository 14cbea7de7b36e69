"""Benchmarks: each kernel against the memory bandwidth, plain NumPy and the peer packages.

The work of dpcstem is memory-bound, so the limit is the machine's memory bandwidth,
measured in the same run (DESIGN.md §5): a streaming read (a parallel sum over a float64
array far larger than the caches) and a triad ``a = b + s·c``, each on one thread and on all
of Numba's threads. Every benchmark then reports

* the median time over ``repeats`` calls after a warm-up call;
* throughput in pixels/s and in GB/s of input read, and the fraction of the measured read
  bandwidth that is (``bandwidth_fraction``); the bytes written are reported too, with the
  total traffic against the triad bandwidth (``moved_fraction``);
* the ratio to a plain NumPy/SciPy implementation of the same computation, timed in the
  same run (``ratio_vs_numpy`` = NumPy's median time / dpcstem's; above 1 dpcstem is
  faster), after checking that both give the same numbers (``agrees_with_numpy``);
* the peak memory of the call, outputs included, inputs excluded, by :mod:`tracemalloc`,
  which sees NumPy's allocations (and so SciPy's output arrays) but not Numba's internal
  ones nor a library's private scratch buffers;
* for the 4D centre of mass, the ratio to LiberTEM, py4DSTEM and pyxem computing the same
  centre of mass on the same array, run by ``benchmarks/peers.py`` in the separate
  environment ``.venv-peers`` (made by ``benchmarks/peers_env.sh``); null where absent.

Numba kernels are timed as they are meant to be called: outputs preallocated once and
reused (a fresh allocation would add the operating system's first-touch page faults to
every call). Absolute times on a shared machine are noise: the ratios measured in one run
are the figures to compare.

The machine-readable record (``dpcstem bench --json FILE``) is::

    {"machine": {"cores", "threads", "versions", "bandwidth_read_gbps", "bandwidth_triad_gbps",
                 "bandwidth_read_1thread_gbps", "bandwidth_triad_1thread_gbps", ...},
     "results": [{"name", "shape", "dtype", "median_s", "gbps", "bandwidth_fraction",
                  "ratio_vs_numpy", "peak_mb", "peers": {"libertem", "py4dstem", "pyxem"}, ...}],
     "commands": [{"name", "median_s", "cold_s", "read_s_cold", "read_s_warm", "read_s_direct", "write_s",
                   "write_s_buffered", "write_s_direct", "ratio_vs_io",
                   "start_s", "ratio_vs_io_and_start",
                   "peak_rss_mb", "stages", "command_stages", "compression", ...}],
     "scaling": {...}, "threads": {...}}

The ``commands`` are end-to-end runs of the real command line (:mod:`.commands`).

Modules: :mod:`.config` (sizes and repeats), :mod:`.probes` (bandwidth, time, memory, load),
:mod:`.baselines` (the NumPy versions), :mod:`.cases` (the cases, declared by their
parameters), :mod:`.commands` (whole commands as subprocesses), :mod:`.peers`, :mod:`.runner`
(a run), :mod:`.report` (tables and JSON).
"""

from .baselines import (numpy_centre_of_mass, numpy_curl, numpy_deflection_linear, numpy_deflection_table,
                        numpy_divergence, numpy_frame_sums, numpy_integrate_dct, numpy_integrate_mirror,
                        numpy_reconstruct, numpy_spectral_divergence)
from .cases import (Case, Spec, build, case_names, check_deflection, com_command_scans, spec, specs,
                    synthetic_frames, synthetic_segments)
from .config import FULL, QUICK, BenchConfig
from .peers import PEERS, default_peers_python, run_peers
from .probes import measure_bandwidth, peak_memory_mb, scaling_exponent, thread_counts, time_median
from .report import format_table, write_json
from .runner import run

__all__ = ["FULL", "PEERS", "QUICK", "BenchConfig", "Case", "Spec", "build", "case_names", "check_deflection",
           "com_command_scans", "default_peers_python", "format_table", "measure_bandwidth", "numpy_centre_of_mass", "numpy_curl",
           "numpy_deflection_linear", "numpy_deflection_table", "numpy_divergence", "numpy_frame_sums",
           "numpy_integrate_dct", "numpy_integrate_mirror", "numpy_reconstruct", "numpy_spectral_divergence",
           "peak_memory_mb", "run", "run_peers", "scaling_exponent", "spec", "specs", "synthetic_frames",
           "synthetic_segments", "thread_counts", "time_median", "write_json"]
