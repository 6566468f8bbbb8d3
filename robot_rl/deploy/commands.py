"""`robot-rl deploy`: run an exported `policy.onnx` on the robot through the firmware bridge.

    robot-rl deploy policy.onnx --port /dev/ttyUSB0          start a bridge on the port (private ipc bus)
    robot-rl deploy policy.onnx --bus ipc:///tmp/rrl-real    use a bridge already running there
    python -m robot_rl.deploy policy.onnx ...                 the same, without the CLI dispatcher

Start-up, before anything is commanded (exit 2 with one line naming the problem): the model loads and its
manifest is complete (robot_rl.export.runtime), the calibration file loads, and the manifest agrees with it
and with the task's observation layout (robot_rl.deploy.checks). Then the runner's start sequence, policy
loop and damping exit (robot_rl.deploy.runner), the episodes logged in the log store format (source real)
under `--log-dir`, and a report printed and written as JSON.

Exit codes: 0 completed (or the robot fell, or the operator stopped it), 2 refused (bad input, a model that
does not match the robot), 3 bridge unavailable (no state from it, a request it could not carry out),
4 safety stop (deadline, nan, estop, fault, lost).

Imports: numpy, onnxruntime, pyzmq, msgspec, pyarrow and the standard library; never torch, Gymnasium,
MuJoCo, or tyro (`main` parses the dataclass with argparse; `robot-rl deploy` parses it with tyro).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from robot_rl.deploy.exit_codes import EXIT_BRIDGE, EXIT_REFUSED

if TYPE_CHECKING:
    from robot_rl.data.writer import EpisodeWriter
    from robot_rl.deploy.observation import ObservationBuilder
    from robot_rl.export.manifest import DeployManifest
    from robot_rl.export.runtime import OnnxPolicy
    from robot_rl.schema import EpisodeMeta

CALIB_DIR = Path(__file__).resolve().parents[2] / "calib"


class _TyroMarkers:
    """`tyro.conf` markers, looked up only when tyro reads `Deploy`'s annotations (robot-rl's CLI, which has
    imported tyro already); `main` reads them with argparse and never imports tyro."""

    @property
    def Positional(self) -> object:
        import tyro.conf

        return tyro.conf.Positional


_cli = _TyroMarkers()


@dataclass(frozen=True)
class Deploy:
    """Run an exported policy.onnx on the robot through the firmware bridge (onnxruntime only)."""

    policy: Annotated[Path, _cli.Positional]
    """The exported model (`robot-rl export`): policy.onnx with its deployment manifest."""
    port: str | None = None
    """Serial device of the robot's firmware: start a bridge on it (private ipc bus), stopped at exit."""
    bus: str | None = None
    """Bus base address of a bridge already running (instead of --port)."""
    calib: Path | None = None
    """Calibration file; default calib/<robot>.toml of this installation (robot from the model's manifest)."""
    steps: int | None = None
    """Policy steps per episode (control periods); default: until Ctrl-C (or --duration)."""
    duration: float | None = None
    """Seconds of policy per episode (instead of, or with, --steps: whichever comes first)."""
    episodes: int = 1
    """Episodes, each with its own start sequence; > 1 asks the bridge to reset the robot before each one
    (the emulator can, real firmware cannot: refused there)."""
    reset: bool | None = None
    """Ask the bridge to reset the robot to its start pose before each episode (the emulator can, real
    firmware cannot: refused there); default: only when --episodes > 1."""
    command_mps: tuple[float, ...] = ()
    """Forward-velocity command per episode, cycled (quadruped task); default: the middle of the model's
    training command range."""
    start: Literal["auto", "prompt"] = "auto"
    """`auto`: ramp at once, run after --hold-s. `prompt`: Enter starts the ramp, Enter again the policy."""
    ramp_s: float = 2.0
    """Time to interpolate from the measured joint angles to the default pose (s)."""
    hold_s: float = 1.0
    """Default-pose hold before the policy starts (s; with --start auto)."""
    damp_s: float = 0.5
    """Damping commands (kp=0, the model's kd) at exit before the firmware watchdog latches damping (s)."""
    max_overruns: int = 5
    """Consecutive overruns (late tick or work past its deadline) tolerated; one more stops the run."""
    lost_after_s: float = 0.1
    """No JointState for this long -> stop (port lost, bridge gone) (s)."""
    allow_calib_mismatch: bool = False
    """Run a model exported for another calibration hash (logged as a warning in the report)."""
    clear_faults: bool = False
    """Clear latched firmware faults other than the watchdog's (an e-stop included) at start."""
    log_dir: Path | None = None
    """Run folder of the deployed episodes (log store format, source real); default runs/deploy-<UTC time>."""
    log: bool = True
    """Log the deployed episodes (--no-log: only the report)."""
    report: Path | None = None
    """Where the JSON report goes; default <log-dir>/report.json (stdout gets the summary either way)."""
    threads: int = 1
    """onnxruntime intra-op threads (one leaves a core to the bridge)."""
    control_index: int = 50
    """The bridge's control address index."""
    start_timeout_s: float = 10.0
    """Longest wait for the bridge's first JointState (s)."""

    def execute(self) -> int:
        """Deploy; the exit code of the module docstring."""
        from firmware_bridge.calibration import CalibrationError, calibration_hash, load_calibration
        from robot_rl.deploy.checks import DeployRefused, Expected, check_manifest
        from robot_rl.deploy.observation import ObservationBuilder
        from robot_rl.export.runtime import OnnxPolicy, PolicyFileError
        from sim.robots import get_robot
        from sim.tasks import default_task

        if (self.port is None) == (self.bus is None):
            return _refuse(
                "give exactly one of --port DEVICE (start a bridge) and --bus ADDR (a running one)"
            )
        if self.steps is not None and self.steps < 1:
            return _refuse(f"--steps: expected >= 1, got {self.steps}")
        if self.duration is not None and not self.duration > 0:
            return _refuse(f"--duration: expected > 0 s, got {self.duration}")
        if self.episodes < 1:
            return _refuse(f"--episodes: expected >= 1, got {self.episodes}")
        if self.episodes > 1 and self.steps is None and self.duration is None:
            return _refuse("--episodes > 1 needs --steps or --duration (each episode must end by itself)")
        try:
            policy = OnnxPolicy(self.policy, threads=self.threads)
        except PolicyFileError as err:
            return _refuse(str(err))
        m = policy.manifest
        calib = self.calib if self.calib is not None else CALIB_DIR / f"{m.robot}.toml"
        if not calib.is_file():
            return _refuse(f"calibration file {calib} not found (--calib)")
        try:
            cal = load_calibration(calib)
            robot = get_robot(cal.robot)
        except (CalibrationError, ValueError) as err:
            return _refuse(str(err).splitlines()[0] if str(err) else type(err).__name__)
        task_kwargs: dict[str, Any] = {}
        task_range = m.task.get("command_range_mps") if isinstance(m.task, dict) else None
        if task_range is not None and robot.floating_base:
            task_kwargs["command_range_mps"] = (float(task_range[0]), float(task_range[1]))
        try:
            task = default_task(robot, **task_kwargs)
            builder = ObservationBuilder(robot, task)
        except ValueError as err:
            return _refuse(str(err))
        cal_hash = calibration_hash(cal)
        expected = Expected.from_calibration(
            cal,
            cal_hash,
            obs_names=builder.obs_names,
            default_joint_pos_rad=builder.q_default.tolist(),
            action_scale_rad=builder.action_scale_rad,
            task_name=type(task).__name__,
        )
        try:
            warnings = check_manifest(m, expected, allow_calib_mismatch=self.allow_calib_mismatch)
        except DeployRefused as err:
            return _refuse(f"refusing to deploy {self.policy}: {err}")
        for w in warnings:
            _say(f"warning: {w}")
        commands = self.command_mps
        if not commands and hasattr(task, "command_range_mps"):
            lo, hi = task.command_range_mps
            commands = ((lo + hi) / 2.0,)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log_dir = self.log_dir if self.log_dir is not None else Path("runs") / f"deploy-{stamp}"
        return self._deploy(policy, builder, cal_hash, calib, commands, log_dir, warnings)

    def _deploy(
        self,
        policy: OnnxPolicy,
        builder: ObservationBuilder,
        cal_hash: str,
        calib: Path,
        commands: tuple[float, ...],
        log_dir: Path,
        warnings: list[str],
    ) -> int:
        from robot_rl.deploy.checks import DeployRefused
        from robot_rl.deploy.runner import BridgeUnavailable, DeployRunner, EpisodeLog, RunnerConfig

        m = policy.manifest
        config = RunnerConfig(
            steps=self.steps,
            duration_s=self.duration,
            episodes=self.episodes,
            reset=self.reset,
            ramp_s=self.ramp_s,
            hold_s=self.hold_s,
            damp_s=self.damp_s,
            max_overruns=self.max_overruns,
            lost_after_s=self.lost_after_s,
            start_timeout_s=self.start_timeout_s,
            start=self.start,
            clear_faults=self.clear_faults,
            commands_mps=commands,
            control_index=self.control_index,
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        bridge: _BridgeProcess | None = None
        if self.port is not None:
            bridge = _BridgeProcess(self.port, m.robot, calib, log_dir / "bridge.log")
            bus = bridge.start()
            _say(f"deploy: bridge started on {self.port} (bus {bus}, log {log_dir / 'bridge.log'})")
        else:
            assert self.bus is not None
            bus = self.bus
        writer: EpisodeWriter | None = None
        runner: DeployRunner | None = None
        previous: dict[int, Any] = {}
        try:
            episode_log = None
            if self.log:
                writer = _open_writer(log_dir, m, builder, cal_hash, self, bus)
                episode_log = EpisodeLog(writer, _meta_factory(m, builder, cal_hash, self.policy))
            runner = DeployRunner(
                policy,
                m,
                builder,
                bus,
                config,
                log=episode_log,
                confirm=_StdinConfirm() if self.start == "prompt" else None,
                link_alive=bridge.alive if bridge is not None else None,
                say=_say,
            )
            stopper = runner

            def on_signal(signum: int, frame: types.FrameType | None) -> None:
                stopper.request_stop()

            previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            _say(
                f"deploy: {self.policy} ({m.algo}, run {m.run_id or '?'}) on {m.robot}, "
                f"control {m.control_dt_s * 1e3:g} ms, bus {bus}"
            )
            try:
                report = runner.run()
            except DeployRefused as err:
                return _refuse(f"refusing to deploy {self.policy}: {err}")
            except BridgeUnavailable as err:
                print(f"error: {err}", file=sys.stderr)
                return EXIT_BRIDGE
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            if runner is not None:
                runner.close()
            if writer is not None:
                writer.close()
            if bridge is not None:
                bridge.stop()
        report.warnings.extend(warnings)
        report.policy = str(self.policy)
        if self.log:
            report.log_dir = str(log_dir)
        print(report.summary(), flush=True)
        out = self.report if self.report is not None else log_dir / "report.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        return report.exit_code


# --- helpers ------------------------------------------------------------------------------------------------


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_REFUSED


class _StdinConfirm:
    """The operator's Enter on stdin, polled without blocking (select); EOF never confirms."""

    def __init__(self) -> None:
        self._eof = False

    def __call__(self, phase: object) -> bool:
        if self._eof:
            return False
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if not ready:
            return False
        if sys.stdin.readline() == "":
            self._eof = True
            return False
        return True


class _BridgeProcess:
    """`python -m firmware_bridge.bridge` on `port`, on a private ipc bus, as a child of this process."""

    def __init__(self, port: str, robot: str, calib: Path, log_path: Path) -> None:
        self.args = ["--port", port, "--robot", robot, "--calib", str(calib)]
        self.log_path = log_path
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.dir = Path(tempfile.mkdtemp(prefix="rrl-dep-", dir=tempfile.gettempdir()))
        bus = f"ipc://{self.dir}/rrl-deploy"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "firmware_bridge.bridge", *self.args, "--bus", bus],
                stdout=log,
                stderr=log,
                env=env,
            )
        return bus

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _open_writer(
    log_dir: Path, m: DeployManifest, builder: ObservationBuilder, cal_hash: str, cmd: Deploy, bus: str
) -> EpisodeWriter:
    from robot_rl.data.manifest import RunManifest
    from robot_rl.data.writer import EpisodeWriter
    from robot_rl.schema import FieldLayout, Source

    manifest = RunManifest(
        robot=m.robot,
        task=type(builder.task).__name__,
        control_dt_s=float(m.control_dt_s),
        obs_layout=FieldLayout(builder.obs_names, builder.obs_units),
        action_layout=FieldLayout(builder.action_names, builder.action_units),
        calib_hash=cal_hash,
        source=Source.REAL,
        description=f"robot-rl deploy {cmd.policy}",
        extra={
            "policy": str(cmd.policy),
            "model_run_id": str(m.run_id),
            "algo": str(m.algo),
            "normaliser_hash": str(m.normaliser_hash),
            "model_calib_hash": str(m.calib_hash),
            "bus": bus,
            "port": cmd.port or "",
        },
    )
    return EpisodeWriter(log_dir, manifest)


def _meta_factory(
    m: DeployManifest, builder: ObservationBuilder, cal_hash: str, policy: Path
) -> Callable[[int, float | None], EpisodeMeta]:
    from robot_rl.schema import EpisodeMeta, Source

    def make(index: int, command: float | None) -> EpisodeMeta:
        extra = {"policy": policy.name, "model_run_id": str(m.run_id), "episode_index": str(index)}
        if command is not None:
            extra["command_mps"] = f"{command:.4f}"
        return EpisodeMeta(
            source=Source.REAL,
            robot=m.robot,
            task=type(builder.task).__name__,
            policy_version=-1,
            control_dt_s=float(m.control_dt_s),
            calib_hash=cal_hash,
            extra=extra,
        )

    return make


# --- argparse from the dataclass (python -m robot_rl.deploy, without tyro) ----------------------------------


class _ArgparseMarkers:
    Positional = "positional"


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it in `cls`'s source (what tyro shows as --help)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for stmt, nxt in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def build_parser(cls: type, prog: str) -> argparse.ArgumentParser:
    """An argparse parser for a frozen command dataclass: `--kebab-case` flags, docstrings as help."""
    module = sys.modules[cls.__module__]
    hints = typing.get_type_hints(cls, {**vars(module), "_cli": _ArgparseMarkers()}, include_extras=True)
    docs = field_docs(cls)
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip())
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        positional = False
        if typing.get_origin(hint) is Annotated:
            hint, *meta = typing.get_args(hint)
            positional = _ArgparseMarkers.Positional in meta
        optional = False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional, hint = True, args[0]
        kw: dict[str, Any] = {"help": docs.get(f.name, "")}
        default = f.default if f.default is not dataclasses.MISSING else None
        if hint is bool:
            kw.update(action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(hint) is Literal:
            kw.update(choices=list(typing.get_args(hint)), default=default)
        elif typing.get_origin(hint) is tuple:
            kw.update(type=typing.get_args(hint)[0], nargs="*", default=default)
        else:
            kw.update(type=hint, default=default)
        if not positional and f.default is not dataclasses.MISSING:
            kw["help"] += f" (default: {'None' if optional and default is None else default})"
        if positional:
            kw.pop("default")
            parser.add_argument(f.name, **kw)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kw)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m robot_rl.deploy ARGS` (the same arguments as `robot-rl deploy`)."""
    ns = build_parser(Deploy, "python -m robot_rl.deploy").parse_args(argv)
    values = vars(ns)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return Deploy(**values).execute()
    except KeyboardInterrupt:
        print("python -m robot_rl.deploy: interrupted", file=sys.stderr)
        return 130
