"""The launcher's supervisor: starts a topology's processes, watches their heartbeats, restarts crashes.

One loop (``Supervisor.run``) does everything, ten times a second: it drains the telemetry SUB (every
child connects a PUB to ``Endpoints.telemetry`` and sends ``Heartbeat`` on ``heartbeat/<sender>``), reaps
children that exited, starts the ones whose back-off has run out, and flags silent ones as stale. The loop
owns the ZeroMQ socket, so nothing else touches it; ``status()`` and ``stop()`` may be called from other
threads (tests run the loop in a thread via ``start()``; ``robot-rl launch`` runs it in the main thread
with SIGINT/SIGTERM handlers that call ``request_stop``).

Process states (``ProcessStatus.state``):

=============  ==========================================================================================
starting       started, no heartbeat yet
running        heartbeats arriving
no-heartbeat   started more than heartbeat_timeout_s ago and never sent one (a process off the bus)
stale          sent heartbeats, then none for heartbeat_timeout_s (killed and restarted if restart_on_stale)
backoff        exited; restarts when the back-off delay has passed ("restarting in 3.0s")
stopping       SIGTERM sent by the launcher, waiting for the exit
stopped        exited with 0, or exited after the launcher's SIGTERM (0 or -SIGTERM)
failed         exited non-zero or by a signal and its policy does not restart it
killed         did not exit within the stop grace period and was SIGKILLed
gave-up        crashed max_restarts times in a row
=============  ==========================================================================================

Every child runs in its own session (process group), so a terminal's Ctrl-C reaches only the launcher,
which then stops the children in order: sim workers and [[process]] entries first, the learner last (so
it still receives the workers' final chunks and no worker ever sees its learner vanish), each phase
SIGTERM, then SIGKILL after ``stop_grace_s``. After a child's leader exits, its whole process group is
SIGKILLed, so helpers it forked do not outlive it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from robot_rl.launch.config import (
    ENV_BUS_BASE,
    ENV_PROCESS_NAME,
    ENV_RUN_DIR,
    ENV_TELEMETRY,
    ProcessSpec,
    RestartPolicy,
    Topology,
    bus_base_for,
    ipc_dir_fits,
    plan_processes,
)

ProcessState = Literal[
    "starting",
    "running",
    "no-heartbeat",
    "stale",
    "backoff",
    "stopping",
    "stopped",
    "failed",
    "killed",
    "gave-up",
]
TERMINAL_STATES: frozenset[str] = frozenset({"stopped", "failed", "killed", "gave-up"})
"""States a process leaves only when the launcher is restarted."""
CLEAN_STOP_CODES = frozenset({0, -signal.SIGTERM, 128 + signal.SIGTERM})
"""Exit codes that count as a clean stop after the launcher's SIGTERM (143: a shell wrapper's report)."""
RATE_COUNTERS = ("msgs_in", "msgs_out")
"""Heartbeat counters whose sum, differenced between heartbeats, is the messages/s column."""
PROGRESS_COUNTERS = ("env_steps", "received/transitions")
"""Heartbeat counters shown in the status table's progress column, when a process reports them."""
LOOP_PERIOD_S = 0.1


# ---------------------------------------------------------------------------------- restart policy


@dataclasses.dataclass(frozen=True)
class ExitDecision:
    """What to do after a process exited on its own."""

    state: ProcessState
    """"backoff" (restart after delay_s), or the terminal "stopped" / "failed" / "gave-up"."""
    delay_s: float
    """Seconds to wait before the restart (0 when not restarting)."""
    streak: int
    """Restarts in a row, this one included."""


def decide_after_exit(policy: RestartPolicy, exit_code: int, uptime_s: float, streak: int) -> ExitDecision:
    """The restart decision for a process that exited with ``exit_code`` after ``uptime_s`` seconds.

    ``streak`` is the number of restarts in a row before this exit. A run of at least
    ``policy.backoff_reset_s`` clears it, so a worker that crashes once an hour is always restarted after
    ``backoff_initial_s``, while a crash loop backs off 1, 2, 4, ... 32 s and gives up after
    ``max_restarts`` restarts in a row. A negative ``exit_code`` is a signal (``-9`` after kill -9).
    """
    failed = exit_code != 0
    if uptime_s >= policy.backoff_reset_s:
        streak = 0
    wants = policy.when == "always" or (policy.when == "on-failure" and failed)
    if not wants:
        return ExitDecision("failed" if failed else "stopped", 0.0, streak)
    if streak >= policy.max_restarts:
        return ExitDecision("gave-up", 0.0, streak)
    delay = min(policy.backoff_initial_s * 2.0**streak, policy.backoff_max_s)
    return ExitDecision("backoff", delay, streak + 1)


# ------------------------------------------------------------------------------------------ the plan


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """Everything the supervisor needs: the run folder, the bus, and the processes in start order."""

    name: str
    run_dir: Path
    """Absolute run folder: logs/<process>.log, launch.json, topology.toml."""
    bus_base: str
    """Base address passed to every child (``--connect`` / ``--bind``)."""
    telemetry: str
    """Endpoint the launcher binds its SUB on."""
    specs: tuple[ProcessSpec, ...]
    heartbeat_timeout_s: float = 5.0
    stop_grace_s: float = 5.0
    keys_dir: Path | None = None
    """CURVE keys for a tcp telemetry bind off loopback."""
    temp_ipc_dir: Path | None = None
    """A short directory made for the ipc sockets because the run folder's path was too long; removed
    when the supervisor finishes."""

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"


def default_run_dir(name: str, now: datetime | None = None) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` (relative to the working directory)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def prepare_launch(topology: Topology, *, run_dir: Path | None = None) -> LaunchPlan:
    """Create the run folder, choose the bus addresses and build every process's command line.

    ``run_dir`` overrides ``[run] run_dir``; with neither, :func:`default_run_dir`. ipc sockets go in
    the run folder when their paths fit a unix socket (about 100 bytes), otherwise in a fresh
    ``/tmp/rrl-XXXX`` directory. The topology file is copied to ``<run_dir>/topology.toml``.
    """
    from robot_rl.bus.topics import endpoints_from_base

    run = topology.run
    chosen = run_dir if run_dir is not None else run.run_dir
    if chosen is None:
        chosen = default_run_dir(run.name)
        # Two launches in the same second would share a folder (and interleave logs): number them.
        base, n = chosen, 1
        while chosen.exists():
            n += 1
            chosen = base.with_name(f"{base.name}-{n}")
    chosen = chosen.absolute()
    (chosen / "logs").mkdir(parents=True, exist_ok=True)
    if topology.source is not None and topology.source.is_file():
        shutil.copyfile(topology.source, chosen / "topology.toml")
    temp_ipc: Path | None = None
    ipc_dir = chosen
    if run.transport == "ipc" and not ipc_dir_fits(run, chosen):
        temp_ipc = Path(tempfile.mkdtemp(prefix="rrl-"))
        ipc_dir = temp_ipc
    bus_base = bus_base_for(run, ipc_dir)
    endpoints = endpoints_from_base(bus_base)
    return LaunchPlan(
        name=run.name,
        run_dir=chosen,
        bus_base=bus_base,
        telemetry=endpoints.telemetry,
        specs=plan_processes(topology, bus_base=bus_base, run_dir=chosen),
        heartbeat_timeout_s=run.heartbeat_timeout_s,
        stop_grace_s=run.stop_grace_s,
        keys_dir=run.keys_dir,
        temp_ipc_dir=temp_ipc,
    )


# ------------------------------------------------------------------------------------------ status


@dataclasses.dataclass(frozen=True)
class ProcessStatus:
    """A snapshot of one supervised process (one row of the status table)."""

    name: str
    state: ProcessState
    pid: int | None
    """Current (or last) pid; None before the first start."""
    pids: tuple[int, ...]
    """Every pid this process has had, oldest first."""
    restarts: int
    """Restarts so far (all of them, not only the ones in a row)."""
    msgs_per_s: float | None
    """(msgs_in + msgs_out) per second between its last two heartbeats; None until two arrived."""
    heartbeat_age_s: float | None
    """Seconds since its last heartbeat; None if it never sent one since its last start."""
    exit_code: int | None
    """Exit code of its last exit (negative: killed by that signal)."""
    exit_codes: tuple[int, ...]
    """Every exit code, oldest first."""
    restart_in_s: float | None
    """Seconds until the pending restart, in state "backoff"."""
    heartbeat_state: str | None
    """The ``state`` field of its last heartbeat."""
    counters: Mapping[str, int]
    """The counters of its last heartbeat or status message."""
    heartbeats: int
    """Heartbeats received since its last start."""

    def state_text(self) -> str:
        """The state as shown to people ("restarting in 3.0s" for backoff)."""
        if self.state == "backoff" and self.restart_in_s is not None:
            return f"restarting in {self.restart_in_s:.1f}s"
        return self.state


@dataclasses.dataclass(frozen=True)
class StateChange:
    """A process moved to another state (or got a new pid)."""

    t_s: float
    """Seconds since the launcher started."""
    status: ProcessStatus
    note: str = ""


class Reporter(Protocol):
    """Shows the supervisor's progress: a live table in a terminal, lines in a log."""

    def start(self, plan: LaunchPlan, snapshot: Callable[[], Sequence[ProcessStatus]]) -> None: ...

    def changed(self, change: StateChange) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


def _fmt_age(age: float | None) -> str:
    return "never" if age is None else f"{age:.1f}s ago"


def _fmt_progress(counters: Mapping[str, int]) -> str:
    return "  ".join(f"{k}={counters[k]}" for k in PROGRESS_COUNTERS if k in counters)


def format_change(change: StateChange) -> str:
    """One log line for a state change."""
    s = change.status
    parts = [f"[launch {change.t_s:7.1f}s] {s.name:<14} {s.state_text():<20}"]
    if s.pid is not None:
        parts.append(f"pid={s.pid}")
    parts.append(f"restarts={s.restarts}")
    if s.exit_code is not None and s.state not in ("starting", "running"):
        parts.append(f"exit={s.exit_code}")
    if change.note:
        parts.append(f"({change.note})")
    return " ".join(parts)


class LineReporter:
    """A line per state change on a text stream: what CI logs and tests see (no terminal needed)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def start(self, plan: LaunchPlan, snapshot: Callable[[], Sequence[ProcessStatus]]) -> None:
        self._print(f"[launch] run {plan.name}: {len(plan.specs)} processes, run dir {plan.run_dir}")
        self._print(f"[launch] bus {plan.bus_base} (telemetry {plan.telemetry})")

    def changed(self, change: StateChange) -> None:
        self._print(format_change(change))

    def note(self, text: str) -> None:
        self._print(f"[launch] {text}")

    def close(self) -> None:
        self.stream.flush()

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def status_table(statuses: Sequence[ProcessStatus]) -> Any:
    """The live status table (a rich Table): one row per process."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Ctrl-C stops every process", title_justify="left")
    for col, justify in (
        ("process", "left"),
        ("state", "left"),
        ("pid", "right"),
        ("restarts", "right"),
        ("msgs/s", "right"),
        ("last heartbeat", "right"),
        ("exit", "right"),
        ("progress", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    colour = {"running": "green", "stale": "yellow", "backoff": "yellow", "no-heartbeat": "yellow"}
    for s in statuses:
        style = colour.get(s.state, "red" if s.state in ("failed", "killed", "gave-up") else "")
        table.add_row(
            s.name,
            Text(s.state_text(), style=style),
            "" if s.pid is None else str(s.pid),
            str(s.restarts),
            "-" if s.msgs_per_s is None else f"{s.msgs_per_s:.1f}",
            _fmt_age(s.heartbeat_age_s),
            "" if s.exit_code is None else str(s.exit_code),
            _fmt_progress(s.counters),
        )
    return table


class LiveReporter:
    """A rich.live status table refreshed 4 times a second, state changes printed above it."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console()
        self._live: Any = None
        self._plan: LaunchPlan | None = None

    def start(self, plan: LaunchPlan, snapshot: Callable[[], Sequence[ProcessStatus]]) -> None:
        from rich.live import Live

        self._plan = plan
        self._snapshot = snapshot
        self.console.print(
            f"[bold]robot-rl launch[/] {plan.name}: run dir {plan.run_dir}, bus {plan.bus_base}"
        )
        # get_renderable is called from rich's refresh thread; snapshot() takes the supervisor's lock.
        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4)
        self._live.start()

    def _render(self) -> Any:
        return status_table(self._snapshot())

    def changed(self, change: StateChange) -> None:
        self.console.print(format_change(change), highlight=False, markup=False)

    def note(self, text: str) -> None:
        self.console.print(f"[launch] {text}", highlight=False, markup=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


# ------------------------------------------------------------------------------------- supervisor


@dataclasses.dataclass
class _Proc:
    """Mutable bookkeeping of one process; only the loop thread writes it, under the supervisor lock."""

    spec: ProcessSpec
    log_path: Path
    state: ProcessState = "starting"
    popen: subprocess.Popen[bytes] | None = None
    pids: list[int] = dataclasses.field(default_factory=list)
    restarts: int = 0
    streak: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    exit_codes: list[int] = dataclasses.field(default_factory=list)
    hb_seen_at: float | None = None
    hb_state: str | None = None
    hb_count: int = 0
    counters: dict[str, int] = dataclasses.field(default_factory=dict)
    rate: float | None = None
    rate_sample: tuple[float, int] | None = None
    kill_reason: str = ""
    stop_sent_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.returncode is None


class Supervisor:
    """Runs the processes of a :class:`LaunchPlan` until stopped (module docstring: states, order).

    Use ``code = Supervisor(plan).run(duration_s)`` in the main thread, or ``start()`` / ``status()`` /
    ``stop()`` from tests. ``run`` returns 0 when every process ended "stopped" and 1 otherwise.
    ``launch.json`` in the run folder is written when the processes have started and again at the end.
    """

    def __init__(self, plan: LaunchPlan, *, reporter: Reporter | None = None) -> None:
        if not plan.specs:
            raise ValueError("a launch plan needs at least one process")
        self.plan = plan
        self.reporter: Reporter = reporter if reporter is not None else LineReporter()
        self._lock = threading.Lock()
        self._procs = [_Proc(spec, plan.logs_dir / f"{spec.name}.log") for spec in plan.specs]
        self._by_sender = {p.spec.heartbeat_sender: p for p in self._procs}
        self._unknown_senders: set[str] = set()
        self._stop_reason: str | None = None
        self._force_kill = False
        self._t0 = time.monotonic()
        self._started_wall = datetime.now().isoformat(timespec="seconds")
        self._last_shown: dict[str, tuple[str, int | None, int]] = {}
        self._thread: threading.Thread | None = None
        self._result: int | None = None
        self._finished = threading.Event()
        self.final_reason: str | None = None

    # ----------------------------------------------------------------------------- public API

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to stop every process; safe from a signal handler. A second call while
        stopping skips the grace period (a second Ctrl-C kills at once)."""
        if self._stop_reason is not None:
            self._force_kill = True
        else:
            self._stop_reason = reason

    def start(self, duration_s: float | None = None) -> None:
        """Run :meth:`run` in a background thread (for tests and embedding)."""
        if self._thread is not None:
            raise RuntimeError("supervisor already started")

        def target() -> None:
            self._result = self.run(duration_s)

        self._thread = threading.Thread(target=target, name="launch-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> int:
        """Stop every process (workers first, learner last), wait for the loop; returns the exit code."""
        self.request_stop("stop()")
        return self.wait(timeout_s)

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the loop started by :meth:`start` to finish; its exit code."""
        if self._thread is None:
            raise RuntimeError("supervisor was not started with start()")
        self._thread.join(timeout_s)
        if self._thread.is_alive() or self._result is None:
            raise TimeoutError("supervisor still running")
        return self._result

    def status(self) -> tuple[ProcessStatus, ...]:
        """A snapshot of every process, in start order."""
        now = time.monotonic()
        with self._lock:
            return tuple(self._status_of(p, now) for p in self._procs)

    def pids(self) -> list[int]:
        """Every pid any process has had (for orphan checks)."""
        with self._lock:
            return [pid for p in self._procs for pid in p.pids]

    # ----------------------------------------------------------------------------------- loop

    def run(self, duration_s: float | None = None) -> int:
        """Start everything, supervise until stopped (``duration_s``, :meth:`request_stop`, or all
        processes finished), stop everything; 0 if every process ended "stopped", else 1."""
        from robot_rl.bus.sockets import BusContext, Receiver, make_sub
        from robot_rl.bus.topics import HEARTBEAT_PREFIX, STATUS

        self._t0 = time.monotonic()
        deadline = None if duration_s is None else self._t0 + duration_s
        server_keys = None
        if self.plan.keys_dir is not None:
            from robot_rl.bus.security import load_server_keys

            server_keys = load_server_keys(self.plan.keys_dir)
        ctx = BusContext(server_keys=server_keys)
        reason = "all processes finished"
        try:
            # Bound before the first child starts: a PUB drops what it sends while no SUB is connected.
            sock = make_sub(ctx, self.plan.telemetry, topics=(HEARTBEAT_PREFIX, STATUS), bind=True)
            receiver = Receiver(sock)
            self.plan.logs_dir.mkdir(parents=True, exist_ok=True)
            self.reporter.start(self.plan, self.status)
            with self._lock:
                for p in self._procs:
                    self._spawn(p, time.monotonic())
            self._report_changes()
            self._write_launch_json(running=True, reason=None)
            while True:
                self._pump(receiver, LOOP_PERIOD_S)
                now = time.monotonic()
                with self._lock:
                    self._reap(now)
                    self._restart_due(now)
                    self._check_heartbeats(now)
                self._report_changes()
                if self._stop_reason is not None:
                    reason = self._stop_reason
                    break
                if deadline is not None and now >= deadline:
                    reason = f"duration {duration_s:g} s elapsed"
                    break
                with self._lock:
                    if all(p.state in TERMINAL_STATES for p in self._procs):
                        break
            self.reporter.note(f"stopping: {reason}")
            self._shutdown()
        finally:
            # Whatever went wrong in the loop, no child may outlive the launcher.
            with self._lock:
                for p in self._procs:
                    if p.alive:
                        self._killpg(p, signal.SIGKILL)
                        self._reap_one(p, time.monotonic(), final=True)
            ctx.close()
            self._report_changes()
            self.final_reason = reason
            code = 0 if all(p.state == "stopped" for p in self._procs) else 1
            self._write_launch_json(running=False, reason=reason, exit_code=code)
            self.reporter.note(f"exit {code}; final state in {self.plan.run_dir / 'launch.json'}")
            self.reporter.close()
            if self.plan.temp_ipc_dir is not None:
                shutil.rmtree(self.plan.temp_ipc_dir, ignore_errors=True)
            self._finished.set()
        return code

    # ------------------------------------------------------------------------------ internals

    def _pump(self, receiver: Any, timeout_s: float) -> None:
        """Receive telemetry for up to ``timeout_s`` (this is the loop's sleep)."""
        from robot_rl.bus.messages import Heartbeat, Status

        decoded = receiver.recv(int(timeout_s * 1000))
        budget = 1000  # bounded so a flood of telemetry cannot starve reaping and restarts
        while decoded is not None and budget > 0:
            budget -= 1
            msg = decoded.msg
            sender = decoded.env.sender
            if isinstance(msg, Heartbeat | Status):
                now = time.monotonic()
                first_unknown = False
                with self._lock:
                    proc = self._by_sender.get(sender)
                    if proc is None:
                        first_unknown = sender not in self._unknown_senders
                        self._unknown_senders.add(sender)
                    elif proc.alive:
                        # A beat queued before a crash must not revive a process in back-off.
                        self._observe(
                            proc, msg.state, dict(msg.counters), now, heartbeat=isinstance(msg, Heartbeat)
                        )
                if first_unknown:
                    self.reporter.note(f"telemetry from {sender!r}, which is not in the topology (ignored)")
            decoded = receiver.recv(0)

    def _observe(
        self, p: _Proc, state: str, counters: dict[str, int], now: float, *, heartbeat: bool
    ) -> None:
        p.hb_seen_at = now
        p.hb_state = state
        p.counters = counters
        if heartbeat:
            p.hb_count += 1
        if p.state in ("starting", "no-heartbeat", "stale"):
            p.state = "running"
        if any(k in counters for k in RATE_COUNTERS):
            total = sum(counters.get(k, 0) for k in RATE_COUNTERS)
            if p.rate_sample is not None and now > p.rate_sample[0] and total >= p.rate_sample[1]:
                p.rate = (total - p.rate_sample[1]) / (now - p.rate_sample[0])
            p.rate_sample = (now, total)

    def _spawn(self, p: _Proc, now: float) -> None:
        """Start (or restart) ``p``; a command that cannot be executed counts as an exit with 127."""
        # One math thread per process unless the user set otherwise: every process here is one of several
        # sharing the cores, and BLAS thread pools fighting over them slow everything down (measured).
        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **os.environ}
        env.update(
            {
                ENV_BUS_BASE: self.plan.bus_base,
                ENV_TELEMETRY: self.plan.telemetry,
                ENV_RUN_DIR: str(self.plan.run_dir),
                ENV_PROCESS_NAME: p.spec.name,
                # Children's output goes to a file; unbuffered so a crash leaves its last lines there.
                "PYTHONUNBUFFERED": "1",
            }
        )
        p.state = "starting"
        p.restart_at = None
        p.hb_seen_at = None
        p.hb_state = None
        p.hb_count = 0
        p.counters = {}
        p.rate = None
        p.rate_sample = None
        p.kill_reason = ""
        p.stop_sent_at = None
        p.started_at = now
        run_no = len(p.pids) + 1
        with open(p.log_path, "ab") as log:
            log.write(self._banner(f"start #{run_no} of {p.spec.name}: {' '.join(p.spec.argv)}"))
            log.flush()
            try:
                p.popen = subprocess.Popen(
                    list(p.spec.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # own process group: Ctrl-C reaches only the launcher
                    close_fds=True,
                )
            except OSError as err:
                log.write(self._banner(f"could not start: {err}"))
                p.popen = None
                self._after_exit(p, 127, now)
                return
        p.pids.append(p.popen.pid)

    def _banner(self, text: str) -> bytes:
        stamp = datetime.now().isoformat(timespec="milliseconds")
        return f"==== robot-rl launch {stamp}: {text} ====\n".encode()

    def _killpg(self, p: _Proc, sig: int) -> None:
        if p.popen is None:
            return
        # The group id is the leader's pid (start_new_session); it may outlive the leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.popen.pid, sig)

    def _reap(self, now: float) -> None:
        for p in self._procs:
            if p.popen is not None and p.popen.returncode is None and p.popen.poll() is not None:
                self._reap_one(p, now, final=False)

    def _reap_one(self, p: _Proc, now: float, *, final: bool) -> None:
        """Record the exit of ``p`` and clear its process group; decide on a restart unless ``final``."""
        assert p.popen is not None
        code = p.popen.wait()
        # Helpers the child forked share its group; they must not outlive it.
        self._killpg(p, signal.SIGKILL)
        uptime = now - p.started_at
        note = f" ({p.kill_reason})" if p.kill_reason else ""
        with open(p.log_path, "ab") as log:
            log.write(self._banner(f"{p.spec.name} exited with {code} after {uptime:.1f} s{note}"))
        if final:
            p.exit_codes.append(code)
            p.state = "killed"
            return
        self._after_exit(p, code, now)

    def _after_exit(self, p: _Proc, code: int, now: float) -> None:
        p.exit_codes.append(code)
        decision = decide_after_exit(p.spec.restart, code, now - p.started_at, p.streak)
        p.streak = decision.streak
        p.state = decision.state
        if decision.state == "backoff":
            p.restart_at = now + decision.delay_s

    def _restart_due(self, now: float) -> None:
        for p in self._procs:
            if p.state == "backoff" and p.restart_at is not None and now >= p.restart_at:
                p.restarts += 1
                self._spawn(p, now)

    def _check_heartbeats(self, now: float) -> None:
        timeout = self.plan.heartbeat_timeout_s
        for p in self._procs:
            if not p.alive or p.kill_reason:
                continue
            if p.hb_seen_at is None:
                if p.state == "starting" and now - p.started_at > timeout:
                    p.state = "no-heartbeat"
            elif now - p.hb_seen_at > timeout and p.state == "running":
                p.state = "stale"
                if p.spec.restart.restart_on_stale:
                    p.kill_reason = f"no heartbeat for {timeout:g} s: killed by the launcher"
                    self._killpg(p, signal.SIGKILL)

    def _shutdown(self) -> None:
        """Stop phase 0 (workers, [[process]]), then phase 1 (learner): SIGTERM, grace, SIGKILL."""
        for phase in (0, 1):
            with self._lock:
                group = [p for p in self._procs if p.spec.stop_phase == phase]
                for p in group:
                    if p.state == "backoff":
                        # The pending restart is cancelled; the process ends as its last run did.
                        p.state = "stopped" if p.exit_codes and p.exit_codes[-1] == 0 else "failed"
                        p.restart_at = None
                    elif p.alive:
                        p.state = "stopping"
                        p.stop_sent_at = time.monotonic()
                        self._killpg(p, signal.SIGTERM)
            self._report_changes()
            deadline = time.monotonic() + self.plan.stop_grace_s
            while True:
                with self._lock:
                    for p in group:
                        if p.alive and p.popen is not None and p.popen.poll() is not None:
                            code = p.popen.wait()
                            self._killpg(p, signal.SIGKILL)
                            p.exit_codes.append(code)
                            p.state = "stopped" if code in CLEAN_STOP_CODES else "failed"
                            with open(p.log_path, "ab") as log:
                                log.write(self._banner(f"{p.spec.name} stopped by the launcher: exit {code}"))
                    left = [p for p in group if p.alive]
                if not left or self._force_kill or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
            self._report_changes()
            with self._lock:
                for p in left:
                    p.kill_reason = f"no exit {self.plan.stop_grace_s:g} s after SIGTERM"
                    self._killpg(p, signal.SIGKILL)
                    self._reap_one(p, time.monotonic(), final=True)
            self._report_changes()

    def _status_of(self, p: _Proc, now: float) -> ProcessStatus:
        return ProcessStatus(
            name=p.spec.name,
            state=p.state,
            pid=p.pids[-1] if p.pids else None,
            pids=tuple(p.pids),
            restarts=p.restarts,
            msgs_per_s=p.rate,
            heartbeat_age_s=None if p.hb_seen_at is None else now - p.hb_seen_at,
            exit_code=p.exit_codes[-1] if p.exit_codes else None,
            exit_codes=tuple(p.exit_codes),
            restart_in_s=None if p.restart_at is None else max(0.0, p.restart_at - now),
            heartbeat_state=p.hb_state,
            counters=dict(p.counters),
            heartbeats=p.hb_count,
        )

    def _report_changes(self) -> None:
        now = time.monotonic()
        changes: list[StateChange] = []
        with self._lock:
            for p in self._procs:
                key = (p.state, p.pids[-1] if p.pids else None, p.restarts)
                if self._last_shown.get(p.spec.name) != key:
                    self._last_shown[p.spec.name] = key
                    status = self._status_of(p, now)
                    changes.append(StateChange(now - self._t0, status, p.kill_reason))
        for change in changes:
            self.reporter.changed(change)

    def _write_launch_json(self, *, running: bool, reason: str | None, exit_code: int | None = None) -> None:
        """``<run_dir>/launch.json``: the bus, and per process its command, state, pids, exit codes.

        Written atomically (temp file + rename) so a reader never sees half a file.
        """
        now = time.monotonic()
        with self._lock:
            processes = {
                p.spec.name: {
                    "argv": list(p.spec.argv),
                    "heartbeat_sender": p.spec.heartbeat_sender,
                    "log": str(p.log_path.relative_to(self.plan.run_dir)),
                    "state": p.state,
                    "restarts": p.restarts,
                    "pids": list(p.pids),
                    "exit_codes": list(p.exit_codes),
                    "last_counters": dict(p.counters),
                    "heartbeats_since_last_start": p.hb_count,
                }
                for p in self._procs
            }
        doc = {
            "name": self.plan.name,
            "run_dir": str(self.plan.run_dir),
            "bus_base": self.plan.bus_base,
            "telemetry": self.plan.telemetry,
            "launcher_pid": os.getpid(),
            "started_at": self._started_wall,
            "running": running,
            "uptime_s": round(now - self._t0, 3),
            "stop_reason": reason,
            "exit_code": exit_code,
            "processes": processes,
        }
        path = self.plan.run_dir / "launch.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)
