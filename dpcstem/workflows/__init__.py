"""What each command does, as one call that Python users, notebooks and the CLI share.

:func:`reconstruct_acquisition` is ``dpcstem reconstruct``, :func:`com_acquisition` is
``dpcstem com``: each reads its inputs, settles every calibration value with its source
(``file``, ``user``, ``default``, ``measured``, ``fitted``), refuses what cannot be right,
warns (one line: the quantity, how far off, the option) where a default may be wrong, runs
the reconstruction with each acquisition passing through the segment kernel once, and
returns an :class:`Outcome`: the result, the root attributes that record where every
number came from, the lines to print and the files read. The CLI only parses its options,
calls one of these and prints (DESIGN.md §0, §1).

Every default that can change a number is in :data:`DEFAULTS`, the one table that
``docs/defaults.md`` is generated from (:func:`defaults_markdown`).

Messages name what the caller typed: ``names`` maps each input to its spelling
(:data:`PYTHON_NAMES` here, the option names on the command line).
"""
from .com import com_acquisition
from .common import (
    FIELD_KEYS,
    OPTION_NAMES,
    PYTHON_NAMES,
    Outcome,
    describe_calibration,
    interface_summary,
    merge_calibration,
    summary_lines,
)
from .defaults import DEFAULTS, FIELD_LIMIT_V_PER_M, Default, defaults_markdown
from .segments import reconstruct_acquisition
from .series import series_acquisitions

__all__ = ["DEFAULTS", "FIELD_KEYS", "FIELD_LIMIT_V_PER_M", "OPTION_NAMES", "PYTHON_NAMES", "Default", "Outcome",
           "com_acquisition", "defaults_markdown", "describe_calibration", "interface_summary", "merge_calibration",
           "reconstruct_acquisition", "series_acquisitions", "summary_lines"]
