"""`dpcstem demo` end to end: the files it says it wrote, and its recovered figures."""

import shlex
import subprocess
import sys

import h5py
import matplotlib.pyplot as plt
import pytest

from dpcstem.cli import demo


def test_demo_writes_results_figures_and_a_faithful_table(tmp_path):
    run = subprocess.run([sys.executable, "-m", "dpcstem", "demo", "--out", str(tmp_path)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    for name in ("bare", "coated"):
        with h5py.File(tmp_path / f"{name}_series.h5") as f:
            assert list(f["bias"][()]) == [0.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2]
            assert f["net_field_x"].shape == (8, 192, 160) and f["net_field_x"].attrs["units"] == "V/m"
            assert f["net_charge_density"].attrs["units"] == "C/m^3"
            assert f["registration_shift"].shape == (8, 2)
        assert len(list((tmp_path / name).glob("bias_*.h5"))) == 8
    for figure in ("bare_overview", "bare_net_field", "bare_net_charge", "coated_overview", "coated_net_field",
                   "coated_net_charge", "net_field_profiles", "net_charge_vs_bias"):
        assert (tmp_path / "figures" / f"{figure}.png").stat().st_size > 10_000
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith(("bare ", "coated "))]
    assert len(rows) == 14
    for row in rows:
        true_sigma, got_sigma = float(row[12]), float(row[13])
        assert abs(got_sigma - true_sigma) < 0.1 * abs(true_sigma)
    bare = [float(r[13]) for r in rows if r[0] == "bare"]
    coated = [float(r[13]) for r in rows if r[0] == "coated"]
    assert all(abs(b) > 2 * abs(c) for b, c in zip(bare, coated))  # the coating weakens the layer
    assert str(tmp_path) in run.stdout  # it says where its files are
    # the command it prints, run by hand, gives its table: the demo used nothing the command line cannot give
    commands = [line.split("the same by hand: ", 1)[1] for line in run.stdout.splitlines() if "the same by hand: " in line]
    assert len(commands) == 2
    for name, command in zip(("bare", "coated"), commands):
        words = shlex.split(command)
        assert words[:2] == ["dpcstem", "bias-series"] and "--offsets" in words and "--reference" in words
        table = tmp_path / f"{name}_table.csv"
        demo_table = table.read_text()
        table.unlink()
        again = subprocess.run([sys.executable, "-m", "dpcstem", *words[1:]], capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert table.read_text() == demo_table
        # and the figures the demo printed are the table's
        printed = [float(r[13]) for r in rows if r[0] == name]
        written = [float(line.split(",")[9]) * 1e3 for line in demo_table.splitlines()[1:]]
        assert printed == [float(f"{v:.3f}") for v in written]


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """The bare cathode's series, simulated and reconstructed as the demo does."""
    thickness, share = demo.SAMPLES["bare"]
    return {"bare": demo.run_sample("bare", thickness, share, tmp_path_factory.mktemp("demo"), seed=0)}


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def test_overview_shows_structure_colour_wheel_materials_and_normal(bare):
    fig = demo.overview_figure("bare", bare["bare"])
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("(a) structure: segment sum") for t in titles)
    assert any(t.startswith("(b) net field vector") for t in titles)
    vector = next(a for a in fig.axes if a.get_title().startswith("(b)"))
    (wheel,) = [child for child in vector.child_axes if child.get_label() == "colour wheel"]  # its key
    assert {"+x", "+y", "−x", "−y"} <= {t.get_text() for t in wheel.texts}
    assert vector.images[0].get_array().ndim == 3  # drawn as colours, not through a colour map
    assert fig.get_suptitle().startswith("bare cathode, thickness 131 nm")
    texts = _texts(fig)
    for panel in "abcd":  # every map names the materials and shows the normal
        ax = next(a for a in fig.axes if a.get_title().startswith(f"({panel})"))
        labels = {t.get_text() for t in ax.texts}
        assert {demo.CATHODE, demo.ELECTROLYTE, "n"} <= labels, panel
        assert any(line.get_label() == "interface" for line in ax.lines)
    assert demo.BORDER_NOTE in texts  # the grey strips are explained
    structure = next(a for a in fig.axes if a.get_title().startswith("(a)")).images[0]
    assert structure.get_cmap().name.startswith("gray")
    plt.close(fig)


def test_bias_panels_profiles_and_charge_name_what_they_show(bare):
    for kind in ("field", "charge"):
        fig = demo.bias_panel_figure("bare", bare["bare"], kind)
        assert fig.get_suptitle().startswith("bare cathode, thickness 131 nm")
        assert demo.BORDER_NOTE in _texts(fig)
        first = fig.axes[0]
        assert {demo.CATHODE, demo.ELECTROLYTE, "n"} <= {t.get_text() for t in first.texts}
        assert all(any(line.get_label() == "interface" for line in ax.lines) for ax in fig.axes[:7])
        plt.close(fig)
    fig = demo.profiles_figure(bare)
    ax = fig.axes[0]
    assert demo.CATHODE in ax.get_xlabel() and demo.ELECTROLYTE in ax.get_xlabel()
    assert "thickness 131 nm" in ax.get_title()
    plt.close(fig)
    fig = demo.charge_vs_bias_figure(bare)
    ax = fig.axes[0]
    assert "space-charge layer" in ax.get_title() and "Gauss's law" in ax.get_title()
    assert "net areal charge σ of the layer" in ax.get_ylabel()
    assert any("dipole" in t for t in _texts(fig))
    plt.close(fig)
