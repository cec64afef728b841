"""The warm stage server (unlearn_pipeline.stage_server): a served stage behaves as one run in its
own process (outputs, exit status, output streams, environment, signals), and the server's
life (start, idle end, a stale socket, turned off) needs no care from the user."""

from __future__ import annotations

import contextlib
import hashlib
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import mlflow_runs, write_params
from unlearn_pipeline import stage_server

STAGE = [sys.executable, "-m", "unlearn_pipeline"]


@pytest.fixture
def servers(tmp_path, monkeypatch) -> Path:
    """A server folder of this test's own; its servers are stopped afterwards."""
    folder = tmp_path / "servers"
    monkeypatch.setenv(stage_server.DIR_ENV, str(folder))
    yield folder
    stage_server.stop_servers(folder)


def _wait_for(condition, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


def _warm(path: Path) -> None:
    """Wait until the server on ``path`` has finished its imports (it accepts only then)."""
    _wait_for(lambda: _answers(path))
    started = subprocess.run([*STAGE, "unlearn", "nosuch"], capture_output=True, text=True)
    assert started.returncode == 2, started.stderr


def _served(folder: Path) -> list[str]:
    return [line for log in folder.glob("*.log") for line in log.read_text().splitlines()
            if re.search(r" launcher \d+ in ", line)]


def _digest(root: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted((root / "data/prepared").iterdir())}


def test_a_served_stage_matches_its_own_process(project, servers, tmp_path, monkeypatch):
    first = subprocess.run([*STAGE, "prepare"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "prepared digits" in first.stderr
    in_process = _digest(project)
    path = stage_server.socket_path()
    _warm(path)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'second.db'}")  # the launcher's environment counts
    launcher = subprocess.Popen([*STAGE, "prepare"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    assert any(f"launcher {launcher.pid} in {project}: prepare" in line for line in _served(servers)), _served(servers)
    assert "prepared digits" in err  # the stage's log lines reach the launcher's stderr
    assert _digest(project) == in_process
    [run] = mlflow_runs(project)  # in second.db, not in the fixture's store
    assert run.data.tags["dvc.stage"] == "prepare" and run.info.status == "FINISHED"
    assert not run.data.tags["unlearn.process"].endswith(f":{launcher.pid}")  # run by the server's child

    refused = subprocess.run([*STAGE, "unlearn", "nosuch"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "unlearn: unknown item 'nosuch'" in refused.stderr
    assert len(_served(servers)) == 3


def _stage_processes(folder: Path) -> list:
    """The server's grandchildren: the stages it runs (its children are their waiters)."""
    import psutil

    [lock] = folder.glob("*.lock")
    stages = []
    for waiter in psutil.Process(int(lock.read_text())).children():
        with contextlib.suppress(psutil.NoSuchProcess):  # a waiter that has just ended
            stages += waiter.children()
    return stages


def _start_training(project: Path) -> subprocess.Popen:
    """A served `train` stage, once its first epoch checkpoint exists."""
    launcher = subprocess.Popen([*STAGE, "train"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: (project / ".checkpoints" / "original.pt").exists() or launcher.poll() is not None)
    assert launcher.poll() is None, launcher.communicate()[0]
    return launcher


def test_signals_reach_the_served_stage_and_it_dies_with_its_launcher(project, servers):
    write_params(project, {"train": {"epochs": 40}})
    for stage in ("prepare", "import_model"):
        assert subprocess.run([*STAGE, stage], capture_output=True).returncode == 0
    _warm(stage_server.socket_path())

    launcher = _start_training(project)
    assert len(_stage_processes(servers)) == 1
    launcher.send_signal(signal.SIGTERM)  # the launcher alone, as `kill <pid>` would
    output = launcher.communicate(timeout=60)[0]
    assert launcher.returncode == 128 + signal.SIGTERM, output
    assert "train interrupted (SIGTERM)" in output
    assert not (project / "data/models/original.pt").exists()

    launcher = _start_training(project)
    launcher.kill()
    launcher.wait()
    _wait_for(lambda: not _stage_processes(servers), seconds=10)
    assert not (project / "data/models/original.pt").exists()


def test_an_idle_server_ends_and_removes_its_socket(servers):
    path = stage_server.socket_path()
    stage_server.start_server(path, idle_s=1)
    _wait_for(path.exists)
    _wait_for(lambda: not path.exists())


def test_a_stale_socket_is_replaced(project, servers):
    path = stage_server.socket_path()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a server killed with SIGKILL
    done = subprocess.run([*STAGE, "prepare"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # ran in its own process
    _wait_for(lambda: _answers(path))


@pytest.mark.parametrize("key, value", [(stage_server.ENABLED_ENV, "yes"), (stage_server.IDLE_ENV, "0"),
                                        (stage_server.IDLE_ENV, "five")])
def test_a_bad_setting_is_one_line_naming_it_and_runs_nothing(project, servers, monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    done = subprocess.run([*STAGE, "prepare"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and f"{key} = {value!r}: allowed" in done.stderr
    assert not (project / "data/prepared").exists() and not servers.exists()


def test_turned_off_no_server_starts(servers, monkeypatch):
    monkeypatch.setenv(stage_server.ENABLED_ENV, "0")
    assert stage_server.run_served(["unlearn_pipeline", "prepare"]) is None
    assert not servers.exists()


def test_a_folder_others_can_enter_is_not_used(tmp_path, monkeypatch):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    monkeypatch.setenv(stage_server.DIR_ENV, str(folder))
    with pytest.raises(PermissionError, match="not private"):
        stage_server.server_dir()
    assert stage_server.run_served(["unlearn_pipeline", "prepare"]) is None
    assert list(folder.iterdir()) == []


def test_the_key_follows_import_time_settings_only():
    base = {"PATH": "/usr/bin", "MLFLOW_TRACKING_URI": "sqlite:///a.db", "DVC_STAGE": "train"}
    key = stage_server.server_key(base)
    assert stage_server.server_key({**base, "MLFLOW_TRACKING_URI": "sqlite:///b.db", "DVC_STAGE": "prepare"}) == key
    for changed in ({"OMP_NUM_THREADS": "1"}, {"PYTHONHASHSEED": "0"}, {"CUDA_VISIBLE_DEVICES": ""}):
        assert stage_server.server_key({**base, **changed}) != key, changed


def test_a_signal_while_the_server_is_busy_starting_stops_the_launcher_cleanly(project, servers):
    """A server still importing leaves the launcher waiting in its backlog: SIGTERM (or Ctrl-C)
    then ends the launcher with one line and status 128 + N, and the stage never runs."""
    busy = socket.socket(socket.AF_UNIX)
    busy.bind(str(stage_server.socket_path()))
    busy.listen(1)  # never accepts, as a server in the middle of its imports
    with busy:
        launcher = subprocess.Popen([*STAGE, "prepare"], stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=30)
    err = launcher.communicate(timeout=30)[1]  # the stderr it passed was queued in the backlog until `busy` closed
    assert launcher.returncode == 128 + signal.SIGTERM
    assert err.strip() == "error: interrupted (SIGTERM) before the stage started"
    assert not (project / "data/prepared").exists()
