"""Progress through a command's stages (dpcstem.progress) and the stage times a command prints."""

import subprocess
import sys
import time

import numpy as np

from dpcstem.progress import Stages, read_summary


def test_stage_times_add_up_per_name_and_a_long_stage_is_announced_off_a_terminal(capsys):
    stages = Stages("series", enabled=True)
    stages.stage("reading")
    time.sleep(0.02)
    stages.stage("maps", total=3)
    for _ in range(3):
        stages.step()
    stages.stage("reading")  # a stage visited twice adds up
    time.sleep(0.02)
    line = stages.summary()
    # pytest's stdout is not a terminal: a line as each stage starts
    assert capsys.readouterr().out == "series: reading\nseries: maps (3 maps)\nseries: reading\n"
    assert list(stages.times) == ["reading", "maps"] and stages.times["reading"] >= 0.04
    assert line.startswith("stage times: reading ") and "; maps " in line


def test_disabled_or_unannounced_stages_print_nothing_but_keep_their_times(capsys):
    for stages in (Stages("reconstruct", enabled=False), Stages("reconstruct", announce=False)):
        stages.stage("kernel", total=5)
        stages.close()
        assert capsys.readouterr().out == "" and set(stages.times) == {"kernel"}


def test_reconstruct_prints_where_its_time_went(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.integers(900, 1100, size=(4, 32, 32)).astype(np.uint16))
    proc = subprocess.run([sys.executable, "-m", "dpcstem", "reconstruct", "a.npy", "--kv", "200", "--alpha", "10",
                           "--step", "1", "--thickness", "50", "--collection", "0", "20", "-o", "r.h5"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("stage times: ")]
    assert len(lines) == 1
    for stage in ("reading", "segment kernel", "descan and rotation", "field, charge and potential"):
        assert f"{stage} " in lines[0]


def test_com_prints_where_its_time_went(tmp_path):
    from dpcstem.bench.commands import com_options, disc_frames

    frames = disc_frames(8 * 8, 32, np.random.default_rng(1)).reshape(8, 8, 32, 32)
    np.save(tmp_path / "f.npy", frames)
    proc = subprocess.run([sys.executable, "-m", "dpcstem", "com", "f.npy", *com_options(32), "-o", "r.h5"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("stage times: ")]
    assert len(lines) == 1
    for stage in ("opening and finding the disc", "centre of mass", "descan and rotation",
                  "field, charge and potential", "summary and profiles"):
        assert f"{stage} " in lines[0]


def test_the_printed_stage_times_read_back_as_the_command_kept_them():
    stages = Stages("test", enabled=False)
    for name in ("checks of the defaults (rotation, descan plane)", "reconstructing, registering and subtracting"):
        stages.stage(name)
        time.sleep(0.01)
    printed = f"some line\n{stages.summary()}\nwrote out.h5\n"
    assert read_summary(printed) == {name: round(t, 2) for name, t in stages.times.items()}
    assert read_summary("no stages here\n") == {}
