"""Typed, versioned bus messages (the payloads); the wire format is in :mod:`robot_rl.bus.codec`.

Why msgspec Structs rather than frozen dataclasses: msgspec builds a compiled, *validating*
MessagePack encoder/decoder for a Struct type, so a header is checked field by field (types,
missing and unknown fields, string and integer bounds) in C in about a microsecond, which is what
lets a full round trip through the bus stay within 1.3x of a raw ZeroMQ byte ping-pong. A dataclass
would need the same decoder plus a hand-written validation pass in Python. Structs are frozen here
(the values a receiver sees are the values the sender sent) and keyword-only (payloads are read by
name in docs/bus.md, not by position).

Arrays are not encoded by msgspec: each array field is declared ``Annotated[ndarray, ArrayField(...)]``
and the codec moves it as a raw little-endian buffer in its own frame, with dtype and shape in the
header. The ``ArrayField`` metadata is the single source for the allowed dtype, the number of
dimensions and whether non-finite values are rejected.

The envelope (:class:`Envelope`) travels next to the payload rather than inside it, so a payload can
be built once and published many times, each time with a fresh stamp.

Timestamps: ``t_src_ns`` and ``t_pub_ns`` are ``CLOCK_REALTIME`` nanoseconds (``time.time_ns()``).
The bus crosses hosts, and a monotonic clock has an arbitrary per-host origin, so only wall-clock
time can be compared between machines (to the accuracy of their NTP/PTP sync). Intervals measured
*inside* one process (timeouts, heartbeat liveness) use that process's ``time.monotonic()`` on
receipt and never subtract a peer's timestamp.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, get_args, get_origin, get_type_hints

import msgspec
import numpy as np

from robot_rl.schema import BoolArray, F32Array, F64Array, I64Array, TransitionBatch

BUS_SCHEMA_VERSION = 1
"""Version of the bus wire protocol (frame layout, header fields and message kinds).

Bump on any change a receiver of the previous version would misread: a field added, removed,
renamed or retyped, a kind's meaning changed. Receivers reject any other version (reason
``bad_version``); there is no silent best-effort decoding across versions.
"""

MAX_NAME_LEN = 128
"""Longest sender id, robot name, command or array name, in characters."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LEN)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Scalar: TypeAlias = bool | int | float | str
"""A small value in an args/payload/fields map. bool is listed first so True stays a bool."""
ScalarMap: TypeAlias = dict[str, Scalar]
CounterMap: TypeAlias = dict[str, int]


@dataclasses.dataclass(frozen=True)
class ArrayField:
    """How an array field travels: its dtype, number of dimensions, and whether NaN/inf are rejected.

    ``dtype`` is a little-endian numpy type string (``"<f4"``, ``"<f8"``, ``"<i8"``, ``"|b1"``).
    ``ndim`` of ``None`` means any number of dimensions from 0 to :data:`MAX_NDIM`.
    ``mapping`` marks a ``dict[str, ndarray]`` field whose entries travel as arrays named
    ``"<field>/<key>"``.
    """

    dtype: str
    ndim: int | None
    finite: bool = False
    mapping: bool = False


MAX_NDIM = 8
"""Largest number of dimensions any array on the bus may have."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-message metadata stamped by the publisher.

    Attributes:
        schema_version: :data:`BUS_SCHEMA_VERSION` of the sender; receivers reject any other.
        seq: per (sender, topic) counter, 0 for the first message, +1 for each next one; a gap
            means messages were dropped (high-water mark, conflation, reconnect).
        t_src_ns: when the data was produced, CLOCK_REALTIME ns (module docstring says why).
        t_pub_ns: when the message was handed to the socket, CLOCK_REALTIME ns.
        sender: id of the publishing process (``"learner"``, ``"sim/3"``, ``"bridge/a1"``).
        valid: False marks data the sender knows to be bad (sensor fault, stale); it is still
            delivered so that logs stay lossless.
    """

    schema_version: int
    seq: NonNegInt
    t_src_ns: NonNegInt
    t_pub_ns: NonNegInt
    sender: Name
    valid: bool = True


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every payload. ``KIND`` is the wire tag; it is unique across the registry."""

    KIND: ClassVar[str] = ""


class Heartbeat(Message, frozen=True, kw_only=True):
    """Liveness signal, published every ``interval_s`` from a process's main loop.

    A receiver considers the sender dead after ``3 * interval_s`` (three missed beats) without one.
    """

    KIND: ClassVar[str] = "heartbeat"
    state: Name
    """Process state: ``"starting"``, ``"running"``, ``"stopping"``, ..."""
    interval_s: Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)]
    """The sender's heartbeat period, seconds."""
    counters: CounterMap = {}
    """Monotonic counters (``"steps"``, ``"rejected/nan"``, ...)."""


class Observation(Message, frozen=True, kw_only=True):
    """One observation vector from a robot or simulator.

    ``obs`` is (D,) float32 in the units of the robot's observation layout; NaN/inf rejected.
    """

    KIND: ClassVar[str] = "obs"
    robot: Name
    obs: Annotated[F32Array, ArrayField("<f4", ndim=1, finite=True)]
    fields: ScalarMap = {}
    """Small extra values (``"episode_step": 12``, ``"mode": "walk"``)."""


class PolicyWeights(Message, frozen=True, kw_only=True):
    """A full policy snapshot: architecture, observation normaliser and named float32 parameters.

    A client applies ``(obs - obs_mean) / obs_std`` and then the network described by ``arch``.
    ``params`` names follow the producer's ``state_dict`` keys (``"pi.0.weight"``: (out, in)).
    """

    KIND: ClassVar[str] = "weights"
    policy_version: NonNegInt
    """Increases by one or more with every published update; a worker acts with exactly one."""
    arch: Annotated[str, msgspec.Meta(max_length=65536)]
    """JSON object describing the network, e.g. ``{"kind":"mlp","sizes":[48,256,12],"activation":"tanh"}``."""
    obs_mean: Annotated[F32Array, ArrayField("<f4", ndim=1, finite=True)]
    """(D,) float32 observation mean."""
    obs_std: Annotated[F32Array, ArrayField("<f4", ndim=1, finite=True)]
    """(D,) float32 observation standard deviation (> 0)."""
    params: Annotated[dict[str, F32Array], ArrayField("<f4", ndim=None, finite=True, mapping=True)]
    """Named float32 parameter arrays, any shape."""


class RolloutChunk(Message, frozen=True, kw_only=True):
    """N transitions from one sim worker, all produced by one policy version.

    Rows are transitions in the :class:`robot_rl.schema.TransitionBatch` sense: ``(obs, action,
    reward, next_obs, terminated, truncated)``, ``next_obs`` being the real next observation (the
    final observation on the last step of an episode, never the auto-reset one). Episodes are
    rebuilt by grouping rows on ``(worker_id, env_index, episode_index)`` and ordering by ``step``;
    an episode is complete when its last row has ``terminated`` or ``truncated`` set
    (:func:`assemble_episode_rows`). A chunk never mixes policy versions: a worker flushes its
    partial chunk before it switches to new weights.
    """

    KIND: ClassVar[str] = "rollout"
    worker_id: NonNegInt
    policy_version: int
    """Version of the weights that chose every action in the chunk; -1 for a scripted policy."""
    robot: Name
    backend: Name
    """Simulator backend: ``"mujoco"``, ``"dmcontrol"``, ``"pybullet"``."""
    task: Name
    env_index: Annotated[I64Array, ArrayField("<i8", ndim=1)]
    """(N,) int64 index of the vectorised env within the worker."""
    episode_index: Annotated[I64Array, ArrayField("<i8", ndim=1)]
    """(N,) int64 per-(worker, env) episode counter, 0 for the first episode."""
    step: Annotated[I64Array, ArrayField("<i8", ndim=1)]
    """(N,) int64 step index ``t`` within the episode (0-based)."""
    obs: Annotated[F32Array, ArrayField("<f4", ndim=2, finite=True)]
    """(N, D) float32 ``obs[t]``."""
    action: Annotated[F32Array, ArrayField("<f4", ndim=2, finite=True)]
    """(N, A) float32 action actually sent (after clamping), in [-1, 1]."""
    reward: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(N,) float64 raw reward."""
    next_obs: Annotated[F32Array, ArrayField("<f4", ndim=2, finite=True)]
    """(N, D) float32 ``obs[t+1]``."""
    terminated: Annotated[BoolArray, ArrayField("|b1", ndim=1)]
    """(N,) bool MDP terminal state reached (no bootstrap)."""
    truncated: Annotated[BoolArray, ArrayField("|b1", ndim=1)]
    """(N,) bool episode cut (time limit); bootstrap from ``next_obs``."""
    t_ns: Annotated[I64Array, ArrayField("<i8", ndim=1)]
    """(N,) int64 source time of ``obs[t]``, ns (sim time for simulators)."""
    next_t_ns: Annotated[I64Array, ArrayField("<i8", ndim=1)]
    """(N,) int64 source time of ``next_obs``, ns."""


Command: TypeAlias = Literal["seed", "reset", "status", "stop", "estop", "clear_fault"]
"""Control commands. ``stop`` asks a process to shut down cleanly; ``estop`` and ``clear_fault`` are
for the firmware bridge only (``estop``: latch the robot's e-stop, replied to after the firmware's
ACK; ``clear_fault``: clear latched faults). ``stop`` is never read as an e-stop: shutting a process
down and stopping a robot are different requests. Processes answer ``ok=false`` to commands they do
not support."""


class Request(Message, frozen=True, kw_only=True):
    """A control request to a process (sent DEALER -> ROUTER); answered by one :class:`Reply`."""

    KIND: ClassVar[str] = "request"
    command: Command
    args: ScalarMap = {}
    """Command arguments: ``{"seed": 7}`` for seed, ``{}`` for the others."""


class Reply(Message, frozen=True, kw_only=True):
    """The answer to a :class:`Request`.

    ``request_seq`` is the envelope ``seq`` of the request it answers, so a requester that retried
    can drop late replies to an earlier attempt.
    """

    KIND: ClassVar[str] = "reply"
    request_seq: int
    ok: bool
    error: str = ""
    payload: ScalarMap = {}


class Status(Message, frozen=True, kw_only=True):
    """Periodic process status: a state and monotonic counters."""

    KIND: ClassVar[str] = "status"
    state: Name
    counters: CounterMap = {}


class JointState(Message, frozen=True, kw_only=True):
    """The robot's measured state in SI units, published by the firmware bridge on ``obs/<robot>``.

    Converted from one firmware SENSOR_STATE with the robot's calibration (docs/serial-protocol.md).
    Joint arrays are (n,) in the calibration's joint order; all float arrays are finite.
    """

    KIND: ClassVar[str] = "joint_state"
    robot: Name
    joint_pos_rad: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(n,) joint angles, rad."""
    joint_vel_radps: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(n,) joint velocities, rad/s."""
    joint_torque_nm: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(n,) joint torques from motor current, N m."""
    gyro_radps: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(3,) body angular velocity, rad/s."""
    accel_mps2: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(3,) body specific force, m/s^2 (+9.81 on z at rest)."""
    quat_wxyz: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(4,) orientation body -> world, w first."""
    foot_contact: Annotated[BoolArray, ArrayField("|b1", ndim=1)]
    """(k,) foot contact flags in the robot's foot order ((0,) for robots without feet)."""
    mode: Name
    """Firmware control mode: ``IDLE``, ``POSITION_PD``, ``TORQUE`` or ``DAMPING``."""
    faults: Annotated[int, msgspec.Meta(ge=0, le=255)]
    """Latched firmware fault bits: 0 WATCHDOG, 1 ESTOP, 2 OVER_CURRENT, 3 OVER_TEMPERATURE, 4 BAD_COMMAND."""
    t_us: NonNegInt
    """Firmware sample time, us (the firmware's clock, wraps after 71.6 min)."""
    last_cmd_seq: NonNegInt
    """Serial sequence number of the last JOINT_COMMAND the firmware applied (0 before the first)."""


class JointTarget(Message, frozen=True, kw_only=True):
    """A position command from a policy to the firmware bridge (command link, single-part).

    ``kp``/``kd`` of shape (0,) mean "the calibration's gains"; otherwise (n,), >= 0.
    The bridge clamps ``q_target_rad`` with ``firmware_bridge.safety.clamp_command`` before sending.
    """

    KIND: ClassVar[str] = "joint_target"
    robot: Name
    q_target_rad: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(n,) requested joint angles, rad."""
    kp: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)] = msgspec.field(
        default_factory=lambda: np.zeros(0, np.float64)
    )
    """(n,) or (0,) stiffness, N m/rad."""
    kd: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)] = msgspec.field(
        default_factory=lambda: np.zeros(0, np.float64)
    )
    """(n,) or (0,) damping, N m s/rad."""


class CommandSent(Message, frozen=True, kw_only=True):
    """What the firmware bridge actually sent after the safety clamp (never the requested command).

    Published on ``command_sent/<robot>`` for every JOINT_COMMAND frame written to the firmware.
    """

    KIND: ClassVar[str] = "command_sent"
    robot: Name
    q_rad: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(n,) position targets sent, rad (after clamping; rounded to whole encoder ticks on the wire)."""
    target_ticks: Annotated[I64Array, ArrayField("<i8", ndim=1)]
    """(n,) the same targets as the encoder ticks written to the firmware."""
    kp: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(n,) stiffness sent, N m/rad (as quantised on the wire)."""
    kd: Annotated[F64Array, ArrayField("<f8", ndim=1, finite=True)]
    """(n,) damping sent, N m s/rad (as quantised on the wire)."""
    clipped_limit: Annotated[BoolArray, ArrayField("|b1", ndim=1)]
    """(n,) the request was outside the joint's position limits."""
    clipped_step: Annotated[BoolArray, ArrayField("|b1", ndim=1)]
    """(n,) the request moved more than the per-step limit from the previous command."""
    rejected: bool
    """The request was rejected (non-finite) and the previous command held."""
    seq: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    """Serial sequence number of the JOINT_COMMAND frame (matches ``JointState.last_cmd_seq``)."""


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One payload field as the codec sees it: a msgpack scalar field or an array field."""

    name: str
    type: Any
    array: ArrayField | None


@dataclasses.dataclass(frozen=True)
class MessageSpec:
    """The codec's view of a message type: its scalar fields (in order) and its array fields."""

    kind: str
    cls: type[Message]
    scalars: tuple[FieldSpec, ...]
    arrays: tuple[FieldSpec, ...]


def _spec_of(cls: type[Message]) -> MessageSpec:
    hints = get_type_hints(cls, include_extras=True)
    scalars: list[FieldSpec] = []
    arrays: list[FieldSpec] = []
    for name in cls.__struct_fields__:
        hint = hints[name]
        meta = [m for m in get_args(hint)[1:] if isinstance(m, ArrayField)] if get_origin(hint) else []
        if meta:
            arrays.append(FieldSpec(name, hint, meta[0]))
        else:
            scalars.append(FieldSpec(name, hint, None))
    return MessageSpec(cls.KIND, cls, tuple(scalars), tuple(arrays))


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND: cls
    for cls in (
        Heartbeat,
        Observation,
        PolicyWeights,
        RolloutChunk,
        Request,
        Reply,
        Status,
        JointState,
        JointTarget,
        CommandSent,
    )
}
"""Registry kind -> payload type. A kind not in it is rejected (reason ``unknown_kind``)."""

MESSAGE_SPECS: dict[str, MessageSpec] = {kind: _spec_of(cls) for kind, cls in MESSAGE_TYPES.items()}
"""Registry kind -> field layout, derived once from the annotations above."""

RESERVED_HEADER_KEYS = frozenset({"kind", "env", "arrays"})
if any(f.name in RESERVED_HEADER_KEYS for s in MESSAGE_SPECS.values() for f in s.scalars):
    raise TypeError(f"a message field uses a reserved header key {sorted(RESERVED_HEADER_KEYS)}")


class PayloadError(ValueError):
    """A payload that is well formed on the wire but violates its message type's rules."""


PAYLOAD_RULE_TYPES: frozenset[type[Message]] = frozenset(
    {RolloutChunk, PolicyWeights, JointState, JointTarget, CommandSent}
)
"""The types :func:`check_payload` has rules for (the codec skips the call for the others)."""


def _same_shape(msg: Message, shape: tuple[int, ...], *names: str) -> None:
    for name in names:
        if getattr(msg, name).shape != shape:
            raise PayloadError(f"{name}: shape {getattr(msg, name).shape}, expected {shape}")


def check_payload(msg: Message) -> None:
    """Cross-field rules the field types cannot express; raises :class:`PayloadError`.

    Called by the codec on both encode and decode so a bad payload is refused at the sender too.
    """
    if isinstance(msg, RolloutChunk):
        n = msg.env_index.shape[0]
        for name in ("episode_index", "step", "reward", "terminated", "truncated", "t_ns", "next_t_ns"):
            if getattr(msg, name).shape != (n,):
                raise PayloadError(f"{name}: shape {getattr(msg, name).shape}, expected ({n},)")
        for name in ("obs", "action", "next_obs"):
            if getattr(msg, name).shape[0] != n:
                raise PayloadError(f"{name}: {getattr(msg, name).shape[0]} rows, expected {n}")
        if msg.next_obs.shape != msg.obs.shape:
            raise PayloadError(f"next_obs shape {msg.next_obs.shape} != obs shape {msg.obs.shape}")
        if n and (int(msg.step.min()) < 0 or int(msg.episode_index.min()) < 0):
            raise PayloadError("step and episode_index must be >= 0")
        if bool(np.any(msg.terminated & msg.truncated)):
            raise PayloadError("a row is both terminated and truncated (a terminal state is terminated only)")
    elif isinstance(msg, JointState):
        n = msg.joint_pos_rad.shape[0]
        _same_shape(msg, (n,), "joint_vel_radps", "joint_torque_nm")
        _same_shape(msg, (3,), "gyro_radps", "accel_mps2")
        _same_shape(msg, (4,), "quat_wxyz")
    elif isinstance(msg, JointTarget):
        n = msg.q_target_rad.shape[0]
        for name in ("kp", "kd"):
            value = getattr(msg, name)
            if value.shape not in ((0,), (n,)):
                raise PayloadError(f"{name}: shape {value.shape}, expected (0,) or ({n},)")
            if value.size and not bool(np.all(value >= 0.0)):
                raise PayloadError(f"{name} must be >= 0")
    elif isinstance(msg, CommandSent):
        n = msg.q_rad.shape[0]
        _same_shape(msg, (n,), "target_ticks", "kp", "kd", "clipped_limit", "clipped_step")
    elif isinstance(msg, PolicyWeights):
        if msg.obs_std.shape != msg.obs_mean.shape:
            raise PayloadError(f"obs_std shape {msg.obs_std.shape} != obs_mean shape {msg.obs_mean.shape}")
        if msg.obs_std.size and not bool(np.all(msg.obs_std > 0.0)):
            raise PayloadError("obs_std must be > 0")
        try:
            arch = json.loads(msg.arch)
        except ValueError as err:
            raise PayloadError(f"arch is not JSON: {err}") from None
        if not isinstance(arch, dict) or not isinstance(arch.get("kind"), str):
            raise PayloadError('arch must be a JSON object with a string "kind"')


def chunk_transitions(chunk: RolloutChunk) -> TransitionBatch[np.ndarray]:
    """The chunk's rows as a :class:`robot_rl.schema.TransitionBatch` (views, no copies)."""
    return TransitionBatch(
        obs=chunk.obs,
        action=chunk.action,
        reward=chunk.reward,
        next_obs=chunk.next_obs,
        terminated=chunk.terminated,
        truncated=chunk.truncated,
    )


@dataclasses.dataclass(frozen=True)
class EpisodeRows:
    """The rows of one complete episode gathered from chunks, ready for ``schema.Episode``.

    ``obs`` is (T+1, D) (the ``obs`` rows then the last ``next_obs``), ``t_ns`` is (T+1,).
    """

    key: tuple[int, int, int]
    """(worker_id, env_index, episode_index)."""
    policy_version: int
    obs: F32Array
    action: F32Array
    reward: F64Array
    terminated: BoolArray
    truncated: BoolArray
    t_ns: I64Array


def assemble_episode_rows(chunks: Iterable[RolloutChunk]) -> tuple[list[EpisodeRows], list[RolloutChunk]]:
    """Group chunk rows into complete episodes.

    Returns ``(complete, rest)``: the complete episodes (last row terminated or truncated, steps
    0..T-1 all present) and the leftover rows, repacked as chunks to pass in with the next batch.
    An episode whose rows carry different policy versions keeps the version of its first row;
    callers that need on-policy data check ``policy_version`` per chunk before assembling.
    """
    rows: dict[tuple[int, int, int], list[tuple[RolloutChunk, int]]] = {}
    for chunk in chunks:
        for i in range(chunk.env_index.shape[0]):
            key = (chunk.worker_id, int(chunk.env_index[i]), int(chunk.episode_index[i]))
            rows.setdefault(key, []).append((chunk, i))
    complete: list[EpisodeRows] = []
    rest: list[RolloutChunk] = []
    for key, items in rows.items():
        items.sort(key=lambda ci: int(ci[0].step[ci[1]]))
        steps = [int(c.step[i]) for c, i in items]
        last_c, last_i = items[-1]
        done = bool(last_c.terminated[last_i] or last_c.truncated[last_i])
        if done and steps == list(range(len(steps))):
            complete.append(
                EpisodeRows(
                    key=key,
                    policy_version=items[0][0].policy_version,
                    obs=np.stack([c.obs[i] for c, i in items] + [last_c.next_obs[last_i]]).astype(np.float32),
                    action=np.stack([c.action[i] for c, i in items]).astype(np.float32),
                    reward=np.array([c.reward[i] for c, i in items], dtype=np.float64),
                    terminated=np.array([c.terminated[i] for c, i in items], dtype=np.bool_),
                    truncated=np.array([c.truncated[i] for c, i in items], dtype=np.bool_),
                    t_ns=np.array([c.t_ns[i] for c, i in items] + [last_c.next_t_ns[last_i]], dtype=np.int64),
                )
            )
        else:
            rest.append(_repack(items))
    return complete, rest


def _repack(items: list[tuple[RolloutChunk, int]]) -> RolloutChunk:
    """One chunk holding the given rows (all from the same worker)."""
    first = items[0][0]

    def col(name: str) -> Any:
        return np.stack([getattr(c, name)[i] for c, i in items])

    return RolloutChunk(
        worker_id=first.worker_id,
        policy_version=first.policy_version,
        robot=first.robot,
        backend=first.backend,
        task=first.task,
        env_index=col("env_index"),
        episode_index=col("episode_index"),
        step=col("step"),
        obs=col("obs"),
        action=col("action"),
        reward=col("reward"),
        next_obs=col("next_obs"),
        terminated=col("terminated"),
        truncated=col("truncated"),
        t_ns=col("t_ns"),
        next_t_ns=col("next_t_ns"),
    )
