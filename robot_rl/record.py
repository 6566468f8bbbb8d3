"""`robot-rl record`: run a policy on the (real or emulated) robot through the bridge and log the episodes.

    robot-rl record --robot quadruped --policy scripted --episodes 20 --out calib/run1 [--source real|demo]
    python -m robot_rl.record ...          (the same command, without the CLI dispatcher)

Each episode runs in `robot_rl.envs.real_robot.RealRobotEnv` and every step goes straight into the run folder
through `robot_rl.data.writer.EpisodeWriter` (journaled: a step survives `kill -9` once written). The action
recorded is `info["action_sent"]`, the action the bridge actually sent after its safety clamp, in the
normalised action scale. The manifest carries the robot, the task, the simulated env's layouts, the hash of
calib/<robot>.toml, control_dt_s and `extra` (policy, profile note).

Without `--bus` the command starts the firmware emulator and the bridge itself (`RealRig`) and stops them at
the end; with `--bus` it uses the bridge already running there (the real robot).

Stopping: SIGTERM or SIGINT ends the episode in progress as truncated at its last completed step, writes it,
and exits 0. A `kill -9` loses nothing either: the next writer (or `EpisodeReader`) recovers the journal,
the partial episode with its last step marked truncated.

Module imports stay light (tyro and the standard library): `robot-rl --help` imports this module.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Literal

import tyro

if TYPE_CHECKING:
    import numpy as np

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_RIG = 3

CALIB_DIR = Path(__file__).resolve().parents[1] / "calib"

Policy = Callable[["np.ndarray", int], "np.ndarray"]
"""(observation (34,) float32, step index in the episode) -> action (8,) in [-1, 1]."""


def scripted_trot(
    control_dt_s: float, *, freq_hz: float = 1.5, hip_amp: float = 0.35, knee_amp: float = 0.5
) -> Policy:
    """An open-loop trot for the quadruped (joint order FL, FR, RL, RR; hip then knee), of middling quality.

    Diagonal pairs (FL+RR, FR+RL) swing in antiphase: hip action `hip_amp sin(phase)`; the knee flexes
    (negative action, more bent) by `knee_amp` during the first half of each leg's cycle, lifting the foot
    while the hip swings forward. Open loop: it ignores the observation, so it neither tracks the command nor
    recovers from a stumble: behaviour data, not a controller.
    """
    import numpy as np

    leg_phase = np.array([0.0, math.pi, math.pi, 0.0])  # FL, FR, RL, RR

    def act(obs: np.ndarray, t: int) -> np.ndarray:
        phase = 2.0 * math.pi * freq_hz * t * control_dt_s + leg_phase
        a = np.empty(8, dtype=np.float32)
        a[0::2] = hip_amp * np.sin(phase)
        a[1::2] = -knee_amp * np.maximum(np.sin(phase + math.pi / 2.0), 0.0)
        return np.clip(a, -1.0, 1.0)

    return act


def checkpoint_policy(path: Path, seed: int, stochastic: bool = False) -> tuple[Policy, int]:
    """A `NumpyPolicy` from a `.npz` file (robot_rl.nets.numpy_policy.save_npz) and its version.

    Deterministic (``tanh(mean)``) by default; ``stochastic`` samples the policy's own Gaussian with a
    generator seeded from ``seed``, so a re-recording draws the same noise sequence.
    """
    import numpy as np

    from robot_rl.nets.numpy_policy import NumpyPolicy, load_npz

    policy = NumpyPolicy.from_weights(load_npz(path))
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray, t: int) -> np.ndarray:
        batch = obs[None, :].astype(np.float32)
        out: np.ndarray = policy.act(batch, rng=rng, deterministic=not stochastic)[0]
        return out

    return act, int(policy.policy_version)


@dataclass(frozen=True)
class Record:
    """Run a policy on the robot through the firmware bridge and record the episodes to a run folder."""

    out: Path
    """Run folder (calib/<run>): created, or appended to if its manifest matches."""
    robot: Literal["quadruped"] = "quadruped"
    """Robot name."""
    policy: str = "scripted"
    """`scripted` (open-loop trot) or the path of a `.npz` policy (robot_rl.nets.numpy_policy)."""
    episodes: int = 10
    """Number of episodes to record."""
    source: Literal["real", "demo"] = "real"
    """Source tag of the episodes (`demo` for operator or scripted demonstrations)."""
    bus: str | None = None
    """Bus base address of a running bridge; default: start the emulator and a bridge here."""
    max_episode_steps: int = 1000
    """Episode length limit (control steps)."""
    seed: int = 0
    """Seed of the per-episode command sampling, of --stochastic actions, and of the emulator started here."""
    stochastic: bool = False
    """Sample actions from the policy's Gaussian (exploration noise) instead of taking its mean."""
    action_gains: tuple[float, ...] = (1.0,)
    """Gain on the policy's action, one per episode, cycled (episode i uses gains[i % len]): the bring-up
    practice of first running a sim policy with a reduced action scale. The result is clipped to [-1, 1]."""
    realtime_factor: float = 1.0
    """Clock speed of the emulator started here (ignored with --bus)."""
    calib: Path | None = None
    """Calibration file hashed into the manifest (and used by the emulator/bridge started here);
    default calib/<robot>.toml."""
    reset_hold_s: float = 0.5
    """Default-pose hold after each reset (s)."""
    progress: bool = True
    """Show a progress bar (rich) on stderr."""

    def execute(self) -> int:
        """Record; 0 when all episodes are written or after a SIGTERM/SIGINT, 2 bad input, 3 rig failure."""
        if self.episodes < 1 or self.max_episode_steps < 1:
            print("error: --episodes and --max-episode-steps must be >= 1", file=sys.stderr)
            return EXIT_BAD_INPUT
        calib = self.calib if self.calib is not None else CALIB_DIR / f"{self.robot}.toml"
        if not calib.is_file():
            print(f"error: calibration file {calib} not found", file=sys.stderr)
            return EXIT_BAD_INPUT
        if not self.action_gains or any(not 0.0 < g <= 1.0 for g in self.action_gains):
            print(
                f"error: --action-gains: each gain must be in (0, 1], got {self.action_gains}",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        if self.policy != "scripted" and not Path(self.policy).is_file():
            print(f"error: --policy: 'scripted' or a .npz file; {self.policy!r} not found", file=sys.stderr)
            return EXIT_BAD_INPUT

        from robot_rl.envs.rig import RealRig, RigError

        if self.bus is not None:
            return self._record(self.bus, calib)
        try:
            with RealRig(
                self.robot, calib=calib, realtime_factor=self.realtime_factor, seed=self.seed
            ) as rig:
                return self._record(rig.bus, calib)
        except RigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_RIG

    def _record(self, bus: str, calib: Path) -> int:
        import numpy as np
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from firmware_bridge.calibration import calibration_hash, load_calibration
        from robot_rl.data.manifest import RunManifest
        from robot_rl.data.writer import EpisodeWriter
        from robot_rl.envs.real_robot import RealRobotEnv
        from robot_rl.schema import EpisodeMeta, FieldLayout, Source

        stop = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stop
            stop = True

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        calib_hash = calibration_hash(load_calibration(calib, expected_robot=self.robot))
        env = RealRobotEnv(
            self.robot, bus=bus, reset_hold_s=self.reset_hold_s, max_episode_steps=self.max_episode_steps
        )
        dt = env.control_dt_s
        if self.policy == "scripted":
            policy, version, policy_note = scripted_trot(dt), -1, "scripted:trot"
        else:
            policy, version = checkpoint_policy(Path(self.policy), self.seed, self.stochastic)
            policy_note = f"checkpoint:{Path(self.policy).name}" + (":stochastic" if self.stochastic else "")
        task = type(env.task).__name__
        where = f"bridge at {bus}" if self.bus else "emulator started by the recorder"
        manifest = RunManifest(
            robot=self.robot,
            task=task,
            control_dt_s=dt,
            obs_layout=FieldLayout(env.obs_names, env.obs_units),
            action_layout=FieldLayout(env.action_names, env.action_units),
            calib_hash=calib_hash,
            source=Source(self.source),
            description=f"robot-rl record --policy {self.policy} ({where})",
            extra={
                "policy": policy_note,
                "profile": "emulator default profile" if self.bus is None else "real robot (bus given)",
                "bus": bus,
                "max_episode_steps": str(self.max_episode_steps),
                "seed": str(self.seed),
                "action_gains": ",".join(f"{g:g}" for g in self.action_gains),
            },
        )
        last_t = 0

        def stamp() -> int:
            nonlocal last_t
            last_t = max(time.time_ns(), last_t + 1)  # the log format wants strictly increasing times
            return last_t

        progress = Progress(
            TextColumn("[bold]record[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            disable=not self.progress,
            transient=False,
        )
        try:
            with EpisodeWriter(self.out, manifest) as writer, progress:
                bar = progress.add_task("episodes", total=self.episodes, note="")
                for i in range(self.episodes):
                    if stop:
                        break
                    obs, _ = env.reset(seed=self.seed + i)
                    gain = self.action_gains[i % len(self.action_gains)]
                    meta = EpisodeMeta(
                        source=Source(self.source),
                        robot=self.robot,
                        task=task,
                        policy_version=version,
                        control_dt_s=dt,
                        calib_hash=calib_hash,
                        seed=self.seed + i,
                        extra={
                            "policy": policy_note,
                            "command_mps": f"{float(obs[9]):.4f}",
                            "action_gain": f"{gain:g}",
                        },
                    )
                    writer.begin_episode(meta, obs, stamp())
                    ret, t, done = 0.0, 0, False
                    while not done:
                        if stop:
                            # SIGTERM: the episode is cut here; end_episode marks its last step truncated.
                            break
                        action = np.clip(gain * policy(obs, t), -1.0, 1.0)
                        obs, reward, terminated, truncated, info = env.step(action)
                        ret += reward
                        t += 1
                        writer.add_step(
                            np.asarray(info["action_sent"], dtype=np.float32),
                            reward,
                            obs,
                            stamp(),
                            terminated=terminated,
                            truncated=truncated,
                        )
                        done = terminated or truncated
                    if writer.in_episode:
                        writer.end_episode()
                    how = "stopped" if not done else ("fell" if terminated else "done")
                    # One plain line per finished episode on stdout: scripts and tests follow progress here.
                    print(
                        f"episode {i} {meta.episode_id} steps={t} return={ret:.3f} {how} gain={gain:g}",
                        flush=True,
                    )
                    progress.update(bar, advance=1, note=f"last: {t} steps, return {ret:.1f}")
        finally:
            env.close()
            for s, h in previous.items():
                signal.signal(s, h)
        return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m robot_rl.record ARGS` (the same arguments as `robot-rl record`)."""
    cmd = tyro.cli(Record, args=argv, prog="python -m robot_rl.record", description=Record.__doc__)
    return cmd.execute()


if __name__ == "__main__":
    sys.exit(main())
