"""`RealRig`: the firmware emulator and the firmware bridge as two subprocesses on a private ipc bus.

    with RealRig("quadruped") as rig:
        env = RealRobotEnv("quadruped", bus=rig.bus)

Start: a private directory under the system temp dir (short: ipc paths are limited to ~100 bytes), the
emulator (`python -m firmware_bridge.emulator`, whose first stdout line is its pty path), then the bridge on
that pty with bus base address `ipc://<dir>/rrl-rig`; ready once the bridge publishes a JointState. Stop:
SIGTERM to both, SIGKILL after `stop_timeout_s`, directory removed. On Linux the children also get SIGTERM
when the process that started them dies (PR_SET_PDEATHSIG), so a `kill -9` of the owner leaves no orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
CALIB_DIR = REPO_ROOT / "calib"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class RigError(RuntimeError):
    """The emulator or the bridge did not come up (the message says which, with its log's tail)."""


class RealRig:
    """Emulator + bridge subprocesses for `robot` (see the module docstring). Times in seconds.

    calib:           calibration file (default calib/<robot>.toml of this repository)
    realtime_factor: the emulator's clock speed relative to wall time
    log_dir:         where emulator.log and bridge.log go (default: the private directory, removed on stop)
    """

    def __init__(
        self,
        robot: str = "quadruped",
        *,
        calib: Path | None = None,
        realtime_factor: float = 1.0,
        seed: int = 0,
        log_dir: Path | None = None,
        ready_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.robot = robot
        self.calib = calib if calib is not None else CALIB_DIR / f"{robot}.toml"
        self.realtime_factor = realtime_factor
        self.seed = seed
        self.log_dir = log_dir
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.dir: Path | None = None
        self.bus = ""
        self.port = ""
        self.emulator: subprocess.Popen[bytes] | None = None
        self.bridge: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> RealRig:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _log(self, name: str) -> IO[bytes]:
        assert self.dir is not None
        base = self.log_dir if self.log_dir is not None else self.dir
        base.mkdir(parents=True, exist_ok=True)
        f = (base / f"{name}.log").open("wb")
        self._logs.append(f)
        return f

    def _tail(self, name: str) -> str:
        base = self.log_dir if self.log_dir is not None else self.dir
        if base is None:
            return ""
        try:
            return (base / f"{name}.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _popen(self, args: list[str], *, stdout: int | IO[bytes], log: IO[bytes]) -> subprocess.Popen[bytes]:
        # One BLAS thread per child: the rig shares a small machine with the policy and the recorder.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=stdout,
            stderr=log,
            env=env,
            cwd=REPO_ROOT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def start(self) -> None:
        """Start both processes and wait until the bridge publishes state; RigError (all stopped) if not."""
        self.dir = Path(tempfile.mkdtemp(prefix="rrl-", dir=tempfile.gettempdir()))
        self.bus = f"ipc://{self.dir}/rrl-rig"
        try:
            self.emulator = self._popen(
                [
                    "firmware_bridge.emulator",
                    "--robot",
                    self.robot,
                    "--calib",
                    str(self.calib),
                    "--seed",
                    str(self.seed),
                    "--realtime-factor",
                    str(self.realtime_factor),
                ],
                stdout=subprocess.PIPE,
                log=self._log("emulator"),
            )
            self.port = self._read_port(self.emulator)
            self.bridge = self._popen(
                [
                    "firmware_bridge.bridge",
                    "--port",
                    self.port,
                    "--robot",
                    self.robot,
                    "--calib",
                    str(self.calib),
                    "--bus",
                    self.bus,
                ],
                stdout=self._log("bridge_stdout"),
                log=self._log("bridge"),
            )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _read_port(self, proc: subprocess.Popen[bytes]) -> str:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(self.ready_timeout_s):
                raise RigError(f"emulator printed no pty path in {self.ready_timeout_s:g} s")
            line = proc.stdout.readline().decode().strip()
        finally:
            sel.close()
        if not line.startswith("/dev/"):
            raise RigError(f"emulator did not start (first line {line!r}): {self._tail('emulator')}")
        return line

    def _wait_ready(self) -> None:
        from robot_rl.bus.messages import JointState
        from robot_rl.bus.sockets import BusContext, Receiver, make_sub
        from robot_rl.bus.topics import endpoints_from_base, obs_topic

        deadline = time.monotonic() + self.ready_timeout_s
        with BusContext() as ctx:
            rx = Receiver(make_sub(ctx, endpoints_from_base(self.bus).obs, topics=(obs_topic(self.robot),)))
            while time.monotonic() < deadline:
                for name, proc in (("emulator", self.emulator), ("bridge", self.bridge)):
                    if proc is not None and proc.poll() is not None:
                        raise RigError(f"{name} exited with {proc.returncode}: {self._tail(name)}")
                decoded = rx.recv(200)
                if decoded is not None and isinstance(decoded.msg, JointState):
                    return
        raise RigError(
            f"no JointState from the bridge within {self.ready_timeout_s:g} s: {self._tail('bridge')}"
        )

    def stop(self) -> None:
        """SIGTERM both (bridge first: it stops commanding), SIGKILL stragglers, remove the directory."""
        procs = [p for p in (self.bridge, self.emulator) if p is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            if p.stdout is not None:
                p.stdout.close()
        self.bridge = self.emulator = None
        for f in self._logs:
            f.close()
        self._logs.clear()
        if self.dir is not None:
            # Socket files (and the logs, unless log_dir put them elsewhere).
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
