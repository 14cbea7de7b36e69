"""``dpcstem demo``: the in-situ experiment, simulated with its answer and reconstructed.

A LiCoO2 cathode against a Li6PS5Cl solid electrolyte, biased at 0, 1.0 … 2.2 V and watched
by four-segment DPC: a bare cathode (131 nm thick) and a BaTiO3-coated one (270 nm thick), whose
coating takes most of the bias so its space-charge layer grows less. Each series is
simulated as an instrument records it (drift between frames, unequal segment gains and
offsets, descan, a mean-inner-potential step, Poisson noise) and written as files; then a
``dpcstem bias-series`` command line is composed from what a user would have (the files, the
vacuum scan, the thickness map, εr and the dark offsets, never the simulator's own values),
run through the same parser and workflow as the command, printed so that it can be run again
by hand, and its table and result file compared with the truth.
"""

from __future__ import annotations

from pathlib import Path

#: The two cathodes: name → (thickness on the cathode side in nm, share of the bias across the layer).
SAMPLES = {"bare": (131.0, 0.5), "coated": (270.0, 0.15)}
SCAN = (192, 160)
STEP_NM = 0.5
INTERFACE_POINT_NM = (30.0, 48.0)
NORMAL_DEG = 15.0
GAINS = (1.0, 0.95, 1.05, 1.02)
OFFSETS = (100.0, 90.0, 110.0, 95.0)
CHARGE_CUTOFF_PER_NM = 0.25
#: Relative permittivity of the specimen, as a user gives it (--eps-r): the free charge is reported too.
EPS_R = 12.0
#: Half-range of the profiles across the interface and their bin width, nm (--half-range, --bin).
HALF_RANGE_NM = 20.0
BIN_NM = 1.0
#: The materials either side of the interface: the normal points from the cathode (d < 0)
#: into the electrolyte (d > 0), where the space-charge layer grows.
CATHODE, ELECTROLYTE = "LiCoO2", "Li6PS5Cl"
#: Why maps have grey strips at their edges.
BORDER_NOTE = ("Grey strips at the edges: pixels without data after drift registration (each bias's map is "
               "shifted onto the 0 V frame before subtraction).")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "demo", help="simulate the in-situ bias experiment (bare and coated cathode), reconstruct, compare",
        description="Simulate bias series of a bare and a BaTiO3-coated LiCoO2 cathode against Li6PS5Cl at "
                    "0, 1.0 ... 2.2 V, reconstruct the net field and net charge against 0 V, write the result "
                    "files and figures, and print the true against the recovered layer figures.")
    p.add_argument("--out", type=Path, default=Path("demo_output"), metavar="DIR",
                   help="folder for the demo's files (default: ./demo_output); files there are replaced")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default: 0)")
    p.set_defaults(run=run)


def run(args):
    import time

    start = time.perf_counter()
    from ..io.output import output_folder

    out = output_folder(args.out)
    output_folder(out / "figures")
    outcomes = {}
    for k, (name, (thickness, share)) in enumerate(SAMPLES.items()):
        outcomes[name] = run_sample(name, thickness, share, out, seed=args.seed + k)
    figures = draw_figures(outcomes, out / "figures")
    print(format_comparison(outcomes))
    print()
    for name, outcome in outcomes.items():
        print(f"{name}: acquisitions in {outcome['folder']}/, result {outcome['result']}, table {outcome['table']}")
        print(f"  the same by hand: {outcome['command']}")
    print("figures:", ", ".join(str(f) for f in figures))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def simulate_sample(thickness_nm, share, *, seed):
    """The simulated series of one cathode (see the module docstring)."""
    from ..calibration import Calibration
    from ..simulate import Descan, MeanInnerPotential, MottSchottky, StepThickness, simulate_bias_series

    cal = Calibration(kv=200, alpha_mrad=1.5, step_x_nm=STEP_NM, thickness_nm=thickness_nm, eps_r=EPS_R)
    layer = MottSchottky(density_per_m3=1e25, eps_r=EPS_R, potential_drop_v=0.3, sheet_nm=1.5)
    return simulate_bias_series(
        layer, cal, SCAN, share=share, point_nm=INTERFACE_POINT_NM, normal_deg=NORMAL_DEG,
        mip=MeanInnerPotential(18.0, 12.0, width_nm=4.0),
        thickness=StepThickness(thickness_nm, thickness_nm + 40.0, width_nm=2.0, point_nm=INTERFACE_POINT_NM,
                                normal_deg=NORMAL_DEG),
        scattering_mfp_nm=150.0, drift_px=(0.3, -0.45), gains=GAINS, offsets=OFFSETS,
        descan=Descan(linear_mrad=((0.002, -0.001), (0.0015, 0.0025))), dose=1.5e5, rng=seed)


def sample_command(folder: Path, out: Path, name: str) -> str:
    """The ``dpcstem bias-series`` command for one cathode: only what a user of the instrument has.

    The dark offsets are those the instrument's black level was measured at (a user gives
    them with --offsets, or a beam-blanked scan with --dark); the thickness map is the
    EELS map written with the acquisitions; εr is the material's.
    """
    from ..bias import command_line
    from ..interface import Interface

    options = ["--reference", folder / "vacuum.h5", "--thickness-map", folder / "thickness.h5",
               "--eps-r", repr(EPS_R), "--offsets", *(repr(o) for o in OFFSETS),
               "--charge-method", "spectral", "--cutoff", repr(CHARGE_CUTOFF_PER_NM), "--bin", repr(BIN_NM),
               "--overwrite"]
    exact = Interface.from_normal(INTERFACE_POINT_NM, NORMAL_DEG, 80.0)
    # two points a user could type (0.01 nm): the command, and so the demo's table, use these
    interface = Interface(tuple(round(v, 2) for v in exact.start_nm), tuple(round(v, 2) for v in exact.end_nm))
    return command_line(folder, output=out / f"{name}_series.h5", interface=interface, half_range_nm=HALF_RANGE_NM,
                        table=out / f"{name}_table.csv", options=options)


def run_sample(name, thickness_nm, share, out: Path, *, seed):
    """Simulate and write one cathode's series, run its command line through the workflow, compare with the truth."""
    import shlex
    from types import SimpleNamespace

    import numpy as np

    from ..interface import Interface, layer_figures, profile_across
    from ..io import load_result_arrays, read_segments
    from ..io.output import output_folder
    from ..physics import field_v_per_m_from_deflection
    from ..simulate.files import write_series
    from ..workflows import series_acquisitions
    from . import build_parser
    from .bias_series import workflow_arguments

    sim = simulate_sample(thickness_nm, share, seed=seed)
    folder = output_folder(out / name)
    write_series(sim, folder, overwrite=True, seed=seed)
    command = sample_command(folder, out, name)
    args = build_parser().parse_args(shlex.split(command)[1:])
    outcome = series_acquisitions(**workflow_arguments(args))
    maps, attrs = load_result_arrays(outcome.result)
    interface = Interface(tuple(args.interface[:2]), tuple(args.interface[2:]))
    step = (float(attrs["step_x_nm"]), float(attrs["step_y_nm"]))
    rows = outcome.rows
    for row in rows:
        net = sim.net_truth(row["index"])
        true_field = [field_v_per_m_from_deflection(net[c], sim.calibration.kv, sim.calibration.thickness_nm)
                      for c in ("deflection_x", "deflection_y")]
        true_profile = profile_across(interface.normal_component(*true_field), interface, step,
                                      half_range_nm=row["half_range_nm"], bin_nm=args.bin)
        row["true"] = layer_figures(true_profile).as_dict()
        row["true_profile"] = true_profile
    reference = int(attrs["reference_index"])
    structure = read_segments(sorted(folder.glob("bias_*.h5"))[reference]).segments.astype(float).sum(axis=0)
    net = [SimpleNamespace(**{q: maps[f"net_{q}"][0][i] for q in ("field_x", "field_y", "charge_density")})
           for i in range(len(maps["bias"][0])) if i != reference]  # each bias against the reference
    return {"biases": np.asarray(maps["bias"][0], float), "reference_index": reference, "net": net, "step": step,
            "rows": rows, "folder": folder, "result": outcome.result, "table": args.table, "command": command,
            "interface": interface, "thickness_nm": thickness_nm, "share": share, "structure": structure}


def format_comparison(outcomes) -> str:
    """True against recovered net layer figures, per cathode and bias."""
    lines = ["net space-charge layer against 0 V: true (probe-weighted) vs recovered",
             f"{'sample':8} {'bias':>6} {'peak net E (MV/m)':>24} {'width (nm)':>16} {'net ΔV (V)':>18}"
             f" {'net σ (mC/m²)':>26}"]
    for name, outcome in outcomes.items():
        for r in outcome["rows"]:
            t = r["true"]
            lines.append(
                f"{name:8} {r['bias_v']:5.1f}V"
                f" {t['peak_field_v_per_m'] / 1e6:7.1f} {r['peak_field_v_per_m'] / 1e6:7.1f} ±{r['peak_field_stderr'] / 1e6:4.1f}"
                f" {t['width_nm']:6.1f} {r['width_nm']:6.1f} ±{r['width_stderr']:3.1f}"
                f" {t['potential_drop_v']:6.3f} {r['potential_drop_v']:6.3f} ±{r['potential_drop_stderr']:5.3f}"
                f" {t['areal_charge_c_per_m2'] * 1e3:7.3f} {r['areal_charge_c_per_m2'] * 1e3:7.3f}"
                f" ±{r['areal_charge_stderr'] * 1e3:5.3f}")
    return "\n".join(lines)


def draw_figures(outcomes, folder: Path) -> list:
    """The demo's figures; returns the files written.

    Per cathode: an overview (the structural image, the net field as a colour-wheel vector
    map with its key, the net field along the normal and the net charge density at the
    highest bias) and the net field and net charge at every bias; for both: the net-field
    profiles across the interface and the net areal charge of the layer against bias.
    Every map shows the interface, its normal n and the material on each side.
    """
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    files = []
    # One colour scale per quantity for both cathodes, so they compare by eye.
    vmax_field = max(np.nanpercentile(np.abs(_normal_field(o, r)), 99.5) for o in outcomes.values()
                     for r in o["net"])
    vmax_charge = max(np.nanpercentile(np.abs(r.charge_density), 99.5) for o in outcomes.values()
                      for r in o["net"])
    for name, outcome in outcomes.items():
        files.append(_save(overview_figure(name, outcome, vmax_field=vmax_field, vmax_charge=vmax_charge),
                           folder / f"{name}_overview.png"))
        for kind in ("field", "charge"):
            fig = bias_panel_figure(name, outcome, kind, vmax=vmax_field if kind == "field" else vmax_charge)
            files.append(_save(fig, folder / f"{name}_net_{kind}.png"))
    files.append(_save(profiles_figure(outcomes), folder / "net_field_profiles.png"))
    files.append(_save(charge_vs_bias_figure(outcomes), folder / "net_charge_vs_bias.png"))
    return files


def _sample_title(name, outcome):
    return f"{name} cathode, thickness {outcome['thickness_nm']:g} nm"


def _annotate(ax, outcome, step, *, materials=True):
    from .. import plot

    return plot.annotate_interface(ax, outcome["interface"], step, before=CATHODE if materials else None,
                                   after=ELECTROLYTE if materials else None)


def overview_figure(name, outcome, *, vmax_field=None, vmax_charge=None):
    """Four panels at the highest bias: structure, net field (colour wheel), its normal component, net charge."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .. import plot

    step = outcome["step"]
    biases = _net_biases(outcome)
    top = int(np.argmax(biases))
    net = outcome["net"][top]
    bias = plot.series._bias_text(biases[top])
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 10.5), layout="constrained")
    (a, b), (c, d) = axes
    plot.plot_scalar_map(outcome["structure"], ax=a, diverging=False, cmap="gray", step_nm=step, units="counts",
                         quantity="segment sum A+B+C+D", title="(a) structure: segment sum at 0 V")
    plot.plot_vector_map(net.field_x, net.field_y, ax=b, step_nm=step, units="V/m",
                         title=f"(b) net field vector at {bias}")
    plot.plot_scalar_map(_normal_field(outcome, net), ax=c, step_nm=step, units="V/m", vmax=vmax_field,
                         quantity="net field along n", title=f"(c) net field along the normal n at {bias}")
    plot.plot_scalar_map(net.charge_density, ax=d, step_nm=step, units="C/m^3", vmax=vmax_charge,
                         quantity="net charge density",
                         title=f"(d) net charge density at {bias}: the layer and its countercharge")
    for ax in (a, b, c, d):
        _annotate(ax, outcome, step)
    fig.suptitle(f"{_sample_title(name, outcome)}: {bias} against 0 V", fontsize=13)
    fig.text(0.5, -0.01, BORDER_NOTE, ha="center", va="top", fontsize=9, wrap=True)
    return fig


def bias_panel_figure(name, outcome, kind, *, vmax=None):
    """The net field along the normal (``kind="field"``) or the net charge density at every bias."""
    from .. import plot

    step = outcome["step"]
    biases = _net_biases(outcome)
    if kind == "field":
        maps = [_normal_field(outcome, r) for r in outcome["net"]]
        fig = plot.plot_bias_panel(maps, biases, units="V/m", step_nm=step, ncols=4, vmax=vmax,
                                   quantity="net field along the interface normal n",
                                   title=f"{_sample_title(name, outcome)}: net field along the normal n, against 0 V")
    else:
        maps = [r.charge_density for r in outcome["net"]]
        fig = plot.plot_bias_panel(maps, biases, units="C/m^3", step_nm=step, ncols=4, vmax=vmax,
                                   quantity="net charge density",
                                   title=f"{_sample_title(name, outcome)}: net charge density against 0 V "
                                         f"(low-pass {CHARGE_CUTOFF_PER_NM} /nm): the layer and its countercharge")
    for i, ax in enumerate(fig.axes[:len(maps)]):
        _annotate(ax, outcome, step, materials=i == 0)
    fig.text(0.5, 0.0, BORDER_NOTE, ha="center", va="top", fontsize=9)
    return fig


def profiles_figure(outcomes):
    """Net field along the normal against distance, every bias, each cathode; the truth dashed."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .. import plot

    fig, axes = plt.subplots(1, len(outcomes), figsize=(6 * len(outcomes), 4.4), sharey=True, layout="constrained")
    cmap = plt.get_cmap("viridis")
    for ax, (name, outcome) in zip(np.atleast_1d(axes), outcomes.items()):
        rows = outcome["rows"]
        for k, row in enumerate(rows):
            colour = cmap(k / max(len(rows) - 1, 1))
            fp = row["field_profile"]
            plot.plot_profile(fp.distance_nm, fp.mean, error=fp.stderr, ax=ax, units="V/m",
                              quantity="net field along n", label=f"{row['bias_v']:.1f} V")
            ax.lines[-1].set_color(colour)
            for coll in ax.collections[-1:]:
                coll.set_color(colour)
            tp = row["true_profile"]
            ax.plot(tp.distance_nm, tp.mean, ls="--", lw=0.8, color="k")
        ax.axvline(0.0, color="0.4", lw=0.8)
        ax.set_xlabel(f"distance along the normal n (nm): {CATHODE} < 0 < {ELECTROLYTE}")
        for x, text, ha in ((0.02, f"← {CATHODE}", "left"), (0.98, f"{ELECTROLYTE} →", "right")):
            ax.text(x, 0.97, text, transform=ax.transAxes, ha=ha, va="top", fontsize=9, fontweight="bold")
        ax.set_title(f"{_sample_title(name, outcome)}\nnet field across the interface (dashed: truth)")
        ax.legend(fontsize=7, ncols=2, loc="center right")
    return fig


def charge_vs_bias_figure(outcomes):
    """Net areal charge of the space-charge layer (Gauss's law) against bias, each cathode, with the truth."""
    import matplotlib.pyplot as plt

    from .. import plot

    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    for name, outcome in outcomes.items():
        rows = outcome["rows"]
        biases = [r["bias_v"] for r in rows]
        plot.plot_charge_vs_bias(biases, [r["areal_charge_c_per_m2"] for r in rows],
                                 errors=[r["areal_charge_stderr"] for r in rows], ax=ax,
                                 label=f"{_sample_title(name, outcome)} (recovered)",
                                 quantity="net areal charge σ of the layer")
        ax.plot(biases, [r["true"]["areal_charge_c_per_m2"] for r in rows], ls="none", marker="x", color="k",
                label="truth (probe-weighted)" if name == next(iter(outcomes)) else None)
    ax.legend(fontsize=8)
    ax.set_title("Net areal charge of the space-charge layer against bias\n"
                 "by Gauss's law from the net-field profile: σ = ε0·(E_far − E_peak)", fontsize=10)
    fig.text(0.5, -0.01, "σ is the charge of the layer alone; the charge-density maps show the layer together "
             "with its countercharge at the interface (a dipole).", ha="center", va="top", fontsize=8, wrap=True)
    return fig


def _net_biases(outcome):
    """The bias of each net map (every acquisition but the reference), V."""
    return [float(b) for i, b in enumerate(outcome["biases"]) if i != outcome["reference_index"]]


def _normal_field(outcome, result):
    return outcome["interface"].normal_component(result.field_x, result.field_y)


def _save(fig, path):
    import matplotlib.pyplot as plt

    from ..io.output import write_figure

    write_figure(fig, path, overwrite=True, dpi=110, bbox_inches="tight")  # keeps the notes below the panels
    plt.close(fig)
    return path
