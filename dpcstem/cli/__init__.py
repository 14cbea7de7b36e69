"""The ``dpcstem`` command.

Each subcommand lives in its own module of this package, which provides
``add_parser(subparsers)`` (registering the subcommand with ``set_defaults(run=...)``).
Modules import their heavy dependencies inside ``run`` so that ``dpcstem --help`` is fast.

Whatever happens, the command says it in one line on stderr: a bad input or option exits
with status 2, an internal error with 1 (the traceback with ``--debug``, given before or
after the subcommand), a stop signal (SIGINT, SIGTERM, SIGHUP) with 128 + its number.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings

from ..errors import DPCError

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("reconstruct", "bias_series", "com", "thickness", "calibrate_response", "simulate", "demo", "bench")

#: Signals that stop a run with a message (the output being written is left as it was).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class OneLineParser(argparse.ArgumentParser):
    """Reports a bad option on one line (no usage block), like every other error of dpcstem."""

    def error(self, message):
        where = "" if self.prog == "dpcstem" else f"{self.prog}: "
        self.exit(2, f"dpcstem: error: {where}{message} (see {self.prog} --help)\n")


class Stopped(KeyboardInterrupt):
    """A stop signal arrived outside the writing of an output."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = OneLineParser(
        prog="dpcstem",
        description="Quantitative DPC-STEM: deflection, electric field, charge density and bias series.",
    )
    parser.add_argument("--version", action="version", version=f"dpcstem {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True, parser_class=OneLineParser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.add_parser(sub)
    _debug_everywhere(sub)
    return parser


def _debug_everywhere(subparsers):
    """``--debug`` after the subcommand too (the internal-error message says "Rerun with --debug")."""
    for command in subparsers.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the full traceback of an internal error")
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _debug_everywhere(action)


#: glibc's mallopt parameters (malloc.h) and the values a command sets: blocks up to its largest
#: threshold (32 MiB: a float32 map of 4096², a float64 one of 2048²) come from the heap, and
#: freed memory stays there up to 2 GiB.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt(3) parameters
_TRIM_THRESHOLD = 2 << 30


def _keep_freed_maps():
    """Let a command reuse the memory of the maps it freed instead of faulting in new pages.

    glibc hands a large block (above its mmap threshold, at most 32 MiB) straight back to the
    system when it is freed, so a command that makes one map after another (a bias series)
    has the kernel zero and map every page of every map again. Here every block comes from
    the heap (no mmap) and the heap is not trimmed: the pages of a freed map serve the next.
    Measured at 8 × 2048² (float64 maps of 33.5 MB, over any threshold glibc allows): the
    kernel's page zeroing fell from 21 % to 5 % of bias-series' CPU samples, its page faults
    from 88 000 to 46 000, its peak memory rose 11 % (823 → 914 MB); a single 4096²
    reconstruct faults 33 000 pages instead of 187 000 and peaks 7 % higher (2.13 → 2.29 GB),
    at about the same CPU time. The process keeps what it freed until it exits. Only the
    command line does this (never an import of the library); elsewhere than glibc nothing
    happens.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_MAX, 0)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def main(argv=None) -> int:
    """Entry point: run one subcommand and return its exit status."""
    from .. import __version__

    argv = sys.argv[1:] if argv is None else list(argv)
    for stream in (sys.stdout, sys.stderr):  # a message never fails on a character the terminal lacks
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    undecodable = next((a for a in argv if _undecodable(a)), None)
    if undecodable is not None:
        shown = undecodable.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        print(f"dpcstem: error: {shown}: the name is not valid UTF-8, and dpcstem records file names as text "
              "in its results; rename the file", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    _keep_freed_maps()
    formatted = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    previous = _catch_stop_signals()
    stdout = sys.stdout
    sys.stdout = _ClosedPipeTolerant(stdout)
    try:
        status = args.run(args)
    except DPCError as exc:
        print(f"dpcstem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        written = getattr(exc, "written", ())
        done = f"{', '.join(map(str, written))} was written whole" if written else "no output was written"
        print(f"dpcstem: interrupted ({signal.Signals(signum).name}); {done}", file=sys.stderr)
        return 128 + signum
    except Exception as exc:  # an internal error: short message, traceback on --debug
        if args.debug:
            raise
        print(
            f"dpcstem {__version__}: internal error: {type(exc).__name__}: {exc}\n"
            "Rerun with --debug for the traceback, and report it.",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.formatwarning = formatted
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.stdout = stdout
        if sys.stdout is getattr(sys, "__stdout__", None) and _ClosedPipeTolerant.broken:
            _silence_stdout()
    return int(status or 0)


def _undecodable(text) -> bool:
    """An argument holding bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        str(text).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _catch_stop_signals() -> dict:
    """SIGTERM and SIGHUP stop the run like Ctrl-C: a message and 128 + the signal, no traceback."""
    import threading

    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return previous

    def stop(signum, frame):
        raise Stopped(signum)

    for signum in STOP_SIGNALS[1:]:
        previous[signum] = signal.signal(signum, stop)
    return previous


class _ClosedPipeTolerant:
    """Standard output that a closed pipe (``dpcstem ... | head``) does not stop: the result is written anyway."""

    broken = False

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if _ClosedPipeTolerant.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _ClosedPipeTolerant.broken = True
            return len(text)

    def flush(self):
        if not _ClosedPipeTolerant.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                _ClosedPipeTolerant.broken = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _silence_stdout():
    """After a closed pipe: point standard output at /dev/null so the exit flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"dpcstem: warning: {message}\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
