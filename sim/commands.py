"""CLI commands of the simulator package. Module-level imports stay light: `robot-rl --help` imports this."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

RobotName = Literal["quadruped", "manipulator"]
BackendName = Literal["mujoco", "dmcontrol", "pybullet"]


@dataclass(frozen=True)
class SimGap:
    """Measure the dynamics gap between a profiled "real" simulator and a nominal predictor."""

    robot: RobotName = "quadruped"
    """Robot to simulate."""
    profile: str = "example_gap"
    """Gap profile applied to the reference: a name in sim/profiles/ or a path to a TOML file."""
    backend: BackendName = "mujoco"
    """Reference backend; the profile is applied to it."""
    vs_backend: BackendName | None = None
    """Prediction backend, run nominal; defaults to --backend (compare engines by setting it)."""
    sequences: int = 8
    """Number of action sequences replayed in both simulators."""
    horizon: int = 50
    """Open-loop horizon in control steps (50 Hz)."""
    seed: int = 0
    """Seed of the start states and action sequences."""
    out_png: Path | None = None
    """Where to write the error-vs-horizon plot (PNG); none when unset."""

    def __post_init__(self) -> None:
        if self.sequences < 1:
            raise ValueError(f"sequences: expected >= 1, got {self.sequences}")
        if self.horizon < 1:
            raise ValueError(f"horizon: expected >= 1, got {self.horizon}")

    def execute(self) -> int:
        """Print the gap table, write the PNG if asked; returns the process exit code."""
        from rich.console import Console

        from sim.gap import measure_gap

        report = measure_gap(
            self.robot,
            self.profile,
            backend=self.backend,
            vs_backend=self.vs_backend,
            n_sequences=self.sequences,
            horizon=self.horizon,
            seed=self.seed,
        )
        console = Console()
        console.print(report.to_table())
        if self.out_png is not None:
            console.print(f"wrote {report.plot(self.out_png)}")
        return 0


@dataclass(frozen=True)
class SimWorker:
    """Run N simulated environments in one process: act with the learner's policy, stream rollouts to it."""

    connect: str
    """Base bus address of the run (ipc:///DIR/rrl-RUN, inproc://rrl-RUN or tcp://HOST:PORT)."""
    robot: RobotName = "quadruped"
    """Robot to simulate."""
    backend: BackendName = "mujoco"
    """Physics backend."""
    num_envs: int = 8
    """Environments stepped in this process (one policy call per vector step acts for all of them)."""
    profile: str = "nominal"
    """Dynamics profile: a name in sim/profiles/ or a path to a TOML file."""
    worker_id: str = ""
    """Sender name on the bus (heartbeat/<worker-id>); default worker-<pid>."""
    index: int | None = None
    """Worker number: the chunks' worker_id and the control address control-<index>. Default: the
    number that ends --worker-id (sim-3 -> 3), else the pid."""
    seed: int = 0
    """Seed of the environments and of the action noise."""
    chunk_steps: int = 64
    """Vector steps per rollout chunk (a chunk holds chunk_steps x num_envs transitions). 64 x 8 = 512
    rows (~170 KB for the quadruped): the ~0.1 ms cost of a message is spread over 512 transitions
    while the learner still sees data within ~0.1 s of it being produced."""
    deterministic: bool = False
    """Act with the mean action tanh(mu) instead of sampling."""
    max_steps: int | None = None
    """Stop after this many environment steps (rounded up to whole vector steps); none = run until stopped."""
    max_episode_steps: int | None = None
    """Override the task's episode length (control steps); none = the task's default."""
    weights_timeout_s: float = 60.0
    """How long to wait for the first policy weights before giving up (exit code 3)."""
    send_timeout_s: float = 5.0
    """How long a rollout send may block when the learner is not keeping up before the chunk is
    dropped (counted dropped/backpressure); the worker does not step while it waits."""
    sndhwm: int = 4
    """Rollout chunks queued towards the learner before sends block (PUSH high-water mark)."""

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs: expected >= 1, got {self.num_envs}")
        if self.chunk_steps < 1:
            raise ValueError(f"chunk_steps: expected >= 1, got {self.chunk_steps}")
        if self.index is not None and self.index < 1:
            raise ValueError(f"index: expected >= 1 (0 is the learner's control address), got {self.index}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: expected >= 1, got {self.max_steps}")
        if self.weights_timeout_s <= 0 or self.send_timeout_s <= 0:
            raise ValueError("weights_timeout_s and send_timeout_s must be > 0")
        if self.sndhwm < 1:
            raise ValueError(f"sndhwm: expected >= 1, got {self.sndhwm}")

    def execute(self) -> int:
        """Run until SIGTERM/SIGINT, a stop request or max_steps; returns the process exit code."""
        from sim.worker import run_worker

        return run_worker(self)
