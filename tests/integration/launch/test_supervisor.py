"""The launcher's supervisor with real child processes (heartbeat_child.py) over a real telemetry socket.

Each test writes a topology of [[process]] entries running heartbeat_child.py, starts the supervisor in a
thread and watches ``status()``. The ``supervisors`` fixture stops every supervisor and SIGKILLs every
process group it ever started, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from robot_rl.launch.config import load_topology
from robot_rl.launch.supervisor import (
    LaunchPlan,
    ProcessStatus,
    StateChange,
    Supervisor,
    prepare_launch,
)

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("heartbeat_child.py")


def toml_list(items: list[str]) -> str:
    """A TOML array of strings (JSON string escapes are valid TOML basic strings)."""
    return "[" + ", ".join(json.dumps(s) for s in items) + "]"


def child_table(name: str, *child_args: str, **restart: str | int | float | bool) -> str:
    """A [[process]] table running heartbeat_child.py as sender ``name``."""
    argv = [sys.executable, str(CHILD), "--sender", name, *child_args]
    lines = ["[[process]]", f'name = "{name}"', f"argv = {toml_list(argv)}"]
    for key, value in restart.items():
        rendered = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def write_topology(
    tmp_path: Path, *tables: str, heartbeat_timeout_s: float = 3.0, grace_s: float = 2.0
) -> Path:
    path = tmp_path / "topo.toml"
    head = f'[run]\nname = "t"\nheartbeat_timeout_s = {heartbeat_timeout_s}\nstop_grace_s = {grace_s}\n\n'
    path.write_text(head + "\n".join(tables))
    return path


class Recorder:
    """A reporter that keeps every state change and note (thread-safe enough: list appends)."""

    def __init__(self) -> None:
        self.changes: list[StateChange] = []
        self.notes: list[str] = []

    def start(self, plan: LaunchPlan, snapshot: Callable[[], object]) -> None:
        pass

    def changed(self, change: StateChange) -> None:
        self.changes.append(change)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def close(self) -> None:
        pass

    def of(self, name: str) -> list[ProcessStatus]:
        return [c.status for c in self.changes if c.status.name == name]


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def wait_for(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    """Supervisors a test started; stopped, and their process groups killed, at teardown."""
    started: list[Supervisor] = []
    yield started
    for sup in started:
        with contextlib.suppress(Exception):
            sup.stop(timeout_s=15)
        for pid in sup.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def launch(
    supervisors: list[Supervisor], topology: Path, run_dir: Path, duration_s: float | None = None
) -> tuple[Supervisor, Recorder]:
    rec = Recorder()
    sup = Supervisor(prepare_launch(load_topology(topology), run_dir=run_dir), reporter=rec)
    supervisors.append(sup)
    sup.start(duration_s)
    return sup, rec


def by_name(sup: Supervisor, name: str) -> ProcessStatus:
    return next(s for s in sup.status() if s.name == name)


def test_running_rate_logs_and_clean_stop(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    topo = write_topology(tmp_path, child_table("a", "--rate", "50"), child_table("b", "--rate", "200"))
    run_dir = tmp_path / "run"
    sup, rec = launch(supervisors, topo, run_dir)

    def rates_known() -> bool:
        return all(s.state == "running" and s.msgs_per_s is not None for s in sup.status())

    wait_for(rates_known, 10, "both children running with a message rate")
    time.sleep(0.5)  # a few more beats so the rate is measured over whole intervals
    a, b = by_name(sup, "a"), by_name(sup, "b")
    # The child counts msgs_out = 50 t (resp. 200 t); beats are 0.2 s apart, so a delta is 10 (40)
    # messages over ~0.2 s, measured on receipt (jitter of one 0.1 s loop tick at most).
    assert a.msgs_per_s is not None and 25 < a.msgs_per_s < 100, a
    assert b.msgs_per_s is not None and 100 < b.msgs_per_s < 400, b
    assert a.heartbeat_age_s is not None and a.heartbeat_age_s < 1.0
    assert a.counters["env_steps"] >= 0 and a.heartbeats >= 3
    pids = sup.pids()
    assert len(pids) == 2 and all(alive(p) for p in pids)

    assert sup.stop(timeout_s=15) == 0
    assert not any(alive(p) for p in pids), "a child outlived stop()"
    final = {s.name: s for s in sup.status()}
    assert final["a"].state == final["b"].state == "stopped"
    assert final["a"].exit_codes == (0,)  # the child's SIGTERM handler exits 0

    doc = json.loads((run_dir / "launch.json").read_text())
    assert doc["running"] is False and doc["exit_code"] == 0 and doc["stop_reason"] == "stop()"
    assert doc["processes"]["a"]["state"] == "stopped"
    assert doc["processes"]["a"]["pids"] == [final["a"].pid]
    assert doc["processes"]["b"]["exit_codes"] == [0]
    assert (run_dir / "topology.toml").read_text() == topo.read_text()
    for name in ("a", "b"):
        log = (run_dir / "logs" / f"{name}.log").read_text()
        assert f"start #1 of {name}" in log
        assert f"child {name}: alive" in log
        assert f"child {name}: SIGTERM, exiting 0" in log
        assert f"{name} stopped by the launcher: exit 0" in log
    assert [c.status.state for c in rec.changes if c.status.name == "a"][:2] == ["starting", "running"]


def test_crash_loop_backs_off_then_gives_up(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    crasher = child_table(
        "crasher",
        "--crash-after",
        "0.2",
        "--exit-code",
        "3",
        restart="on-failure",
        max_restarts=3,
        backoff_initial_s=0.3,
        backoff_max_s=1.0,
    )
    topo = write_topology(tmp_path, crasher)
    run_dir = tmp_path / "run"
    sup, rec = launch(supervisors, topo, run_dir)
    # With only a crash-looping process, the supervisor ends by itself once it has given up.
    assert sup.wait(timeout_s=20) == 1
    final = by_name(sup, "crasher")
    assert final.state == "gave-up"
    assert final.restarts == 3
    assert final.exit_codes == (3, 3, 3, 3)
    assert len(set(final.pids)) == 4
    # The delay before each restart doubles from 0.3 s and is capped at 1.0 s: 0.3, 0.6, 1.0.
    delays = [s.restart_in_s for s in rec.of("crasher") if s.state == "backoff"]
    assert len(delays) == 3
    for got, want in zip(delays, (0.3, 0.6, 1.0), strict=True):
        assert got is not None and want - 0.15 <= got <= want + 1e-9, delays
    # Restart counts seen by the reporter go up one at a time.
    assert sorted({s.restarts for s in rec.of("crasher")}) == [0, 1, 2, 3]
    log = (run_dir / "logs" / "crasher.log").read_text()
    assert log.count("child crasher: crashing with 3") == 4
    assert "start #4 of crasher" in log and "exited with 3" in log
    doc = json.loads((run_dir / "launch.json").read_text())
    assert doc["processes"]["crasher"]["state"] == "gave-up" and doc["exit_code"] == 1


def test_kill9_child_is_restarted(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    topo = write_topology(tmp_path, child_table("w", backoff_initial_s=0.5), child_table("other"))
    sup, rec = launch(supervisors, topo, tmp_path / "run")
    wait_for(lambda: all(s.state == "running" for s in sup.status()), 10, "children running")
    first = by_name(sup, "w")
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)

    def restarted_and_beating() -> bool:
        s = by_name(sup, "w")
        return s.restarts == 1 and s.state == "running" and s.heartbeats >= 2

    wait_for(restarted_and_beating, 10, "the killed child restarted and heartbeating")
    now = by_name(sup, "w")
    assert now.pid != first.pid and now.pid is not None and alive(now.pid)
    assert not alive(first.pid)
    assert now.exit_codes == (-signal.SIGKILL,)
    assert by_name(sup, "other").restarts == 0  # the neighbour was left alone
    states = [s.state for s in rec.of("w")]
    assert states[:4] == ["starting", "running", "backoff", "starting"], states
    assert sup.stop(timeout_s=15) == 0
    assert not any(alive(p) for p in sup.pids())


def test_never_policy_leaves_a_process_stopped(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    topo = write_topology(
        tmp_path,
        child_table("fails", "--crash-after", "0.2", "--exit-code", "5", restart="never"),
        child_table("done", "--crash-after", "0.2", "--exit-code", "0", restart="on-failure"),
        child_table("keeps", restart="never"),
    )
    sup, _ = launch(supervisors, topo, tmp_path / "run")
    wait_for(lambda: by_name(sup, "fails").state == "failed", 10, "the never-restart child to fail")
    wait_for(lambda: by_name(sup, "done").state == "stopped", 10, "the clean child to stop")
    time.sleep(1.5)  # longer than the 1 s default back-off: a restart would have happened by now
    fails, done = by_name(sup, "fails"), by_name(sup, "done")
    assert (fails.state, fails.restarts, fails.exit_codes, len(fails.pids)) == ("failed", 0, (5,), 1)
    # on-failure does not restart a clean exit.
    assert (done.state, done.restarts, done.exit_codes) == ("stopped", 0, (0,))
    assert by_name(sup, "keeps").state == "running"
    # A process that failed makes the run's exit code 1 even though stop() itself was clean.
    assert sup.stop(timeout_s=15) == 1


def test_stale_heartbeat_detection_and_restart(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    topo = write_topology(
        tmp_path,
        child_table("quiet", "--silent-after", "0.8"),
        child_table("quiet_restarted", "--silent-after", "0.8", restart_on_stale=True, backoff_initial_s=0.2),
        heartbeat_timeout_s=0.8,
    )
    sup, rec = launch(supervisors, topo, tmp_path / "run")
    wait_for(lambda: by_name(sup, "quiet").state == "stale", 10, "the silent child reported stale")
    quiet = by_name(sup, "quiet")
    assert quiet.pid is not None and alive(quiet.pid) and quiet.restarts == 0  # reported, not killed
    wait_for(lambda: by_name(sup, "quiet_restarted").restarts >= 1, 10, "the silent child restarted")
    restarted = by_name(sup, "quiet_restarted")
    assert restarted.exit_codes[0] == -signal.SIGKILL
    assert any("no heartbeat" in c.note for c in rec.changes if c.status.name == "quiet_restarted")
    assert sup.stop(timeout_s=15) == 0


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    topo = write_topology(
        tmp_path, child_table("stubborn", "--ignore-sigterm"), child_table("polite"), grace_s=0.5
    )
    sup, _ = launch(supervisors, topo, tmp_path / "run")
    wait_for(lambda: all(s.state == "running" for s in sup.status()), 10, "children running")
    pids = sup.pids()
    t0 = time.monotonic()
    assert sup.stop(timeout_s=15) == 1  # not a clean stop: one child had to be killed
    assert time.monotonic() - t0 < 3.0
    assert not any(alive(p) for p in pids)
    stubborn, polite = by_name(sup, "stubborn"), by_name(sup, "polite")
    assert (stubborn.state, stubborn.exit_codes) == ("killed", (-signal.SIGKILL,))
    assert (polite.state, polite.exit_codes) == ("stopped", (0,))


def test_duration_and_unknown_sender(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    # The child heartbeats as "someone-else", which no process of the topology is.
    table = child_table("x").replace('"--sender", "x"', '"--sender", "someone-else"')
    topo = write_topology(tmp_path, table)
    sup, rec = launch(supervisors, topo, tmp_path / "run", duration_s=1.5)
    t0 = time.monotonic()
    assert sup.wait(timeout_s=15) == 0
    assert time.monotonic() - t0 < 5.0
    assert sup.final_reason == "duration 1.5 s elapsed"
    assert any("'someone-else'" in n and "not in the topology" in n for n in rec.notes)
    assert by_name(sup, "x").heartbeats == 0  # unmatched heartbeats are not credited to it


def test_launch_command_stops_children_on_sigint(tmp_path: Path) -> None:
    """`robot-rl launch` as a real process: Ctrl-C (SIGINT to the launcher only) stops every child."""
    topo = write_topology(tmp_path, child_table("a"), child_table("b"))
    run_dir = tmp_path / "run"
    code = (
        "import sys; from pathlib import Path; from robot_rl.launch.commands import Launch; "
        f"sys.exit(Launch(Path({str(topo)!r}), run_dir=Path({str(run_dir)!r}), no_live=True).execute())"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        launch_json = run_dir / "launch.json"

        def children_running() -> bool:
            if not launch_json.exists():
                return False
            doc = json.loads(launch_json.read_text())
            return all(len(p["pids"]) == 1 for p in doc["processes"].values()) and all(
                (run_dir / "logs" / f"{n}.log").read_text().count("alive") >= 1 for n in ("a", "b")
            )

        wait_for(children_running, 15, "the launcher to start both children")
        pids = [p["pids"][0] for p in json.loads(launch_json.read_text())["processes"].values()]
        launcher.send_signal(signal.SIGINT)
        out, _ = launcher.communicate(timeout=15)
        text = out.decode()
        assert launcher.returncode == 0, text
        assert "stopping: SIGINT received" in text
        assert not any(alive(p) for p in pids)
        doc = json.loads(launch_json.read_text())
        assert doc["exit_code"] == 0 and {p["state"] for p in doc["processes"].values()} == {"stopped"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=5)
        if (run_dir / "launch.json").exists():
            for p in json.loads((run_dir / "launch.json").read_text())["processes"].values():
                for pid in p["pids"]:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)


def test_stop_during_backoff_cancels_the_restart(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    topo = write_topology(tmp_path, child_table("crasher", "--crash-after", "0.2", backoff_initial_s=30.0))
    sup, _ = launch(supervisors, topo, tmp_path / "run")
    wait_for(lambda: by_name(sup, "crasher").state == "backoff", 10, "the crashed child waiting to restart")
    pending = by_name(sup, "crasher")
    assert pending.restart_in_s is not None and 25.0 < pending.restart_in_s <= 30.0
    assert sup.stop(timeout_s=15) == 1  # it ends as its last run did: failed
    final = by_name(sup, "crasher")
    assert (final.state, final.restarts, final.exit_codes, len(final.pids)) == ("failed", 0, (3,), 1)


def test_tcp_loopback_transport(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    import random
    import socket

    # A base port whose telemetry port (+2) is free right now; the bind would fail loudly otherwise.
    for _ in range(20):
        base_port = random.randrange(20000, 60000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base_port + 2))
                break
            except OSError:
                continue
    topo = tmp_path / "topo.toml"
    topo.write_text(
        f'[run]\nname = "tcp"\ntransport = "tcp"\nbase_port = {base_port}\n\n'
        + child_table("a", "--rate", "50")
    )
    sup, _ = launch(supervisors, topo, tmp_path / "run")
    assert sup.plan.bus_base == f"tcp://127.0.0.1:{base_port}"
    assert sup.plan.telemetry == f"tcp://127.0.0.1:{base_port + 2}"
    wait_for(lambda: (by_name(sup, "a").msgs_per_s or 0.0) > 0.0, 10, "heartbeats over tcp")
    assert sup.stop(timeout_s=15) == 0
