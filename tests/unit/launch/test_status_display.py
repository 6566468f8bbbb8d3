"""The status table and the per-change log lines show what the snapshot holds."""

from __future__ import annotations

import io

from rich.console import Console

from robot_rl.launch.supervisor import ProcessStatus, StateChange, format_change, status_table


def status(name: str, **kw: object) -> ProcessStatus:
    base: dict[str, object] = {
        "name": name,
        "state": "running",
        "pid": 100,
        "pids": (100,),
        "restarts": 0,
        "msgs_per_s": None,
        "heartbeat_age_s": None,
        "exit_code": None,
        "exit_codes": (),
        "restart_in_s": None,
        "heartbeat_state": None,
        "counters": {},
        "heartbeats": 0,
    }
    base.update(kw)
    return ProcessStatus(**base)  # type: ignore[arg-type]


def render(*rows: ProcessStatus) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(status_table(rows))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_table_rows() -> None:
    text = render(
        status("learner", msgs_per_s=123.45, heartbeat_age_s=0.42, counters={"received/transitions": 9000}),
        status("sim-0", state="backoff", restart_in_s=2.5, restarts=3, exit_code=-9, exit_codes=(-9,) * 3),
        status("sim-1", state="starting", pid=None, pids=()),
    )
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ ")}
    learner = lines["learner"]
    assert "running" in learner and "123.5" in learner and "0.4s ago" in learner
    assert "received/transitions=9000" in learner
    assert "restarting in 2.5s" in lines["sim-0"] and " 3 " in lines["sim-0"] and "-9" in lines["sim-0"]
    assert "never" in lines["sim-1"] and " - " in lines["sim-1"]


def test_change_line() -> None:
    line = format_change(StateChange(12.34, status("sim-0", state="failed", exit_code=3, restarts=2), "why"))
    assert line == "[launch    12.3s] sim-0          failed               pid=100 restarts=2 exit=3 (why)"
    running = format_change(StateChange(1.0, status("a", exit_code=-9)))
    assert "exit=" not in running  # a running process's previous exit is not news
