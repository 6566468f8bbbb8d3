"""Monte Carlo evaluation of a smoothed policy: N clean episodes, batched over environments.

Environments (``--env``):

- ``vec:CartPole-v0`` / ``vec:CartPole-v1``: :class:`CartPoleVec`, Gymnasium's CartPole dynamics (same
  constants, Euler integration, +-2.4 m / +-12 deg termination, reward 1 on every step including the last)
  written as numpy over all N episodes at once, capped at 200 / 500 steps. This is the certification workhorse
  of ALGORITHMS.md 4.4 (10,000 episodes in about a second).
- ``robot_rl/Quadruped-v0``, ``robot_rl/Manipulator-v0``: the simulated robots (``--sim-backend``,
  ``--sim-profile``), one :class:`sim.env.RobotEnv` per episode of a batch, stepped in a loop with the policy
  batched over the running ones; episode ``i`` starts as in every robot-rl evaluation
  (:func:`robot_rl.runners.evaluate.evaluation_options`: ``reset(seed=seed + i)``, commands on a Weyl
  sequence).
- ``robot_rl/RealQuadruped-v0``: the emulated real robot (firmware emulator + bridge,
  :class:`robot_rl.envs.rig.RealRig`, started here) through :class:`robot_rl.envs.real_robot.RealRobotEnv`:
  one episode at a time in real time (50 Hz), so keep N small.
- any other registered Gymnasium id (``CartPole-v1``, ``Pendulum-v1``, ...): one ``gymnasium.make`` env per
  episode of a batch, stepped in a loop.

A batch is run until every episode in it has ended (terminated or truncated); an ended episode is no longer
stepped and its policy state no longer updated. Returns are undiscounted sums of the env's rewards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from robot_rl.certify.smoothing import SmoothedPolicy

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

VEC_PREFIX = "vec:"
VEC_CARTPOLE_CAPS = {"CartPole-v0": 200, "CartPole-v1": 500}
GYM_CARTPOLE_IDS = ("CartPole-v0", "CartPole-v1")
REAL_IDS = ("robot_rl/RealQuadruped-v0",)


class EnvInputError(ValueError):
    """An --env that cannot be made (the message lists what can)."""


class BatchEnv(Protocol):
    """Up to ``num_envs`` episodes at once. ``reset(seed, first, count)`` starts episodes ``first ..
    first + count - 1`` of a run (rows 0 .. count - 1); ``step(actions, rows)`` steps the given rows only and
    returns ``(obs (len(rows), obs_dim) float32, reward (len(rows),) float64, done (len(rows),) bool)``."""

    num_envs: int

    def reset(self, seed: int, first: int, count: int) -> F32: ...

    def step(self, actions: np.ndarray, rows: I64) -> tuple[F32, F64, npt.NDArray[np.bool_]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EnvSpec:
    """What the certificate needs to know about an environment, and how to make a batch of it."""

    env_id: str
    obs_dim: int
    n_actions: int | None
    """Discrete action space size (None: continuous)."""
    act_dim: int | None
    """Continuous action size (None: discrete)."""
    max_episode_steps: int
    make: Callable[[int], BatchEnv]
    """n -> a batch of n environments."""
    return_range: tuple[float, float] | None = None
    """Hard bounds of the return, when the env guarantees them (CartPole: 0 .. cap)."""
    integer_returns: bool = False
    survival: bool = False
    """Reward 1 per step until termination: the return's level i is decided by the first i + 1 steps."""
    robot: str | None = None
    realtime: bool = False
    """Runs on the (emulated) real robot in real time: one episode at a time."""
    kwargs: dict[str, Any] | None = None
    """What the env was made with (reported)."""

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.env_id,
            "obs_dim": self.obs_dim,
            "action": {"discrete": self.n_actions}
            if self.n_actions is not None
            else {"continuous": self.act_dim},
            "max_episode_steps": self.max_episode_steps,
            "return_range": None if self.return_range is None else list(self.return_range),
            "integer_returns": self.integer_returns,
            "survival_return": self.survival,
            "robot": self.robot,
            "kwargs": self.kwargs or {},
        }


# --------------------------------------------------------------------------------------------------
# CartPole, vectorised.


class CartPoleVec:
    """Gymnasium's CartPole (classic_control/cartpole.py, Barto, Sutton and Anderson 1983) for N episodes as
    numpy arrays. State (x, x_dot, theta, theta_dot) float64, observation its float32 cast; initial state
    U(-0.05, 0.05)^4 drawn for a whole batch from ``default_rng([seed, first])``."""

    GRAVITY = 9.8
    MASSCART = 1.0
    MASSPOLE = 0.1
    TOTAL_MASS = MASSPOLE + MASSCART
    LENGTH = 0.5  # half the pole's length
    POLEMASS_LENGTH = MASSPOLE * LENGTH
    FORCE_MAG = 10.0
    TAU = 0.02
    THETA_THRESHOLD_RAD = 12 * 2 * math.pi / 360
    X_THRESHOLD = 2.4

    def __init__(self, num_envs: int, max_episode_steps: int = 200) -> None:
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.state = np.zeros((num_envs, 4))
        self.t = np.zeros(num_envs, np.int64)

    def reset(self, seed: int, first: int, count: int) -> F32:
        if count > self.num_envs:
            raise ValueError(f"count {count} > num_envs {self.num_envs}")
        rng = np.random.default_rng([seed, first])
        self.state[:count] = rng.uniform(-0.05, 0.05, size=(count, 4))
        self.t[:count] = 0
        return self.state[:count].astype(np.float32)

    def step(self, actions: np.ndarray, rows: I64) -> tuple[F32, F64, npt.NDArray[np.bool_]]:
        s = self.state[rows]
        x, x_dot, theta, theta_dot = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
        force = np.where(np.asarray(actions) == 1, self.FORCE_MAG, -self.FORCE_MAG)
        cos, sin = np.cos(theta), np.sin(theta)
        temp = (force + self.POLEMASS_LENGTH * theta_dot * theta_dot * sin) / self.TOTAL_MASS
        theta_acc = (self.GRAVITY * sin - cos * temp) / (
            self.LENGTH * (4.0 / 3.0 - self.MASSPOLE * cos * cos / self.TOTAL_MASS)
        )
        x_acc = temp - self.POLEMASS_LENGTH * theta_acc * cos / self.TOTAL_MASS
        new = np.empty_like(s)
        new[:, 0] = x + self.TAU * x_dot
        new[:, 1] = x_dot + self.TAU * x_acc
        new[:, 2] = theta + self.TAU * theta_dot
        new[:, 3] = theta_dot + self.TAU * theta_acc
        self.state[rows] = new
        t = self.t[rows] + 1
        self.t[rows] = t
        terminated = (np.abs(new[:, 0]) > self.X_THRESHOLD) | (np.abs(new[:, 2]) > self.THETA_THRESHOLD_RAD)
        done = terminated | (t >= self.max_episode_steps)
        return new.astype(np.float32), np.ones(rows.size), done

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# Gymnasium environments, one per episode of a batch.


class GymEnvList:
    """``num_envs`` Gymnasium environments stepped one by one (only the running ones).

    ``options(seed, first, count)`` gives the reset options of episodes ``first .. first + count - 1``.
    """

    def __init__(
        self,
        make_one: Callable[[], Any],
        num_envs: int,
        *,
        discrete: bool,
        options: Callable[[int, int, int], Sequence[dict[str, Any] | None]] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.num_envs = num_envs
        self.envs = [make_one() for _ in range(num_envs)]
        self.discrete = discrete
        self.options = options
        self.on_close = on_close

    def reset(self, seed: int, first: int, count: int) -> F32:
        opts = self.options(seed, first, count) if self.options is not None else [None] * count
        obs = [self.envs[i].reset(seed=seed + first + i, options=opts[i])[0] for i in range(count)]
        return np.asarray(obs, dtype=np.float32).reshape(count, -1)

    def step(self, actions: np.ndarray, rows: I64) -> tuple[F32, F64, npt.NDArray[np.bool_]]:
        obs: list[np.ndarray] = []
        rewards = np.zeros(rows.size)
        done = np.zeros(rows.size, dtype=bool)
        for j, i in enumerate(rows.tolist()):
            a = int(actions[j]) if self.discrete else actions[j]
            o, r, terminated, truncated, _ = self.envs[i].step(a)
            obs.append(o)
            rewards[j] = float(r)
            done[j] = bool(terminated or truncated)
        return np.asarray(obs, dtype=np.float32).reshape(rows.size, -1), rewards, done

    def close(self) -> None:
        for env in self.envs:
            env.close()
        if self.on_close is not None:
            self.on_close()


def _robot_options(robot: str) -> Callable[[int, int, int], list[dict[str, Any] | None]]:
    from robot_rl.runners.evaluate import evaluation_options

    def options(seed: int, first: int, count: int) -> list[dict[str, Any] | None]:
        return evaluation_options(robot, seed, first + count)[first:]

    return options


def _real_batch(robot: str, max_episode_steps: int, seed: int) -> Callable[[int], BatchEnv]:
    def make(n: int) -> BatchEnv:
        from robot_rl.envs.real_robot import RealRobotEnv
        from robot_rl.envs.rig import RealRig

        if n != 1:
            raise ValueError("the real robot runs one episode at a time")
        rig = RealRig(robot, seed=seed)
        rig.start()
        try:
            env = GymEnvList(
                lambda: RealRobotEnv(robot, bus=rig.bus, max_episode_steps=max_episode_steps),
                1,
                discrete=False,
                options=_robot_options(robot),
                on_close=rig.stop,
            )
        except BaseException:
            rig.stop()
            raise
        return env

    return make


def _robot_spec(
    env_id: str, robot: str, max_episode_steps: int | None, backend: str, profile: str
) -> EnvSpec:
    """A simulated robot: unwrapped :class:`sim.env.RobotEnv` instances (no Gymnasium wrappers on the hot
    path); bad backend or profile -> EnvInputError listing the valid ones."""
    from sim.env import RobotEnv

    kwargs: dict[str, Any] = {"backend": backend, "profile": profile}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        probe = RobotEnv(robot=robot, **kwargs)
    except (ValueError, FileNotFoundError) as err:
        raise EnvInputError(f"env: {env_id}: {err}") from None
    obs_dim, act_dim, cap = len(probe.obs_names), len(probe.action_names), probe.max_episode_steps
    probe.close()
    return EnvSpec(
        env_id=env_id,
        obs_dim=int(obs_dim),
        n_actions=None,
        act_dim=int(act_dim),
        max_episode_steps=int(cap),
        make=lambda n: GymEnvList(
            lambda: RobotEnv(robot=robot, **kwargs), n, discrete=False, options=_robot_options(robot)
        ),
        robot=robot,
        kwargs={**kwargs, "max_episode_steps": int(cap)},
    )


def resolve_env(
    env_id: str,
    *,
    max_episode_steps: int | None = None,
    backend: str = "mujoco",
    profile: str = "nominal",
    seed: int = 0,
) -> EnvSpec:
    """The :class:`EnvSpec` of ``env_id`` (module docstring); EnvInputError naming what is valid."""
    if max_episode_steps is not None and max_episode_steps < 1:
        raise EnvInputError(f"max_episode_steps: expected >= 1, got {max_episode_steps}")
    if env_id.startswith(VEC_PREFIX):
        name = env_id[len(VEC_PREFIX) :]
        if name not in VEC_CARTPOLE_CAPS:
            valid = ", ".join(VEC_PREFIX + k for k in VEC_CARTPOLE_CAPS)
            raise EnvInputError(f"env: unknown vectorised env {env_id!r}; known: {valid}")
        cap = max_episode_steps or VEC_CARTPOLE_CAPS[name]
        return EnvSpec(
            env_id=env_id,
            obs_dim=4,
            n_actions=2,
            act_dim=None,
            max_episode_steps=cap,
            make=lambda n: CartPoleVec(n, cap),
            return_range=(0.0, float(cap)),
            integer_returns=True,
            survival=True,
            kwargs={"max_episode_steps": cap},
        )

    import gymnasium as gym

    import sim

    if env_id in REAL_IDS:
        from sim.robots import get_robot
        from sim.tasks import default_task

        task = default_task(get_robot("quadruped"))
        cap = max_episode_steps or task.max_episode_steps
        return EnvSpec(
            env_id=env_id,
            obs_dim=len(task.obs_layout),
            n_actions=None,
            act_dim=len(get_robot("quadruped").joints),
            max_episode_steps=cap,
            make=_real_batch("quadruped", cap, seed),
            robot="quadruped",
            realtime=True,
            kwargs={"max_episode_steps": cap, "rig": "firmware emulator + bridge (RealRig)"},
        )
    robot_ids = {v: k for k, v in sim.ENV_IDS.items()}
    if env_id in robot_ids:
        return _robot_spec(env_id, robot_ids[env_id], max_episode_steps, backend, profile)
    if env_id not in gym.registry:
        robots = ", ".join(sorted(sim.ENV_IDS.values()))
        raise EnvInputError(
            f"env: {env_id!r} is not a registered Gymnasium id; try {robots}, {', '.join(REAL_IDS)}, "
            f"vec:CartPole-v0, or any Gymnasium id (CartPole-v1, Pendulum-v1, ...)"
        )
    kwargs: dict[str, Any] = {}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        probe = gym.make(env_id, **kwargs)
    except Exception as err:  # gymnasium raises many types (missing extras, bad kwargs)
        raise EnvInputError(
            f"env: {env_id} cannot be made with {kwargs}: {type(err).__name__}: {err}"
        ) from None
    try:
        obs_space, act_space = probe.observation_space, probe.action_space
        spec_cap = probe.spec.max_episode_steps if probe.spec is not None else None
        cap = int(max_episode_steps or spec_cap or 0)
    finally:
        probe.close()
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise EnvInputError(f"env: {env_id} has observation space {obs_space}; certify needs a flat Box")
    if cap < 1:
        raise EnvInputError(f"env: {env_id} has no episode cap; pass --max-episode-steps")
    if isinstance(act_space, gym.spaces.Discrete):
        n_actions, act_dim = int(act_space.n), None
    elif isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        n_actions, act_dim = None, int(act_space.shape[0])
    else:
        raise EnvInputError(
            f"env: {env_id} has action space {act_space}; certify needs Discrete or a flat Box"
        )
    cartpole = env_id in GYM_CARTPOLE_IDS
    make_kwargs = dict(kwargs)
    discrete = n_actions is not None
    return EnvSpec(
        env_id=env_id,
        obs_dim=int(obs_space.shape[0]),
        n_actions=n_actions,
        act_dim=act_dim,
        max_episode_steps=cap,
        make=lambda n: GymEnvList(lambda: gym.make(env_id, **make_kwargs), n, discrete=discrete),
        return_range=(0.0, float(cap)) if cartpole else None,
        integer_returns=cartpole,
        survival=cartpole,
        kwargs=make_kwargs,
    )


def check_fit(
    spec: EnvSpec, policy_obs_dim: int, frames: int, n_actions: int | None, act_dim: int | None
) -> None:
    """EnvInputError when the policy's observation or action sizes do not fit the environment's."""
    if policy_obs_dim != spec.obs_dim:
        extra = ""
        if policy_obs_dim * frames % spec.obs_dim == 0 and policy_obs_dim * frames != spec.obs_dim:
            extra = f" (pass --frames {policy_obs_dim * frames // spec.obs_dim} if it stacks frames)"
        raise EnvInputError(
            f"env: the policy takes {policy_obs_dim * frames} observations ({frames} frame(s) of "
            f"{policy_obs_dim}), {spec.env_id} gives {spec.obs_dim} per step{extra}"
        )
    if (
        (n_actions is None) != (spec.n_actions is None)
        or n_actions != spec.n_actions
        or act_dim != spec.act_dim
    ):

        def what(n: int | None, a: int | None) -> str:
            return f"{n} discrete actions" if n is not None else f"{a} continuous actions"

        raise EnvInputError(
            f"env: the policy gives {what(n_actions, act_dim)}, {spec.env_id} takes "
            f"{what(spec.n_actions, spec.act_dim)}"
        )


# --------------------------------------------------------------------------------------------------
# The Monte Carlo loop.


@dataclass(frozen=True)
class EpisodeResult:
    """N episodes of one policy: returns (N,) float64, lengths (N,) int64, wall seconds."""

    returns: F64
    lengths: I64
    seconds: float

    @property
    def episodes(self) -> int:
        return int(self.returns.size)

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std_err(self) -> float:
        n = self.returns.size
        return float(self.returns.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def noise_rng(seed: int) -> np.random.Generator:
    """The smoothing noise's stream for ``seed`` (independent of the env's streams)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5300]))


def run_batch(env: BatchEnv, policy: SmoothedPolicy, seed: int, first: int, count: int) -> tuple[F64, I64]:
    """Episodes ``first .. first + count - 1`` of a run, on rows 0 .. count - 1 of ``env``: (returns,
    lengths)."""
    obs = env.reset(seed, first, count)
    policy.reset(count)
    returns = np.zeros(count)
    lengths = np.zeros(count, np.int64)
    rows: I64 = np.arange(count, dtype=np.int64)
    while rows.size:
        actions = policy.act(obs, rows)
        obs, reward, done = env.step(actions, rows)
        returns[rows] += reward
        lengths[rows] += 1
        if done.any():
            keep = ~done
            rows, obs = rows[keep], obs[keep]
    return returns, lengths


def evaluate_smoothed(
    spec: EnvSpec,
    policy: SmoothedPolicy,
    episodes: int,
    *,
    seed: int = 0,
    batch_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> EpisodeResult:
    """``episodes`` clean episodes of ``policy`` on ``spec``, ``batch_size`` at a time (1 on a real robot)."""
    if episodes < 1:
        raise ValueError(f"episodes: expected >= 1, got {episodes}")
    n = 1 if spec.realtime else max(1, min(batch_size, episodes))
    t0 = time.perf_counter()
    env = spec.make(n)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, np.int64)
    try:
        for first in range(0, episodes, n):
            count = min(n, episodes - first)
            r, ln = run_batch(env, policy, seed, first, count)
            returns[first : first + count] = r
            lengths[first : first + count] = ln
            if progress is not None:
                progress(first + count)
    finally:
        env.close()
    return EpisodeResult(returns, lengths, time.perf_counter() - t0)
