"""Write docs/validation.md: every validation case run through the command line, its
figure against the multislice truth and the tolerance it is held to.

Usage (in dpcstem's environment, from the repository root):
    .venv/bin/python validation/report.py            # writes docs/validation.md

The cases are those of tests/contracts/test_validation.py (tests/contracts/validation_cases.py): the same
commands, the same figures. Nothing here needs abTEM.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "contracts"))

from validation_cases import CASES, DATA, dpcstem_executable, run_cli, truth  # noqa: E402


def _words(args) -> str:
    words = ["dpcstem"]
    for a in args:
        a = str(a)
        words.append(str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a)
    return " ".join(words)


def _command(case) -> str:
    return "; ".join([*(_words(c) for c in case.prepare), _words(case.args) + " -o OUT.h5"])


def _references() -> list[str]:
    import h5py

    lines = ["| file | acquisition | size |", "|---|---|---|"]
    for path in sorted(DATA.glob("*.h5")):
        with h5py.File(path, "r") as f:
            acq = ", ".join(f"`{k}` {f[k].shape} {f[k].dtype}" for k in f if k != "truth")
        lines.append(f"| `{path.name}` | {acq} | {path.stat().st_size / 1e3:.0f} kB |")
    return lines


def _pct(figures, key) -> str:
    return f"{100 * figures[key]:.1f} %" if key in figures else "(not measured)"


def _limits(figures) -> list[str]:
    """The limits of the segmented signal, with the figures of this run."""
    return [
        "## Limits of the segmented signal (measured above)",
        "",
        "- **Probe size.** Four segments measure the deflection of the disc's edge, which follows the field",
        "  near the probe's centre, not the probe-weighted field that the centre of mass of a pixelated",
        "  pattern gives. Where the field varies within the probe (within a few probe widths of an interface,",
        "  a mean-inner-potential step, a particle's surface) the segments read off the probe-weighted field:",
        f"  by {_pct(figures, 'segments_near_steps')} of the peak junction field ≥ 3 nm from the MIP steps and",
        f"  {_pct(figures, 'segments_collection')} ≥ 5 nm from them (junction, 2 mrad probe at 200 kV), by",
        f"  {_pct(figures, 'sphere_given')} of the peak field 6–10 nm from a charged sphere's centre (where",
        f"  they agree with the unweighted field at the probe position to {_pct(figures, 'sphere_given_point')}),",
        f"  {_pct(figures, 'sphere_given_whole')} over its whole scan, and by",
        f"  {_pct(figures, 'bias_plain_still_noreg')} in a 5–9 nm space-charge layer. No response model corrects",
        "  this: where the field varies on the scale of the probe, use a pixelated camera (centre of mass).",
        "- **Thick, blurred specimen.** Through 150 nm (t/λ = 1.28) plasmon scattering blurs the disc edge; the",
        f"  exact (sharp-disc) response then reads {_pct(figures, 'thick_exact')} low, an empirical response",
        f"  from a beam-tilt series in vacuum {_pct(figures, 'thick_response_vacuum')} low, and one from a",
        f"  tilt series through a field-free region of the specimen is within",
        f"  {_pct(figures, 'thick_response_specimen')} (`dpcstem calibrate-response`, README).",
        "",
    ]


def main() -> int:
    version = subprocess.run([dpcstem_executable(), "--version"], capture_output=True, text=True).stdout.strip()
    rows = ["| case | what was simulated and run | command | figure | measured | tolerance | result |",
            "|---|---|---|---|---|---|---|"]
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            try:
                figure = case.measure(run_cli(case.args, Path(tmp), case.key, case.prepare), truth(case.reference))
                figures[case.key] = figure
                shown = f"{figure:.4g}"
                ok = figure > case.tolerance if case.limit else figure <= case.tolerance
            except AssertionError as exc:
                shown, ok = f"command failed: {str(exc).splitlines()[-1][:120]}", False
            if case.limit:
                result = "the limit is there (above the tolerance)" if ok else "**the limit is not seen**"
            else:
                result = "within" if ok else ("**misses** (known: " + case.xfail + ")" if case.xfail else "**misses**")
            bound = f"> {case.tolerance:g}" if case.limit else f"{case.tolerance:g}"
            cells = [case.key, case.what, f"`{_command(case)}`", case.figure, shown, bound, result]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            print(f"{case.key}: {shown} (tolerance {case.tolerance:g})")
    text = [
        "# Validation on multislice references",
        "",
        "Generated by `validation/report.py` from a run of the command line on the references in",
        "`validation/data/` (made with abTEM by `validation/make_*.py`; see `validation/README.md` for",
        "what each simulates and how its truth is defined). Do not edit by hand.",
        "",
        f"{version}; generated {datetime.date.today().isoformat()}.",
        "",
        "The truth a detector can reach is the field **weighted by the probe intensity** at each depth",
        "(E_w): the centre of mass of the diffraction pattern equals it (Ehrenfest; each reference script",
        "checks this on its own patterns). Figures compare dpcstem's result with E_w, as a fraction of the",
        "largest |E_w| in the region named. A case that misses its tolerance is a strict xfail in",
        "tests/contracts/test_validation.py with the reason shown, so the test turns red when the cause is fixed.",
        "",
        "## Results",
        "",
        *rows,
        "",
        *_limits(figures),
        "## References",
        "",
        *_references(),
        "",
        "## Peers",
        "",
        "The same data through LiberTEM, py4DSTEM and pyxem (their environment: `benchmarks/peers_env.sh`)",
        "has not been run for this report.",
        "",
    ]
    out = ROOT / "docs" / "validation.md"
    out.write_text("\n".join(text), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
