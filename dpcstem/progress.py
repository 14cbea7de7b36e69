"""Progress through a command's stages, and the time each took.

On a terminal a tqdm bar on stderr names the stage running and counts its steps (the maps
of a series). Otherwise nothing is drawn: a command whose stages are long announces each by
one line on stdout when it starts (stderr carries only warnings and the one line of an
error). Either way the command prints the stage times at the end (:meth:`Stages.summary`).
"""

from __future__ import annotations

import re
import sys
import time

#: How the line of stage times a command prints begins (:meth:`Stages.summary`, :func:`read_summary`).
SUMMARY_PREFIX = "stage times: "


class Stages:
    """The stages of one command run, in order.

    Parameters
    ----------
    command : str
        What runs (``"bias series"``, ``"reconstruct"``): the prefix of the lines printed.
    enabled : bool
        Show progress (a bar on a terminal, the lines otherwise); the times are kept either way.
    announce : bool
        Off a terminal, a line as each stage starts (a series); without, the summary only.
    """

    def __init__(self, command, enabled=True, announce=True):
        self.command, self.enabled, self.announce = command, enabled, announce
        self.times = {}
        self.bar = None
        self._current, self._start = None, None

    def stage(self, name, total=1, unit="map"):
        """End the stage running (if any) and start ``name`` of ``total`` steps, each a ``unit``."""
        self.close()
        self._current, self._start = name, time.perf_counter()
        if not self.enabled:
            return
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, leave=False)
        elif self.announce:
            count = f" ({total} {unit}s)" if total > 1 else ""
            print(f"{self.command}: {name}{count}", flush=True)

    def step(self):
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        """End the stage running: its time is recorded, its bar removed."""
        if self._current is not None:
            self.times[self._current] = self.times.get(self._current, 0.0) + time.perf_counter() - self._start
            self._current = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self) -> str:
        """``stage times: NAME 0.12 s, ...`` of the stages ended so far."""
        self.close()
        return SUMMARY_PREFIX + "; ".join(f"{name} {seconds:.2f} s" for name, seconds in self.times.items())


def read_summary(output: str) -> dict:
    """The stage times a command printed (its last :meth:`Stages.summary` line in ``output``):
    stage name → seconds; empty where it printed none."""
    lines = [line for line in output.splitlines() if line.startswith(SUMMARY_PREFIX)]
    if not lines:
        return {}
    times = {}
    for part in lines[-1][len(SUMMARY_PREFIX):].split("; "):
        match = re.fullmatch(r"(.+) (\d+(?:\.\d+)?) s", part.strip())
        if match:
            times[match.group(1)] = float(match.group(2))
    return times
