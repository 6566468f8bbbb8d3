"""Drivers of the vehicle under test: the built-in IDM + lane-change model, and ONNX policies.

``IdmCav`` (ALGORITHMS.md 5.2): IDM (v0 33 m/s, a_max 2, b 3, s0 2 m, headway T_h) behind the nearest vehicle
ahead in its lane; from the travel lane it moves once to the passing lane and stays there. Two lane-change
rules:

* ``gap`` (default, the specification's): change when the vehicle ahead is slower (v_ahead < v - 1 m/s) and
  the passing lane's gaps are acceptable: the nearest vehicle behind there at a gap >= G + 2 s * max(0,
  v_behind - v), and the nearest vehicle ahead there (if any) at a gap >= G + 2 s * max(0, v - v_ahead). The
  second condition is ours [choice]: the specification speaks of the BV behind only; without it the CAV would
  never change lanes once the BV has passed it, or would change right behind it.
* ``mobil`` (Kesting, Treiber, Helbing 2007; D2RL's CAV is IDM + MOBIL): change when the new follower would
  not have to brake harder than ``b_safe`` and the CAV's own IDM acceleration in the passing lane exceeds its
  current one by more than ``gain_threshold`` (plus ``politeness`` times the new follower's acceleration
  change). The new follower is predicted with the CAV's own IDM parameters (it cannot know the follower's).

The CAV under test is IdmCav(T_h = 1.0 s, G = 6 m). Surrogate models (robot_rl.cav.surrogate) are IdmCavs
with other (T_h, G).

``OnnxCav``: a policy exported by robot-rl (robot_rl.export) whose manifest's observation names are exactly
``CAV_OBS_NAMES`` and whose two outputs are ``CAV_ACTION_NAMES`` (acceleration m/s^2, lane command: > 0 the
passing lane, else the travel lane). Both layouts are checked when the file is opened. The file format is
robot-rl's deployment format unchanged (graph of robot_rl.export.graph, manifest version 1 in the metadata):
:func:`cav_manifest` fills the manifest's robot-specific fields for a CAV (the "joints" are the two outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.cav.idm import Idm
from robot_rl.cav.scenario import CAV, PASSING_LANE, TRAVEL_LANE, TrafficState, nearest
from robot_rl.cav.types import FloatArray, LaneArray
from robot_rl.export.manifest import DeployManifest

CAV_OBS_NAMES: tuple[str, ...] = (
    "ego_speed_mps",
    "ego_lane",
    "own_lane_front_gap_m",
    "own_lane_front_rel_speed_mps",
    "other_lane_front_gap_m",
    "other_lane_front_rel_speed_mps",
    "other_lane_rear_gap_m",
    "other_lane_rear_rel_speed_mps",
)
"""Observation of an ONNX CAV policy, in this order: own speed, own lane (0 travel, 1 passing), then
bumper-to-bumper gaps (m, ``OBS_MAX_GAP_M`` when nobody is there) and speeds relative to the CAV
(v_other - v_ego, m/s, 0 when nobody is there) of the nearest vehicle ahead in its lane and of the nearest
vehicles ahead and behind in the other lane."""
CAV_OBS_UNITS: tuple[str, ...] = ("m/s", "lane", "m", "m/s", "m", "m/s", "m", "m/s")
CAV_ACTION_NAMES: tuple[str, ...] = ("accel_mps2", "lane_cmd")
"""Outputs of an ONNX CAV policy: acceleration (m/s^2; the scenario clips it to [-4, 2]) and lane command
(> 0: be in the passing lane, otherwise the travel lane)."""
OBS_MAX_GAP_M = 200.0


def cav_manifest(
    obs_mean: FloatArray | None = None,
    obs_std: FloatArray | None = None,
    *,
    accel_scale_mps2: float = 4.0,
    run_id: str = "",
    algo: str = "",
) -> DeployManifest:
    """The deployment manifest of an ONNX CAV policy (robot_rl.export.manifest, version 1, reused as is): the
    "joints" are the two outputs ``CAV_ACTION_NAMES`` (``default + action_scale * tanh(mean)`` with default 0,
    so both lie in [-accel_scale, accel_scale]), no PD gains (0), control period 1 s (the engine's sub-step).
    ``obs_mean``/``obs_std`` are the normaliser inside the graph (for its hash)."""
    import robot_rl
    from robot_rl.export.manifest import normaliser_hash

    d = len(CAV_OBS_NAMES)
    mean = np.zeros(d) if obs_mean is None else obs_mean
    std = np.ones(d) if obs_std is None else obs_std
    zeros = (0.0, 0.0)
    return DeployManifest(
        robot="cav-overtaking",
        joint_names=CAV_ACTION_NAMES,
        obs_names=CAV_OBS_NAMES,
        obs_units=CAV_OBS_UNITS,
        default_joint_pos_rad=zeros,
        action_scale_rad=accel_scale_mps2,
        action_low_rad=(-accel_scale_mps2, -accel_scale_mps2),
        action_high_rad=(accel_scale_mps2, accel_scale_mps2),
        kp_nm_per_rad=zeros,
        kd_nm_s_per_rad=zeros,
        control_dt_s=1.0,
        normaliser_hash=normaliser_hash(mean, std),
        calib_hash="none",
        software_version=robot_rl.__version__,
        run_id=run_id,
        algo=algo,
        task={"name": "cav-overtaking", "accel_clip_mps2": [-4.0, 2.0], "lane_cmd": "> 0: passing lane"},
    )


class CavPolicyError(ValueError):
    """An ONNX file that cannot drive the CAV of this scenario (wrong observation or action layout)."""


@dataclass(frozen=True)
class IdmCav:
    """IDM + lane-change driver (module docstring). Also the surrogate models' class."""

    headway_s: float = 1.0
    """T_h, s."""
    accept_gap_m: float = 6.0
    """G: minimum accepted gap in the passing lane before the speed term, m."""
    desired_speed_mps: float = 33.0
    max_accel_mps2: float = 2.0
    comfort_brake_mps2: float = 3.0
    min_gap_m: float = 2.0
    lane_change: str = "gap"
    """``gap`` (the specification's rule) or ``mobil``."""
    slower_by_mps: float = 1.0
    """gap rule: the vehicle ahead counts as slower below v - slower_by_mps."""
    gap_per_speed_s: float = 2.0
    """gap rule: seconds of closing speed added to G."""
    politeness: float = 0.0
    """mobil: weight of the new follower's acceleration change."""
    gain_threshold_mps2: float = 0.1
    """mobil: acceleration advantage needed to change lanes, m/s^2."""
    b_safe_mps2: float = 4.0
    """mobil: hardest braking the change may impose on the new follower, m/s^2."""
    length_m: float = 5.0
    label: str = ""
    """Name in reports; default ``idm(T_h=..,G=..)``."""

    def __post_init__(self) -> None:
        if self.lane_change not in ("gap", "mobil"):
            raise ValueError(f"lane_change: expected 'gap' or 'mobil', got {self.lane_change!r}")
        if self.accept_gap_m < 0.0:
            raise ValueError(f"accept_gap_m: expected >= 0, got {self.accept_gap_m}")
        if not self.desired_speed_mps > 0.0:
            raise ValueError(f"desired_speed_mps: expected > 0, got {self.desired_speed_mps}")
        self.idm  # noqa: B018  (Idm validates headway, accelerations and gaps, naming the field)

    @property
    def idm(self) -> Idm:
        return Idm(self.headway_s, self.max_accel_mps2, self.comfort_brake_mps2, self.min_gap_m)

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        extra = "" if self.lane_change == "gap" else ",mobil"
        return f"idm(T_h={self.headway_s:g},G={self.accept_gap_m:g}{extra})"

    def act(self, state: TrafficState) -> tuple[FloatArray, LaneArray]:
        """Lane for this sub-step and IDM acceleration in it, for every test of ``state``."""
        L, v = self.length_m, state.v_mps[:, CAV]
        lane = state.lane[:, CAV]
        g0, v0_ahead, _, _ = nearest(state, CAV, TRAVEL_LANE, L)
        g1, v1_ahead, g1_rear, v1_rear = nearest(state, CAV, PASSING_LANE, L)
        idm, v_des = self.idm, self.desired_speed_mps
        in_travel = lane == TRAVEL_LANE
        if self.lane_change == "gap":
            change = (
                in_travel
                & (v0_ahead < v - self.slower_by_mps)
                & (g1_rear >= self.accept_gap_m + self.gap_per_speed_s * np.maximum(0.0, v1_rear - v))
                & (g1 >= self.accept_gap_m + self.gap_per_speed_s * np.maximum(0.0, v - v1_ahead))
            )
        else:
            a_stay = idm.accel(v, v_des, g0, v0_ahead)
            a_move = idm.accel(v, v_des, g1, v1_ahead)
            follower_new = idm.accel(v1_rear, v_des, g1_rear, v)
            follower_old = idm.accel(v1_rear, v_des, g1_rear + g1 + L, v1_ahead)
            no_follower = ~np.isfinite(g1_rear)
            safe = no_follower | (follower_new >= -self.b_safe_mps2)
            gain = a_move - a_stay + self.politeness * np.where(no_follower, 0.0, follower_new - follower_old)
            change = in_travel & (g1 >= 0.0) & (g1_rear >= 0.0) & safe & (gain > self.gain_threshold_mps2)
        new_lane = np.where(change, np.int8(PASSING_LANE), lane).astype(np.int8)
        gap = np.where(new_lane == PASSING_LANE, g1, g0)
        v_ahead = np.where(new_lane == PASSING_LANE, v1_ahead, v0_ahead)
        return idm.accel(v, v_des, gap, v_ahead), new_lane


CAV_UNDER_TEST = IdmCav(headway_s=1.0, accept_gap_m=6.0, label="cav-idm(T_h=1,G=6)")
"""The built-in vehicle under test (ALGORITHMS.md 5.2); the testing environment never looks inside it."""


def cav_observation(state: TrafficState, length_m: float = 5.0) -> FloatArray:
    """(N, 8) float64 observation in the order of ``CAV_OBS_NAMES``."""
    v = state.v_mps[:, CAV]
    lane = state.lane[:, CAV]
    other = (1 - lane).astype(np.int8)
    g_own, v_own, _, _ = nearest(state, CAV, lane, length_m)
    g_of, v_of, g_or, v_or = nearest(state, CAV, other, length_m)
    obs = np.empty((state.n, len(CAV_OBS_NAMES)))
    obs[:, 0] = v
    obs[:, 1] = lane
    for col, gap, v_other in ((2, g_own, v_own), (4, g_of, v_of), (6, g_or, v_or)):
        present = np.isfinite(gap)
        obs[:, col] = np.where(present, np.minimum(gap, OBS_MAX_GAP_M), OBS_MAX_GAP_M)
        obs[:, col + 1] = np.where(present, v_other - v, 0.0)
    return obs


class OnnxCav:
    """An ONNX CAV policy (module docstring) evaluated on whole batches.

    The exported graph has batch size 1. When the ``onnx`` package is installed the graph's batch dimension
    is made symbolic and the whole batch goes through one session call (``batched`` True), checked against
    the batch-1 session on a few rows first; otherwise rows go one at a time through
    :class:`robot_rl.export.runtime.OnnxPolicy`.
    """

    def __init__(self, path: str | Path, *, threads: int = 1, length_m: float = 5.0) -> None:
        from robot_rl.export.runtime import INPUT_NAME, OUTPUT_NAME, OnnxPolicy, PolicyFileError

        self.path = Path(path)
        try:
            self.policy = OnnxPolicy(self.path, threads=threads)
        except PolicyFileError as err:
            raise CavPolicyError(f"--cav: {err}") from None
        m = self.policy.manifest
        if tuple(m.obs_names) != CAV_OBS_NAMES:
            raise CavPolicyError(
                f"--cav {self.path}: the policy's inputs do not match the overtaking scenario's observation: "
                f"it expects {m.obs_dim} values {list(m.obs_names)[:6]}{'...' if m.obs_dim > 6 else ''} "
                f"(robot {m.robot!r}), the scenario provides {len(CAV_OBS_NAMES)}: {list(CAV_OBS_NAMES)}"
            )
        if tuple(m.joint_names) != CAV_ACTION_NAMES:
            raise CavPolicyError(
                f"--cav {self.path}: the policy outputs {list(m.joint_names)}, a CAV policy outputs "
                f"{list(CAV_ACTION_NAMES)}"
            )
        self.length_m = length_m
        self._names = (INPUT_NAME, OUTPUT_NAME)
        self.batched = False
        self._session = None
        try:
            self._session = self._dynamic_batch_session(threads)
            self.batched = self._session is not None
        except Exception:  # any failure to rewrite the graph: the batch-1 path still works
            self._session = None

    @property
    def name(self) -> str:
        return f"onnx({self.path.name})"

    def _dynamic_batch_session(self, threads: int) -> Any:
        try:
            import onnx
        except ImportError:
            return None
        import onnxruntime as ort

        model = onnx.load(str(self.path))
        for value in (*model.graph.input, *model.graph.output):
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        probe = np.random.default_rng(0).normal(0.0, 10.0, (8, len(CAV_OBS_NAMES))).astype(np.float32)
        got = session.run([self._names[1]], {self._names[0]: probe})[0]
        want = self.policy.batch(probe)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
            return None
        return session

    def actions(self, obs: FloatArray) -> FloatArray:
        """(N, 2) policy outputs for observations (N, 8)."""
        x = np.asarray(obs, np.float32)
        if self._session is not None:
            out = self._session.run([self._names[1]], {self._names[0]: x})[0]
        else:
            out = self.policy.batch(x) if len(x) else np.zeros((0, 2), np.float32)
        return np.asarray(out, np.float64)

    def act(self, state: TrafficState) -> tuple[FloatArray, LaneArray]:
        out = self.actions(cav_observation(state, self.length_m))
        lane = np.where(out[:, 1] > 0.0, PASSING_LANE, TRAVEL_LANE).astype(np.int8)
        return out[:, 0], lane
