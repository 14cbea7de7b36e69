"""`dpcstem demo` end to end: the files it says it wrote, and its recovered figures."""

import subprocess
import sys

import h5py


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
    for figure in ("bare_net_field", "bare_net_charge", "coated_net_field", "coated_net_charge",
                   "net_field_profiles", "net_charge_vs_bias"):
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
