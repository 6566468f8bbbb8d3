"""CLI command of the learner process. Module-level imports stay light: `robot-rl --help` imports this."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sim.commands import BackendName, RobotName


@dataclass(frozen=True)
class Learner:
    """Learner process: publish the policy, collect sim rollouts into the replay (and a log run)."""

    bind: str
    """Base bus address of the run (ipc:///DIR/rrl-RUN, inproc://rrl-RUN or tcp://HOST:PORT)."""
    robot: RobotName = "quadruped"
    """Robot the rollouts must come from (chunks from another robot are rejected)."""
    backend: BackendName = "mujoco"
    """Backend used to read the robot's observation/action layout (and recorded nowhere else)."""
    obs_dim: int | None = None
    """Observation width; default: inferred from the sim env's layout."""
    act_dim: int | None = None
    """Action width; default: inferred from the sim env's layout."""
    policy: Path | None = None
    """Policy .npz (robot_rl.nets.numpy_policy.save_npz) published as version 1; default: a random
    256-256 MLP from --seed."""
    reload: bool = False
    """Watch --policy and publish it as the next version whenever its content changes."""
    out: Path | None = None
    """Run folder to which finished sim episodes are appended (created if new); none = not logged."""
    seed: int = 0
    """Seed of the random initial policy."""
    max_seconds: float | None = None
    """Stop after this many seconds; none = run until SIGTERM/SIGINT or a stop request."""
    replay_capacity: int = 1_000_000
    """Transitions kept per source in the replay."""
    rcvhwm: int = 8
    """Rollout chunks queued per worker before the worker's sends block (back-pressure)."""
    republish_s: float = 1.0
    """Period of re-publishing the current weights (same version) so that late joiners get them."""
    learner_id: str = "learner"
    """Sender name on the bus."""

    def __post_init__(self) -> None:
        if self.reload and self.policy is None:
            raise ValueError("reload: needs --policy PATH.npz to watch")
        if self.replay_capacity < 1:
            raise ValueError(f"replay_capacity: expected >= 1, got {self.replay_capacity}")
        if self.rcvhwm < 1:
            raise ValueError(f"rcvhwm: expected >= 1, got {self.rcvhwm}")
        if self.republish_s <= 0:
            raise ValueError(f"republish_s: expected > 0, got {self.republish_s}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds: expected > 0, got {self.max_seconds}")
        for name in ("obs_dim", "act_dim"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: expected >= 1, got {value}")

    def execute(self) -> int:
        """Run until stopped; returns the process exit code."""
        from robot_rl.runners.learner_process import run_learner

        return run_learner(self)
