"""The ``dpcstem`` command.

Each subcommand lives in its own module of this package, which provides
``add_parser(subparsers)`` (registering the subcommand with ``set_defaults(run=...)``).
Modules import their heavy dependencies inside ``run`` so that ``dpcstem --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..errors import DPCError

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("reconstruct", "bias_series", "com", "thickness", "simulate", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="dpcstem",
        description="Quantitative DPC-STEM: deflection, electric field, charge density and bias series.",
    )
    parser.add_argument("--version", action="version", version=f"dpcstem {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point: run one subcommand and return its exit status."""
    from .. import __version__

    parser = build_parser()
    args = parser.parse_args(argv)
    formatted = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        status = args.run(args)
    except DPCError as exc:
        print(f"dpcstem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dpcstem: interrupted; no output was written", file=sys.stderr)
        return 130
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
    return int(status or 0)


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"dpcstem: warning: {message}\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
