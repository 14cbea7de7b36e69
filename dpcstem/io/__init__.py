"""Reading acquisitions and writing results: the only place dpcstem touches files.

Submodules: :mod:`~dpcstem.io.segments` (four-segment acquisitions),
:mod:`~dpcstem.io.pixelated` (4D-STEM frames, opened lazily), :mod:`~dpcstem.io.results`
(the HDF5 result file), :mod:`~dpcstem.io.series` (a bias series' result, streamed),
:mod:`~dpcstem.io.signals` (HyperSpy interop). The names below are
imported on first use so that ``import dpcstem`` stays fast.
"""

import importlib

_WHERE = {
    "read_segments": "segments",
    "SegmentAcquisition": "segments",
    "read_spectrum": "spectra",
    "read_thickness_map": "results",
    "write_result": "results",
    "load_result_arrays": "results",
    "atomic_output": "results",
    "sha256_file": "results",
    "open_pixelated": "pixelated",
    "load_result": "signals",
    "SeriesWriter": "series",
    "write_table": "series",
    "read_image": "series",
    "result_to_signals": "signals",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
