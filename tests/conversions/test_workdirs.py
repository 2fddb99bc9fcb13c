"""conversions.workdirs: every conversion's work folder is named after its process; the sweeper removes the
folders of processes that are gone (or zombies) and nothing else."""

import os
import subprocess
import sys

from conversions.workdirs import WORKDIR_PREFIX, conversion_workdir, workdirs_sweep


def finished_process_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # reaped: its pid names no process now
    return process.pid


def test_a_work_folder_carries_this_processes_pid_and_goes_when_done(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    with conversion_workdir() as workdir:
        assert os.path.dirname(workdir) == str(tmp_path)
        assert os.path.basename(workdir).startswith(f"{WORKDIR_PREFIX}{os.getpid()}-")
        assert workdirs_sweep(directory=str(tmp_path)) == []  # alive: kept
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_the_folders_of_dead_processes(tmp_path):
    dead = tmp_path / f"{WORKDIR_PREFIX}{finished_process_pid()}-abc"
    alive = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-def"
    unrelated = tmp_path / "other-123-x"
    for folder in (dead, alive, unrelated):
        folder.mkdir()
        (folder / "source").write_bytes(b"x")
    named_like_one = tmp_path / f"{WORKDIR_PREFIX}1-file"
    named_like_one.write_text("a file, not a folder")

    assert workdirs_sweep(directory=str(tmp_path)) == [dead.name]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([alive.name, unrelated.name, named_like_one.name])


def test_a_zombie_counts_as_dead(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Exited but not reaped: a zombie, whose pid still answers kill(pid, 0).
        exited = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        assert exited.si_pid == process.pid
        folder = tmp_path / f"{WORKDIR_PREFIX}{process.pid}-zzz"
        folder.mkdir()
        assert workdirs_sweep(directory=str(tmp_path)) == [folder.name]
    finally:
        process.wait()
