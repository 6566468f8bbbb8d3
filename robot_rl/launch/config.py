"""Launch topologies: the TOML file `robot-rl launch` reads, as frozen dataclasses, and the process plan.

A topology names the processes of one run; the launcher builds every command line itself from the typed
fields, so a file never carries a shell string to split or a class name to import. File layout (every key
is listed; anything else is rejected with the list of valid keys)::

    [run]
    name = "local_sim"           # run id, 1-64 of A-Z a-z 0-9 _ . - ; names the bus addresses
    transport = "ipc"            # "ipc" (one host) or "tcp"
    run_dir = "runs/x"           # optional; default runs/<name>-<YYYYmmdd-HHMMSS>
    heartbeat_timeout_s = 5.0    # a process silent this long after a heartbeat is "stale"
    stop_grace_s = 5.0           # SIGTERM -> SIGKILL grace per stop phase
    host = "127.0.0.1"           # tcp only: interface of the bus addresses
    base_port = 5550             # tcp only: first port (layout: topics.default_endpoints)
    keys_dir = "keys"            # tcp only: CURVE keys (robot-rl keys gen); required off loopback

    [learner]                    # optional, at most one
    robot = "quadruped"          # "quadruped" | "manipulator"
    backend = "mujoco"           # where the learner reads the robot's obs/action layout
    policy = "p.npz"             # optional: initial weights
    log_episodes = false         # true: append finished sim episodes to a log-store folder ...
    out = "runs/x/episodes"      # ... this one; default <run_dir>/episodes
    seed = 0
    extra_args = []              # appended verbatim to the command line
    # + the restart keys below

    [[sim_workers]]              # any number of tables; each expands to `replicas` processes
    name = "sim"                 # prefix: processes sim-0, sim-1, ...
    replicas = 2
    robot = "quadruped"
    backend = "mujoco"           # "mujoco" | "dmcontrol" | "pybullet"
    num_envs = 4
    profile = "example_gap"      # optional: gap profile name or path
    seed = 0                     # replica r gets seed + r
    extra_args = []
    # + the restart keys below

    [[process]]                  # escape hatch for processes without typed tables yet
    name = "bridge"
    argv = ["python", "-m", "firmware_bridge.bridge", "--port", "/dev/ttyUSB0"]   # used verbatim
    heartbeat_sender = "bridge"  # optional; the Envelope.sender of its heartbeats (default: name)
    # + the restart keys below

    # restart keys, in [learner], [[sim_workers]] and [[process]]:
    restart = "on-failure"       # "on-failure" | "always" | "never"
    max_restarts = 10            # restarts in a row (each run shorter than backoff_reset_s), then give up
    backoff_initial_s = 1.0      # first delay; doubles per restart in a row ...
    backoff_max_s = 32.0         # ... up to this
    backoff_reset_s = 60.0       # a run at least this long resets the delay and the count in a row
    restart_on_stale = false     # kill and restart a process whose heartbeats stopped

Relative paths (run_dir, policy, out, keys_dir) are relative to the directory `robot-rl launch` runs in,
like every other path given to the CLI. Every child also gets its bus and run in environment variables
(:data:`ENV_BUS_BASE`, :data:`ENV_TELEMETRY`, :data:`ENV_RUN_DIR`, :data:`ENV_PROCESS_NAME`) so that a
``[[process]]`` command can find the bus without string templates in its argv.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from sim.commands import BackendName, RobotName

RestartWhen = Literal["on-failure", "always", "never"]
LaunchTransport = Literal["ipc", "tcp"]

ENV_BUS_BASE = "RRL_BUS_BASE"
"""Environment variable holding the run's bus base address (``ipc:///dir/rrl-<name>`` or ``tcp://h:p``)."""
ENV_TELEMETRY = "RRL_TELEMETRY"
"""Environment variable holding the telemetry endpoint children connect their heartbeat PUB to."""
ENV_RUN_DIR = "RRL_RUN_DIR"
"""Environment variable holding the absolute run folder."""
ENV_PROCESS_NAME = "RRL_PROCESS_NAME"
"""Environment variable holding the process's name in the topology (its log is logs/<name>.log)."""

IPC_PATH_MAX = 100
"""Longest unix-socket path accepted for a bus address (the kernel limit is 107 bytes plus NUL)."""
_IPC_SUFFIX_MAX = len("-control-999")
"""Longest suffix endpoints_from_base appends to the ipc base."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TopologyError(ValueError):
    """A topology file that cannot be used; the message names the file, the table and the key."""


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """When and how fast a process that exited is started again.

    Restarts back off exponentially: the k-th restart in a row waits
    ``min(backoff_initial_s * 2**(k-1), backoff_max_s)``. A run that lasted at least ``backoff_reset_s``
    ends the streak (the next crash waits ``backoff_initial_s`` again). After ``max_restarts`` restarts in
    a row the launcher gives up on the process.
    """

    when: RestartWhen = "on-failure"
    """"on-failure": after a non-zero exit or a signal; "always": after any exit; "never"."""
    max_restarts: int = 10
    """Restarts in a row (each run shorter than backoff_reset_s) before the launcher gives up."""
    backoff_initial_s: float = 1.0
    """Delay before the first restart in a row, seconds."""
    backoff_max_s: float = 32.0
    """Cap of the doubling delay, seconds."""
    backoff_reset_s: float = 60.0
    """A run at least this long (seconds) resets the delay and the count in a row."""
    restart_on_stale: bool = False
    """Kill (SIGKILL the process group) and restart a process whose heartbeats stopped."""

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts: expected >= 0, got {self.max_restarts}")
        if self.backoff_initial_s < 0:
            raise ValueError(f"backoff_initial_s: expected >= 0, got {self.backoff_initial_s}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s: expected >= backoff_initial_s ({self.backoff_initial_s}), "
                f"got {self.backoff_max_s}"
            )
        if self.backoff_reset_s <= 0:
            raise ValueError(f"backoff_reset_s: expected > 0, got {self.backoff_reset_s}")


RESTART_KEYS: Mapping[str, str] = {
    "restart": "when",
    "max_restarts": "max_restarts",
    "backoff_initial_s": "backoff_initial_s",
    "backoff_max_s": "backoff_max_s",
    "backoff_reset_s": "backoff_reset_s",
    "restart_on_stale": "restart_on_stale",
}
"""TOML key -> RestartPolicy field; these keys sit flat in every process table."""


def _check_name(value: str, key: str) -> None:
    if not _NAME.match(value):
        raise ValueError(f"{key}: expected 1-64 characters from A-Z a-z 0-9 _ . -, got {value!r}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The ``[run]`` table: run id, transport, run folder and timeouts."""

    name: str
    """Run id; names the bus addresses (``rrl-<name>-...``) and the default run folder."""
    transport: LaunchTransport = "ipc"
    """"ipc": unix sockets on this host; "tcp": host:port addresses (loopback unless keys_dir)."""
    run_dir: Path | None = None
    """Run folder (logs/, launch.json); default runs/<name>-<YYYYmmdd-HHMMSS>."""
    heartbeat_timeout_s: float = 5.0
    """A process whose heartbeats stop this long after one was seen is reported stale."""
    stop_grace_s: float = 5.0
    """How long each stop phase waits after SIGTERM before SIGKILL."""
    host: str = "127.0.0.1"
    """tcp only: the interface of every bus address."""
    base_port: int = 5550
    """tcp only: the first port (weights +0, rollout +1, telemetry +2, ...)."""
    keys_dir: Path | None = None
    """tcp only: CURVE key folder (robot-rl keys gen); required when host is not loopback."""

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        if self.heartbeat_timeout_s <= 0:
            raise ValueError(f"heartbeat_timeout_s: expected > 0, got {self.heartbeat_timeout_s}")
        if self.stop_grace_s < 0:
            raise ValueError(f"stop_grace_s: expected >= 0, got {self.stop_grace_s}")
        if not 1024 <= self.base_port <= 65535 - 64:
            raise ValueError(f"base_port: expected 1024..65471, got {self.base_port}")
        if self.transport == "tcp" and self.keys_dir is None:
            from robot_rl.bus.security import is_loopback_endpoint

            if not is_loopback_endpoint(f"tcp://{self.host}:{self.base_port}"):
                raise ValueError(
                    f"host: {self.host!r} accepts other hosts; set keys_dir (robot-rl keys gen) "
                    "or use 127.0.0.1"
                )


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """The ``[learner]`` table: one learner process (``robot_rl.runners.learner_process``)."""

    robot: RobotName
    """Robot the learner trains for (chunks from another robot are rejected)."""
    backend: BackendName = "mujoco"
    """Backend the learner reads the robot's observation/action layout from."""
    policy: Path | None = None
    """Initial policy weights (.npz, robot_rl.nets.numpy_policy); none: a random MLP from seed."""
    log_episodes: bool = False
    """Append finished sim episodes to a log-store run folder (out); about 1 MB/s with two workers."""
    out: Path | None = None
    """Episode log folder; default <run_dir>/episodes. Only with log_episodes."""
    seed: int = 0
    """Learner seed."""
    extra_args: tuple[str, ...] = ()
    """Arguments appended verbatim to the learner's command line."""
    restart: RestartPolicy = RestartPolicy()
    """Restart policy (flat keys restart, max_restarts, backoff_*_s, restart_on_stale in the table)."""

    def __post_init__(self) -> None:
        if self.out is not None and not self.log_episodes:
            raise ValueError("out: set, but log_episodes is false (set log_episodes = true)")


@dataclasses.dataclass(frozen=True)
class SimWorkersConfig:
    """One ``[[sim_workers]]`` table: ``replicas`` identical sim worker processes (``sim.worker``)."""

    robot: RobotName
    """Robot to simulate."""
    backend: BackendName = "mujoco"
    """Simulator backend."""
    name: str = "sim"
    """Process name prefix: <name>-0, <name>-1, ..."""
    replicas: int = 1
    """Number of worker processes."""
    num_envs: int = 1
    """Vectorised environments per worker."""
    profile: str | None = None
    """Gap profile (name in sim/profiles/ or a path); none: the worker's default (nominal)."""
    seed: int = 0
    """Seed of replica 0; replica r gets seed + r, so no two workers of a table roll out alike."""
    extra_args: tuple[str, ...] = ()
    """Arguments appended verbatim to each worker's command line."""
    restart: RestartPolicy = RestartPolicy()
    """Restart policy (flat keys in the table)."""

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        if self.replicas < 1:
            raise ValueError(f"replicas: expected >= 1, got {self.replicas}")
        if self.num_envs < 1:
            raise ValueError(f"num_envs: expected >= 1, got {self.num_envs}")


@dataclasses.dataclass(frozen=True)
class ProcessConfig:
    """One ``[[process]]`` table: any command, its argv used verbatim (bridge, emulator, tools)."""

    name: str
    """Process name (log file logs/<name>.log, status table row)."""
    argv: tuple[str, ...]
    """Command line, used verbatim (no shell, no substitution; the bus is in RRL_* variables)."""
    heartbeat_sender: str | None = None
    """Envelope.sender of the process's heartbeats; default: name."""
    restart: RestartPolicy = RestartPolicy()
    """Restart policy (flat keys in the table)."""

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        if not self.argv or not self.argv[0]:
            raise ValueError("argv: expected a non-empty list of strings, got an empty one")


@dataclasses.dataclass(frozen=True)
class Topology:
    """A whole topology file."""

    run: RunConfig
    learner: LearnerConfig | None = None
    sim_workers: tuple[SimWorkersConfig, ...] = ()
    process: tuple[ProcessConfig, ...] = ()
    source: Path | None = None
    """The file it was read from (for messages)."""


# ------------------------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return "list of strings"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path string"}.get(
        tp, str(tp)
    )


def _convert(value: Any, tp: Any) -> tuple[bool, Any]:
    """``(ok, converted)`` for a TOML value against a field type (the subset topology fields use)."""
    origin = get_origin(tp)
    if origin is Literal:
        return (isinstance(value, str) and value in get_args(tp)), value
    if origin in (Union, types.UnionType):
        # Optional[X]: TOML has no null, so an absent key is the only way to say None.
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        return _convert(value, inner)
    if origin is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return ok, tuple(value) if ok else value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if tp is Path:
        return (isinstance(value, str) and value != ""), Path(value) if isinstance(value, str) else value
    raise TypeError(f"unsupported field type {tp!r}")  # a bug in this module, not in the file


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    """An instance of dataclass ``cls`` from TOML table ``raw``; TopologyError names ``where`` and the key."""
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: expected a table, got {type(raw).__name__} {raw!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("restart", "source")}
    has_restart = "restart" in hints and hints["restart"] is RestartPolicy
    valid = [*fields, *(RESTART_KEYS if has_restart else ())]
    kwargs: dict[str, Any] = {}
    restart_kwargs: dict[str, Any] = {}
    restart_hints = get_type_hints(RestartPolicy)
    for key, value in raw.items():
        if has_restart and key in RESTART_KEYS:
            target, tp, bucket = RESTART_KEYS[key], restart_hints[RESTART_KEYS[key]], restart_kwargs
        elif key in fields:
            target, tp, bucket = key, hints[key], kwargs
        else:
            raise TopologyError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        ok, converted = _convert(value, tp)
        if not ok:
            raise TopologyError(
                f"{where}.{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}"
            )
        bucket[target] = converted
    missing = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and name not in kwargs
    ]
    if missing:
        raise TopologyError(
            f"{where}: missing required key(s) {', '.join(missing)}; valid keys: {', '.join(valid)}"
        )
    try:
        if has_restart:
            kwargs["restart"] = RestartPolicy(**restart_kwargs)
        return cls(**kwargs)
    except ValueError as err:
        # __post_init__ messages start with the field name; restart's field "when" is the key "restart".
        msg = str(err)
        if msg.startswith("when:"):
            msg = "restart:" + msg[len("when:") :]
        raise TopologyError(f"{where}.{msg}") from None


_TOP_LEVEL = ("run", "learner", "sim_workers", "process")


def parse_topology(raw: Mapping[str, Any], source: Path | str = "<topology>") -> Topology:
    """A :class:`Topology` from parsed TOML; every error names ``source``, the table and the key."""
    src = str(source)
    for key in raw:
        if key not in _TOP_LEVEL:
            raise TopologyError(f"{src}: unknown table {key!r}; valid tables: {', '.join(_TOP_LEVEL)}")
    if "run" not in raw:
        raise TopologyError(f'{src}: missing table [run] (with at least name = "...")')
    run = _build(RunConfig, raw["run"], f"{src}: [run]")
    learner = _build(LearnerConfig, raw["learner"], f"{src}: [learner]") if "learner" in raw else None
    workers: list[SimWorkersConfig] = []
    processes: list[ProcessConfig] = []
    for key, cls, out in (("sim_workers", SimWorkersConfig, workers), ("process", ProcessConfig, processes)):
        tables = raw.get(key, [])
        if not isinstance(tables, list):
            raise TopologyError(
                f"{src}: {key}: expected an array of tables [[{key}]], got a single [{key}] table"
            )
        for i, table in enumerate(tables):
            out.append(_build(cls, table, f"{src}: [[{key}]] #{i + 1}"))
    topology = Topology(run, learner, tuple(workers), tuple(processes), Path(src))
    names = [name for name, _ in _process_names(topology)]
    if not names:
        raise TopologyError(f"{src}: no processes: add [learner], [[sim_workers]] or [[process]]")
    seen: dict[str, str] = {}
    for name, table in _process_names(topology):
        if name in seen:
            raise TopologyError(f"{src}: {table}: process name {name!r} is also used by {seen[name]}")
        seen[name] = table
    # Heartbeats are credited by sender id, so two processes must not share one.
    senders = {name: name for name, _ in _process_names(topology)}
    for proc in topology.process:
        if proc.heartbeat_sender is not None:
            senders[proc.name] = proc.heartbeat_sender
    owner: dict[str, str] = {}
    for name, sender in senders.items():
        if sender in owner:
            raise TopologyError(
                f"{src}: heartbeat_sender {sender!r} of process {name!r} "
                f"is also the sender id of {owner[sender]!r}"
            )
        owner[sender] = name
    return topology


def load_topology(path: Path | str) -> Topology:
    """Read and validate a topology file (layout in the module docstring).

    Raises FileNotFoundError if it does not exist and :class:`TopologyError` (a ValueError) naming the
    file, the table and the key for anything wrong inside it.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"topology file {path} does not exist") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TopologyError(f"{path}: not valid TOML: {err}") from None
    return parse_topology(raw, path)


def _process_names(topology: Topology) -> list[tuple[str, str]]:
    """(process name, table that defines it) for every process, in start order."""
    out: list[tuple[str, str]] = []
    if topology.learner is not None:
        out.append((LEARNER_NAME, "[learner]"))
    for i, p in enumerate(topology.process):
        out.append((p.name, f"[[process]] #{i + 1}"))
    for i, w in enumerate(topology.sim_workers):
        out += [(f"{w.name}-{r}", f"[[sim_workers]] #{i + 1}") for r in range(w.replicas)]
    return out


# ---------------------------------------------------------------------------------------- the plan


StopPhase = Literal[0, 1]
"""0: stopped first (sim workers and [[process]] entries); 1: stopped after them (the learner)."""


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """One process the supervisor runs: its exact command line and how to watch and restart it."""

    name: str
    """Unique name: status row, log file logs/<name>.log, key in launch.json."""
    argv: tuple[str, ...]
    """Command line (no shell)."""
    heartbeat_sender: str
    """The Envelope.sender its heartbeats carry."""
    restart: RestartPolicy = RestartPolicy()
    stop_phase: StopPhase = 0
    """The learner stops last so it receives the workers' final chunks and they never lose their peer."""


LEARNER_NAME = "learner"
"""Process name and bus sender id of the learner."""


def plan_processes(topology: Topology, *, bus_base: str, run_dir: Path) -> tuple[ProcessSpec, ...]:
    """The processes of ``topology`` in start order: learner, [[process]] entries, sim workers.

    Sim worker ``<name>-<r>`` runs with ``--worker-id <name>-<r>`` (its bus sender id, so its heartbeats
    map to its row) and ``--index k``, k = 1, 2, ... across all [[sim_workers]] tables in file order: the
    chunks' ``worker_id`` and the control address ``control(k)`` (0 is the learner's), unique per run.
    The learner starts first because it binds the weights and rollout links; ZeroMQ would queue a
    worker's connect anyway, but the first weights reach the workers sooner.
    """
    py = sys.executable
    specs: list[ProcessSpec] = []
    if (ln := topology.learner) is not None:
        argv = [py, "-m", "robot_rl.runners.learner_process", "--bind", bus_base]
        argv += ["--robot", ln.robot, "--backend", ln.backend, "--learner-id", LEARNER_NAME]
        if ln.log_episodes:
            argv += ["--out", str(ln.out if ln.out is not None else run_dir / "episodes")]
        if ln.policy is not None:
            argv += ["--policy", str(ln.policy)]
        argv += ["--seed", str(ln.seed), *ln.extra_args]
        specs.append(ProcessSpec(LEARNER_NAME, tuple(argv), LEARNER_NAME, ln.restart, stop_phase=1))
    for p in topology.process:
        sender = p.heartbeat_sender if p.heartbeat_sender is not None else p.name
        specs.append(ProcessSpec(p.name, p.argv, sender, p.restart, stop_phase=0))
    index = 0
    for w in topology.sim_workers:
        for r in range(w.replicas):
            index += 1
            name = f"{w.name}-{r}"
            argv = [py, "-m", "sim.worker", "--connect", bus_base, "--robot", w.robot, "--backend", w.backend]
            argv += ["--num-envs", str(w.num_envs), "--worker-id", name, "--index", str(index)]
            argv += ["--seed", str(w.seed + r)]
            if w.profile is not None:
                argv += ["--profile", w.profile]
            argv += list(w.extra_args)
            specs.append(ProcessSpec(name, tuple(argv), name, w.restart))
    return tuple(specs)


def bus_base_for(run: RunConfig, ipc_dir: Path) -> str:
    """The bus base address of ``run``: ``ipc://<ipc_dir>/rrl-<name>`` or ``tcp://<host>:<base_port>``.

    ipc_dir must be absolute and short enough that the longest link address fits a unix socket
    (ValueError otherwise; :func:`choose_ipc_dir` picks one).
    """
    if run.transport == "tcp":
        host = f"[{run.host}]" if ":" in run.host and not run.host.startswith("[") else run.host
        return f"tcp://{host}:{run.base_port}"
    path = f"{ipc_dir}/rrl-{run.name}"
    if not ipc_dir.is_absolute():
        raise ValueError(f"ipc dir {ipc_dir} must be absolute")
    if len(path.encode()) + _IPC_SUFFIX_MAX > IPC_PATH_MAX:
        raise ValueError(f"ipc path {path!r} is too long for a unix socket (max {IPC_PATH_MAX} bytes)")
    return f"ipc://{path}"


def ipc_dir_fits(run: RunConfig, ipc_dir: Path) -> bool:
    """True if the run's ipc sockets fit under ``ipc_dir`` (unix socket paths are about 100 bytes max)."""
    return len(f"{ipc_dir.absolute()}/rrl-{run.name}".encode()) + _IPC_SUFFIX_MAX <= IPC_PATH_MAX
