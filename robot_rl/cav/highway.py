"""highway-env compatibility: replay an engine test in highway-env's overtaking environment (``two-way-v0``).

The road of ``two-way-v0`` has two lanes in our direction, ("a", "b", 1) (lower, y = 4 m: our travel lane 0)
and ("a", "b", 0) (y = 0: our passing lane 1; in that environment it is shared with oncoming traffic, which
the replay leaves out). The replay removes the environment's own vehicles and places the test's vehicles at
their initial positions (shifted by ``X0_M`` along the road) and speeds. Background vehicles hold the test's
accelerations for each decision (3 s) and keep their lane with highway-env's steering controller. The CAV
under test is either

* ``engine``: our driver (robot_rl.cav.drivers: IdmCav or an ONNX policy) deciding once per second (as in the
  engine) on the state highway-env reports; its lane change is then executed by highway-env's steering
  controller (it takes about 2 s there, it is instantaneous in the engine);
* ``highway-idm``: highway-env's own ``IDMVehicle`` (IDM + MOBIL with its default parameters, desired speed 33
  m/s), for comparison.

Physics run at 15 Hz (highway-env's default), crashes are highway-env's rectangle overlaps (5 m x 2 m
vehicles). Frames can be rendered (``render=True``) for a visual check and written to a GIF. Needs the
``cav`` extra (``pip install highway-env``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.cav.naturalistic import ACTIONS_MPS2
from robot_rl.cav.scenario import PASSING_LANE, TRAVEL_LANE, CavModel, ScenarioConfig, TrafficState
from robot_rl.cav.types import FloatArray

X0_M = 150.0
"""Where the engine's x = 0 lies on highway-env's 800 m road."""
SIM_HZ = 15
HW_LANE = {TRAVEL_LANE: ("a", "b", 1), PASSING_LANE: ("a", "b", 0)}
CAV_MODES = ("engine", "highway-idm")


@dataclass
class HighwayReplay:
    crashed: bool
    crash_time_s: float | None
    x_m: FloatArray
    """(steps + 1, V) engine-frame positions once per second."""
    lane: np.ndarray
    """(steps + 1, V) lanes (0 travel, 1 passing) once per second (by the vehicle's nearest lane)."""
    frames: list[np.ndarray] = field(default_factory=list)
    """RGB frames (H, W, 3) uint8, ``frames_per_s`` per simulated second, when rendered."""
    frames_per_s: int = 0


def _make_env(render: bool) -> Any:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers two-way-v0)

    config = {
        "simulation_frequency": SIM_HZ,
        "policy_frequency": 1,
        "screen_width": 900,
        "screen_height": 120,
        "scaling": 5.0,
        "centering_position": [0.35, 0.5],
        "offscreen_rendering": True,
    }
    env = gym.make("two-way-v0", render_mode="rgb_array" if render else None, config=config)
    env.reset(seed=0)
    if render:
        env.render()  # creates the viewer; under SDL's dummy video driver it starts disabled
        viewer: Any = env.unwrapped.viewer  # type: ignore[attr-defined]
        viewer.enabled = True
    return env


def _held_vehicle_class() -> type:
    from highway_env.vehicle.controller import ControlledVehicle
    from highway_env.vehicle.kinematics import Vehicle

    class HeldAccelVehicle(ControlledVehicle):  # type: ignore[misc]
        """Holds ``held_accel`` (m/s^2), steers to its target lane, never reverses."""

        held_accel = 0.0
        speed: float

        def act(self, action: Any = None) -> None:
            self.follow_road()
            steer = float(
                np.clip(
                    self.steering_control(self.target_lane_index),
                    -self.MAX_STEERING_ANGLE,
                    self.MAX_STEERING_ANGLE,
                )
            )
            speed = float(self.speed)
            accel = self.held_accel if (speed > 0.0 or self.held_accel > 0.0) else 0.0
            Vehicle.act(self, {"steering": steer, "acceleration": accel})

        def step(self, dt: float) -> None:
            super().step(dt)
            self.speed = max(float(self.speed), 0.0)

    return HeldAccelVehicle


def _engine_state(vehicles: list[Any], ego_lane: int, v_des: FloatArray) -> TrafficState:
    x = np.array([[v.lane.local_coordinates(v.position)[0] - X0_M for v in vehicles]])
    speed = np.array([[max(v.speed, 0.0) for v in vehicles]])
    lane = np.array([[_our_lane(v) for v in vehicles]], np.int8)
    lane[0, 0] = ego_lane
    return TrafficState(x, speed, lane, v_des[None].copy())


def _our_lane(vehicle: Any) -> int:
    return PASSING_LANE if vehicle.lane_index[2] == HW_LANE[PASSING_LANE][2] else TRAVEL_LANE


def replay_in_highway_env(
    cfg: ScenarioConfig,
    initial: TrafficState,
    action_idx: np.ndarray,
    cav: CavModel | None,
    *,
    cav_mode: str = "engine",
    render: bool = False,
    frames_per_s: int = 5,
    env: Any = None,
) -> HighwayReplay:
    """Replay one engine test (``initial`` one row, ``action_idx`` (T, B)) in highway-env (module docstring).
    ``cav`` drives the CAV in ``engine`` mode; ``env`` reuses an environment from :func:`make_replay_env`."""
    if cav_mode not in CAV_MODES:
        raise ValueError(f"cav_mode: expected one of {CAV_MODES}, got {cav_mode!r}")
    if cav_mode == "engine" and cav is None:
        raise ValueError("cav_mode engine: a CAV model is needed")
    if initial.n != 1:
        raise ValueError(f"replay_in_highway_env: expected one initial state, got {initial.n}")
    from highway_env.vehicle.behavior import IDMVehicle

    env = env if env is not None else _make_env(render)
    base = env.unwrapped
    road = base.road
    road.vehicles = []
    held = _held_vehicle_class()
    net = road.network
    vehicles: list[Any] = []
    for col in range(cfg.n_vehicles):
        lane_id = HW_LANE[int(initial.lane[0, col])]
        lane = net.get_lane(lane_id)
        pos = lane.position(X0_M + float(initial.x_m[0, col]), 0.0)
        speed = float(initial.v_mps[0, col])
        if col == 0 and cav_mode == "highway-idm":
            v = IDMVehicle(road, pos, heading=lane.heading_at(0.0), speed=speed, target_speed=33.0)
        else:
            v = held(road, pos, heading=lane.heading_at(0.0), speed=speed, target_lane_index=lane_id)
        v.color = (50, 200, 0) if col == 0 else ((100, 100, 255) if col == 1 else (200, 100, 0))
        road.vehicles.append(v)
        vehicles.append(v)
    ego = vehicles[0]
    base.vehicle = ego
    base.controlled_vehicles = [ego]
    accel = ACTIONS_MPS2[np.asarray(action_idx, np.int64)].reshape(cfg.n_decisions, cfg.n_background)
    ego_lane = int(initial.lane[0, 0])
    xs, lanes, frames = [], [], []
    crash_time: float | None = None
    per_decision = cfg.substeps_per_decision
    every = max(1, SIM_HZ // frames_per_s)

    def snapshot() -> None:
        s = _engine_state(vehicles, ego_lane, initial.v_des_mps[0])
        s.lane[0, 0] = _our_lane(ego)
        xs.append(s.x_m[0])
        lanes.append(s.lane[0])

    snapshot()
    if render:
        frames.append(env.render())
    for t in range(cfg.n_decisions):
        for col in range(1, cfg.n_vehicles):
            vehicles[col].held_accel = float(accel[t, col - 1])
        for k in range(per_decision):
            if cav_mode == "engine" and cav is not None:
                a_cav, lane_cav = cav.act(_engine_state(vehicles, ego_lane, initial.v_des_mps[0]))
                ego.held_accel = float(np.clip(a_cav[0], -4.0, 2.0))
                ego_lane = int(lane_cav[0])
                ego.target_lane_index = HW_LANE[ego_lane]
            for frame in range(round(SIM_HZ * cfg.dt_s)):
                road.act()
                road.step(1.0 / SIM_HZ)
                if render and (frame + 1) % every == 0:
                    frames.append(env.render())
                if ego.crashed and crash_time is None:
                    crash_time = (t * per_decision + k) * cfg.dt_s + (frame + 1) / SIM_HZ
            snapshot()
            if crash_time is not None:
                break
        if crash_time is not None:
            break
    return HighwayReplay(
        crash_time is not None,
        crash_time,
        np.array(xs),
        np.array(lanes),
        frames,
        frames_per_s if render else 0,
    )


def make_replay_env(render: bool = False) -> Any:
    """A ``two-way-v0`` environment prepared for :func:`replay_in_highway_env` (reuse it across replays)."""
    return _make_env(render)
