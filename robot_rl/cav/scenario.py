"""The overtaking scenario family (ALGORITHMS.md section 5.2 [recon]) as a vectorised numpy engine.

A straight two-lane road, lane 0 the travel lane, lane 1 the passing lane, all traffic in one direction.
Vehicles are points on the lane centre line with a length of 5 m; x is the centre, m.

    column 0        the CAV under test, lane 0, x = 0, v ~ U(28, 32) m/s
    column 1        the lead vehicle, lane 0, bumper-to-bumper gap U(25, 50) m ahead, 3-8 m/s slower;
                    nominally cruising (a_nom = 0)
    columns 2..     background vehicles (BV) in lane 1: the first U(10, 40) m (bumper to bumper) behind the
                    CAV, each further one U(10, 40) m behind the previous; v ~ U(28, 34) m/s, which is also
                    its desired speed. Nominal acceleration: IDM (headway 1.5 s) behind the nearest vehicle
                    ahead in lane 1 (the CAV once it has changed lanes in front of it), else free-flow IDM

A test is ``n_decisions`` decisions. At each decision every background vehicle draws an acceleration from
{-4, ..., 2} m/s^2 (robot_rl.cav.naturalistic, or an importance-sampling proposal for one of them) and holds
it for H = 3 s, simulated in 1 s sub-steps. In each sub-step the CAV under test observes the state, may move
to the other lane (instantly, at the start of the sub-step) and picks an acceleration, clipped to [-4, 2]
m/s^2 here, in one place, whatever the driver (IDM or an ONNX policy). Speeds never go below 0 (a vehicle
that stops within a sub-step stays stopped). Positions are integrated exactly for piecewise-constant
accelerations.

Crash: the CAV and another vehicle in the same lane with |Δx| < 5 m at the start of a sub-step (after the
CAV's lane change) or at its end, or Δx changing sign during it (one drove through the other). Crashes between
background vehicles are not the CAV's and are not counted. A crashed test ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from robot_rl.cav.idm import Idm
from robot_rl.cav.naturalistic import ACTIONS_MPS2, Naturalistic
from robot_rl.cav.types import BoolArray, FloatArray, LaneArray

CAV, LEAD = 0, 1
"""Columns of the CAV under test and of the lead vehicle; passing-lane vehicles are columns 2, 3, ..."""
TRAVEL_LANE, PASSING_LANE = 0, 1
NO_GAP_M = np.inf
"""Gap reported when nobody is there."""
ACCEL_LIMITS_MPS2 = (-4.0, 2.0)
"""The CAV's acceleration is clipped to this range by the scenario (the one clamp)."""


@dataclass(frozen=True)
class ScenarioConfig:
    """One member of the overtaking family (module docstring); defaults are ALGORITHMS.md 5.2's."""

    n_decisions: int = 1
    """T: decisions per test (1: the single-decision benchmark; 2-4: the multi-decision family)."""
    hold_s: float = 3.0
    """H: how long a background vehicle holds the acceleration it picked, s."""
    dt_s: float = 1.0
    """Sub-step: the CAV acts and crashes are checked once per sub-step, s."""
    n_bv: int = 1
    """Background vehicles in the passing lane (the family parameter "further background vehicles")."""
    length_m: float = 5.0
    ego_speed_mps: tuple[float, float] = (28.0, 32.0)
    lead_gap_m: tuple[float, float] = (25.0, 50.0)
    """Bumper-to-bumper gap from the CAV to the lead vehicle."""
    lead_slower_mps: tuple[float, float] = (3.0, 8.0)
    bv_behind_m: tuple[float, float] = (10.0, 40.0)
    """Bumper-to-bumper gap from a passing-lane vehicle to the one in front of it at the start (CAV or BV)."""
    bv_speed_mps: tuple[float, float] = (28.0, 34.0)
    bv_idm: Idm = field(default_factory=lambda: Idm(headway_s=1.5))
    naturalistic: Naturalistic = field(default_factory=Naturalistic)

    def __post_init__(self) -> None:
        if self.n_decisions < 1:
            raise ValueError(f"n_decisions: expected >= 1, got {self.n_decisions}")
        if self.n_bv < 1:
            raise ValueError(f"n_bv: expected >= 1 (the passing-lane vehicle), got {self.n_bv}")
        if not (self.dt_s > 0.0 and self.hold_s >= self.dt_s):
            raise ValueError(f"hold_s, dt_s: expected hold_s >= dt_s > 0, got {self.hold_s}, {self.dt_s}")
        steps = self.hold_s / self.dt_s
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(f"hold_s: expected a multiple of dt_s ({self.dt_s}), got {self.hold_s}")
        for name in ("ego_speed_mps", "lead_gap_m", "lead_slower_mps", "bv_behind_m", "bv_speed_mps"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name}: expected 0 <= low <= high, got {(lo, hi)}")

    @property
    def n_vehicles(self) -> int:
        return 2 + self.n_bv

    @property
    def n_background(self) -> int:
        """Background vehicles (candidates for the principal other vehicle): lead + passing-lane vehicles."""
        return 1 + self.n_bv

    @property
    def substeps_per_decision(self) -> int:
        return round(self.hold_s / self.dt_s)

    @property
    def duration_s(self) -> float:
        return self.n_decisions * self.hold_s


SINGLE = ScenarioConfig(n_decisions=1)
MULTI = ScenarioConfig(n_decisions=2)
SCENARIOS: dict[str, ScenarioConfig] = {"single": SINGLE, "multi": MULTI}


@dataclass
class TrafficState:
    """N tests' vehicles: arrays (N, V), column 0 the CAV (module docstring). Mutable: the engine steps it."""

    x_m: FloatArray
    v_mps: FloatArray
    lane: LaneArray
    v_des_mps: FloatArray
    """Desired speed of each background vehicle (free-flow IDM); the CAV's column is unused."""

    @property
    def n(self) -> int:
        return int(self.x_m.shape[0])

    def take(self, rows: np.ndarray) -> TrafficState:
        """The tests ``rows`` (indices or a boolean mask), copied."""
        return TrafficState(self.x_m[rows], self.v_mps[rows], self.lane[rows], self.v_des_mps[rows])

    def repeat(self, k: int) -> TrafficState:
        """Each test repeated k times in a row (row i -> rows i*k .. i*k+k-1)."""
        return TrafficState(
            np.repeat(self.x_m, k, 0),
            np.repeat(self.v_mps, k, 0),
            np.repeat(self.lane, k, 0),
            np.repeat(self.v_des_mps, k, 0),
        )

    def copy(self) -> TrafficState:
        return TrafficState(self.x_m.copy(), self.v_mps.copy(), self.lane.copy(), self.v_des_mps.copy())


class CavModel(Protocol):
    """The vehicle under test, or a surrogate of it: acts once per sub-step on every test of a batch."""

    @property
    def name(self) -> str: ...

    def act(self, state: TrafficState) -> tuple[FloatArray, LaneArray]:
        """(acceleration (N,) m/s^2 before the scenario's clip, lane to be in during this sub-step (N,))."""
        ...


def sample_initial(cfg: ScenarioConfig, n: int, rng: np.random.Generator) -> TrafficState:
    """n initial states drawn from the scenario's distribution (module docstring)."""
    V, L = cfg.n_vehicles, cfg.length_m
    nb = cfg.n_bv
    u = rng.random((n, 3 + 2 * nb))

    def uni(bounds: tuple[float, float], col: int | slice) -> FloatArray:
        lo, hi = bounds
        out: FloatArray = lo + (hi - lo) * u[:, col]
        return out

    x = np.zeros((n, V))
    v = np.empty((n, V))
    v[:, CAV] = uni(cfg.ego_speed_mps, 0)
    x[:, LEAD] = L + uni(cfg.lead_gap_m, 1)
    v[:, LEAD] = v[:, CAV] - uni(cfg.lead_slower_mps, 2)
    x[:, 2:] = -np.cumsum(L + uni(cfg.bv_behind_m, slice(3, 3 + nb)), axis=1)
    v[:, 2:] = uni(cfg.bv_speed_mps, slice(3 + nb, 3 + 2 * nb))
    lane = np.zeros((n, V), np.int8)
    lane[:, 2:] = PASSING_LANE
    return TrafficState(x, v, lane, v.copy())


def nearest(
    state: TrafficState, i: int, lane: LaneArray | int, length_m: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """For vehicle column ``i`` and ``lane`` (N,) (or one lane for all): (front gap, front speed, rear gap,
    rear speed), each (N,). Gaps are bumper to bumper, m (inf and the own speed when nobody is there); a
    vehicle level with it (Δx = 0) counts as in front."""
    x, v = state.x_m, state.v_mps
    dx = x - x[:, i : i + 1]
    lane_col = np.asarray(lane).reshape(-1, 1) if np.ndim(lane) else lane
    there = state.lane == lane_col
    there[:, i] = False
    ahead = there & (dx >= 0.0)
    behind = there & (dx < 0.0)
    front_d = np.where(ahead, dx, np.inf)
    rear_d = np.where(behind, -dx, np.inf)
    fi = front_d.argmin(1)
    ri = rear_d.argmin(1)
    rows = np.arange(x.shape[0])
    front_gap = front_d[rows, fi] - length_m
    rear_gap = rear_d[rows, ri] - length_m
    own_v = v[:, i]
    front_v = np.where(np.isfinite(front_gap), v[rows, fi], own_v)
    rear_v = np.where(np.isfinite(rear_gap), v[rows, ri], own_v)
    return front_gap, front_v, rear_gap, rear_v


def nominal_accel(cfg: ScenarioConfig, state: TrafficState) -> FloatArray:
    """a_nom (N, B) of the background vehicles (columns 1..V-1), clipped to [-4, 2] m/s^2: 0 for the lead,
    IDM for the passing-lane vehicles (module docstring)."""
    out = np.zeros((state.n, cfg.n_background))
    for j in range(2, cfg.n_vehicles):
        gap, v_ahead, _, _ = nearest(state, j, PASSING_LANE, cfg.length_m)
        out[:, j - 1] = cfg.bv_idm.accel(state.v_mps[:, j], state.v_des_mps[:, j], gap, v_ahead)
    clipped: FloatArray = np.clip(out, *ACCEL_LIMITS_MPS2)
    return clipped


def _integrate(x: FloatArray, v: FloatArray, a: FloatArray, dt: float) -> None:
    """Exact constant-acceleration step with a stop at v = 0, in place."""
    t_move = np.where(a < 0.0, np.minimum(dt, v / np.maximum(-a, 1e-12)), dt)
    x += v * t_move + 0.5 * a * t_move * t_move
    np.maximum(v + a * dt, 0.0, out=v)


def _cav_crash(x: FloatArray, lane: LaneArray, dx_before: FloatArray, length_m: float) -> BoolArray:
    dx_after = x[:, 1:] - x[:, :1]
    same = lane[:, 1:] == lane[:, :1]
    hit = (np.abs(dx_after) < length_m) | (np.abs(dx_before) < length_m) | ((dx_before > 0) != (dx_after > 0))
    out: BoolArray = (same & hit).any(1)
    return out


def advance(
    cfg: ScenarioConfig,
    state: TrafficState,
    bg_accel_mps2: FloatArray,
    cav: CavModel,
    n_substeps: int,
    trace: list[TrafficState] | None = None,
) -> BoolArray:
    """Simulate ``n_substeps`` sub-steps of every test in place, background vehicles holding ``bg_accel_mps2``
    (N, B); the CAV acting each sub-step. Returns crashed (N,): the CAV crashed in one of them (the state of a
    crashed test keeps moving and means nothing afterwards). ``trace`` gets a copy of the state after each
    sub-step (for pictures)."""
    crashed = np.zeros(state.n, bool)
    dt, L = cfg.dt_s, cfg.length_m
    accel = np.empty_like(state.x_m)
    accel[:, 1:] = bg_accel_mps2
    for _ in range(n_substeps):
        a_cav, lane_cav = cav.act(state)
        state.lane[:, CAV] = lane_cav
        accel[:, CAV] = np.clip(a_cav, *ACCEL_LIMITS_MPS2)
        dx_before = state.x_m[:, 1:] - state.x_m[:, :1]
        _integrate(state.x_m, state.v_mps, accel, dt)
        crashed |= _cav_crash(state.x_m, state.lane, dx_before, L)
        if trace is not None:
            trace.append(state.copy())
    return crashed


@dataclass
class Replay:
    """One test replayed sub-step by sub-step: ``frames[k]`` is the state after k sub-steps (frames[0] the
    initial state), ``accel_bg[t]`` the background accelerations (B,) of decision t."""

    cfg: ScenarioConfig
    frames: list[TrafficState]
    accel_bg_mps2: FloatArray
    crash_substep: int | None
    """Sub-step (1-based, the frame index) in which the CAV crashed; None if it did not."""

    @property
    def times_s(self) -> FloatArray:
        out: FloatArray = np.arange(len(self.frames), dtype=np.float64) * self.cfg.dt_s
        return out


def replay(cfg: ScenarioConfig, initial: TrafficState, action_idx: np.ndarray, cav: CavModel) -> Replay:
    """Replay one test (``initial`` one row, ``action_idx`` (T, B) indices into ACTIONS_MPS2) until the end
    of the test or the CAV's crash."""
    if initial.n != 1:
        raise ValueError(f"replay: expected one initial state, got {initial.n}")
    state = initial.copy()
    frames = [state.copy()]
    accel = ACTIONS_MPS2[np.asarray(action_idx, np.int64)].reshape(cfg.n_decisions, cfg.n_background)
    for t in range(cfg.n_decisions):
        for _ in range(cfg.substeps_per_decision):
            crashed = advance(cfg, state, accel[t][None], cav, 1)
            frames.append(state.copy())
            if crashed[0]:
                return Replay(cfg, frames, accel, len(frames) - 1)
    return Replay(cfg, frames, accel, None)
