"""Codec round trips for every message kind, each rejection reason, and fuzzing of the decoders."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_rl.bus.codec import (
    ALLOWED_DTYPES,
    PREFIX_BYTES,
    REASONS,
    BusDecodeError,
    DecodeLimits,
    decode,
    decode_single,
    encode,
    encode_single,
)
from robot_rl.bus.messages import (
    BUS_SCHEMA_VERSION,
    MESSAGE_TYPES,
    CommandSent,
    Envelope,
    Heartbeat,
    JointState,
    JointTarget,
    Message,
    Observation,
    PolicyWeights,
    Reply,
    Request,
    RolloutChunk,
    Status,
    assemble_episode_rows,
    chunk_transitions,
)
from robot_rl.schema import Episode, EpisodeMeta, Source

FUZZ = settings(
    max_examples=int(os.environ.get("BUS_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def make_env(seq: int = 7, version: int = BUS_SCHEMA_VERSION) -> Envelope:
    t_src_ns = 1_700_000_000_000_000_000
    return Envelope(
        schema_version=version,
        seq=seq,
        t_src_ns=t_src_ns,
        t_pub_ns=t_src_ns + 500,
        sender="test/1",
        valid=False,
    )


def make_chunk(n: int = 5, obs_dim: int = 3, act_dim: int = 2, *, seed: int = 0) -> RolloutChunk:
    """Two envs; env 0 runs one 3-step episode (terminated) then starts another, env 1 continues."""
    rng = np.random.default_rng(seed)
    return RolloutChunk(
        worker_id=2,
        policy_version=11,
        robot="quadruped",
        backend="mujoco",
        task="walk",
        env_index=np.array([0, 1, 0, 0, 0][:n], dtype=np.int64),
        episode_index=np.array([0, 4, 0, 0, 1][:n], dtype=np.int64),
        step=np.array([0, 9, 1, 2, 0][:n], dtype=np.int64),
        obs=rng.standard_normal((n, obs_dim)).astype(np.float32),
        action=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        reward=rng.standard_normal(n),
        next_obs=rng.standard_normal((n, obs_dim)).astype(np.float32),
        terminated=np.array([False, False, False, True, False][:n]),
        truncated=np.zeros(n, dtype=np.bool_),
        t_ns=np.array([0, 90, 10, 20, 0][:n], dtype=np.int64) * 1_000_000,
        next_t_ns=np.array([10, 100, 20, 30, 10][:n], dtype=np.int64) * 1_000_000,
    )


def sample_messages() -> list[Message]:
    """One message of every kind, with edge cases (empty maps, 0-d and empty arrays, odd values)."""
    rng = np.random.default_rng(3)
    return [
        Heartbeat(state="running", interval_s=0.5, counters={"steps": 2**62, "rejected/nan": 0}),
        Observation(robot="a1", obs=rng.standard_normal(64).astype(np.float32)),
        Observation(robot="a1", obs=np.zeros(0, np.float32), fields={"b": True, "i": -3, "f": 0.5, "s": "x"}),
        PolicyWeights(
            policy_version=3,
            arch=json.dumps({"kind": "mlp", "sizes": [3, 8, 2], "activation": "tanh"}),
            obs_mean=np.array([0.0, 1.0, -2.0], np.float32),
            obs_std=np.array([1.0, 0.5, 2.0], np.float32),
            params={
                "pi.0.weight": rng.standard_normal((8, 3)).astype(np.float32),
                "pi.0.bias": np.zeros(8, np.float32),
                "log_std": np.array(-0.5, np.float32),  # 0-d
                "empty": np.zeros((0, 4), np.float32),
            },
        ),
        make_chunk(),
        Request(command="seed", args={"seed": 7}),
        Request(command="stop"),
        Reply(request_seq=7, ok=False, error="busy", payload={"steps": 10, "state": "running"}),
        Status(state="running", counters={"episodes": 3}),
        Request(command="estop"),
        Request(command="clear_fault"),
        sample_joint_state(),
        JointTarget(robot="quadruped", q_target_rad=np.linspace(-1.0, 1.0, 8)),
        JointTarget(robot="quadruped", q_target_rad=np.zeros(8), kp=np.full(8, 40.0), kd=np.full(8, 1.0)),
        sample_command_sent(),
    ]


def sample_joint_state() -> JointState:
    return JointState(
        robot="quadruped",
        joint_pos_rad=np.linspace(-1.0, 1.0, 8),
        joint_vel_radps=np.full(8, 0.25),
        joint_torque_nm=np.arange(8, dtype=np.float64),
        gyro_radps=np.array([0.001, -0.002, 0.003]),
        accel_mps2=np.array([0.0, 0.0, 9.81]),
        quat_wxyz=np.array([1.0, 0.0, 0.0, 0.0]),
        foot_contact=np.array([True, False, True, True]),
        mode="POSITION_PD",
        faults=1,
        t_us=123456,
        last_cmd_seq=65535,
    )


def sample_command_sent() -> CommandSent:
    return CommandSent(
        robot="quadruped",
        q_rad=np.linspace(-0.3, 0.3, 8),
        target_ticks=np.arange(8, dtype=np.int64) * -1000,
        kp=np.full(8, 40.0),
        kd=np.full(8, 1.0),
        clipped_limit=np.zeros(8, np.bool_),
        clipped_step=np.array([True] + [False] * 7),
        rejected=False,
        seq=42,
    )


def assert_same(a: Message, b: Message) -> None:
    """Exact equality: same type, same scalars, arrays with the same dtype, shape and bits."""
    assert type(a) is type(b)
    for name in a.__struct_fields__:
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and va.shape == vb.shape, name
            assert va.tobytes() == vb.tobytes(), name
        elif isinstance(va, dict) and va and isinstance(next(iter(va.values())), np.ndarray):
            assert list(va) == list(vb), name
            for k in va:
                assert va[k].dtype == vb[k].dtype and va[k].shape == vb[k].shape, (name, k)
                assert va[k].tobytes() == vb[k].tobytes(), (name, k)
        else:
            assert va == vb and type(va) is type(vb), name


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_round_trip_multipart(msg: Message) -> None:
    env = make_env()
    frames = encode(b"topic/x", env, msg)
    got = decode([bytes(f) for f in frames])
    assert got.topic == b"topic/x"
    assert got.env == env
    assert_same(msg, got.msg)


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_round_trip_single_part(msg: Message) -> None:
    env = make_env(seq=0)
    data = encode_single(b"cmd", env, msg)
    assert data[:4] == b"RRLB"
    got = decode_single(data)
    assert got.topic == b"cmd" and got.env == env
    assert_same(msg, got.msg)


def test_every_registered_kind_is_covered_and_unique() -> None:
    assert {type(m).KIND for m in sample_messages()} == set(MESSAGE_TYPES)
    assert len({cls.KIND for cls in MESSAGE_TYPES.values()}) == len(MESSAGE_TYPES)


def test_header_layout_is_the_documented_one() -> None:
    obs = np.arange(4, dtype=np.float32)
    frames = encode(b"obs/a1", make_env(), Observation(robot="a1", obs=obs))
    assert len(frames) == 3
    header = msgspec.msgpack.decode(frames[1])
    assert list(header) == ["kind", "env", "robot", "fields", "arrays"]
    assert header["kind"] == "obs"
    assert header["env"] == {
        "schema_version": BUS_SCHEMA_VERSION, "seq": 7, "t_src_ns": 1_700_000_000_000_000_000,
        "t_pub_ns": 1_700_000_000_000_000_500, "sender": "test/1", "valid": False,
    }  # fmt: skip
    assert header["arrays"] == [["obs", "<f4", [4], 16]]
    # Raw little-endian float32: 1.0 is 00 00 80 3f.
    assert bytes(frames[2])[4:8] == b"\x00\x00\x80\x3f"


def test_single_part_buffers_are_8_byte_aligned() -> None:
    msg = sample_messages()[3]  # PolicyWeights: several arrays of odd sizes
    data = encode_single(b"w", make_env(), msg)
    topic_len = int.from_bytes(data[6:8], "little")
    header_len = int.from_bytes(data[8:12], "little")
    header = msgspec.msgpack.decode(data[PREFIX_BYTES + topic_len : PREFIX_BYTES + topic_len + header_len])
    pos = PREFIX_BYTES + topic_len + header_len
    for _name, _dtype, _shape, nbytes in header["arrays"]:
        pos += -pos % 8
        assert pos % 8 == 0
        pos += nbytes
    assert pos == len(data)


def test_decoded_arrays_are_read_only_views() -> None:
    frames = [bytes(f) for f in encode(b"o", make_env(), Observation(robot="r", obs=np.ones(3, np.float32)))]
    arr = decode(frames).msg.obs  # type: ignore[attr-defined]
    assert not arr.flags.writeable
    assert np.shares_memory(arr, np.frombuffer(frames[2], np.uint8))


def test_big_endian_input_is_sent_little_endian() -> None:
    obs = np.array([1.0, 2.0], dtype=">f4")
    frames = encode(b"o", make_env(), Observation(robot="r", obs=obs))  # type: ignore[arg-type]
    assert bytes(frames[2]) == np.array([1.0, 2.0], "<f4").tobytes()


def test_encode_refuses_wrong_dtype_ndim_type_and_rules() -> None:
    with pytest.raises(TypeError, match="dtype"):
        encode(b"o", make_env(), Observation(robot="r", obs=np.zeros(3)))  # float64
    with pytest.raises(TypeError, match="dimensions"):
        encode(b"o", make_env(), Observation(robot="r", obs=np.zeros((1, 3), np.float32)))
    with pytest.raises(TypeError, match="registered"):
        encode(b"o", make_env(), Message())
    bad = msgspec.structs.replace(make_chunk(), truncated=np.array([False, False, False, True, False]))
    with pytest.raises(ValueError, match="both terminated and truncated"):
        encode(b"r", make_env(), bad)


def test_chunk_rows_rebuild_schema_transitions_and_episodes() -> None:
    chunk = make_chunk()
    batch = chunk_transitions(chunk)
    assert batch.obs.shape == (5, 3) and batch.reward.dtype == np.float64
    # Split env 0's first episode across two chunks, sent in reverse order.
    rows_a = decode([bytes(f) for f in encode(b"r", make_env(), chunk)]).msg
    assert isinstance(rows_a, RolloutChunk)
    complete, rest = assemble_episode_rows([rows_a])
    assert [e.key for e in complete] == [(2, 0, 0)]
    ep = complete[0]
    np.testing.assert_array_equal(ep.obs[:3], chunk.obs[[0, 2, 3]])
    np.testing.assert_array_equal(ep.obs[3], chunk.next_obs[3])
    np.testing.assert_array_equal(ep.t_ns, [0, 10_000_000, 20_000_000, 30_000_000])
    episode = Episode(
        meta=EpisodeMeta(source=Source.SIM, robot="quadruped", task="walk", policy_version=ep.policy_version,
                         control_dt_s=0.01),
        obs=ep.obs, action=ep.action, reward=ep.reward, terminated=ep.terminated, truncated=ep.truncated,
        t_ns=ep.t_ns,
    )  # fmt: skip
    assert episode.n_steps == 3 and episode.terminated[-1]
    # The open episodes (env 1 mid-episode, env 0's next one) come back as leftover rows.
    assert sorted((int(c.env_index[0]), int(c.episode_index[0])) for c in rest) == [(0, 1), (1, 4)]


# ----------------------------------------------------------------------------------- rejections


def _obs_frames(obs: np.ndarray | None = None, env: Envelope | None = None) -> list[bytes]:
    o = np.arange(8, dtype=np.float32) if obs is None else obs
    return [bytes(f) for f in encode(b"obs/r", env or make_env(), Observation(robot="r", obs=o))]


def _with_header(frames: list[bytes], edit: Callable[[dict[str, Any]], None]) -> list[bytes]:
    """The frames with their header decoded, edited in place, and re-encoded."""
    header = msgspec.msgpack.decode(frames[1])
    edit(header)
    return [frames[0], msgspec.msgpack.encode(header), *frames[2:]]


def _frames(msg: Message) -> list[bytes]:
    return [bytes(f) for f in encode(b"t", make_env(), msg)]


def _replace_array(frames: list[bytes], name: str, data: bytes) -> list[bytes]:
    """The frames with the buffer of array ``name`` replaced (header unchanged)."""
    names = [a[0] for a in msgspec.msgpack.decode(frames[1])["arrays"]]
    out = list(frames)
    out[2 + names.index(name)] = data
    return out


def _reason(frames: list[bytes], limits: DecodeLimits | None = None) -> str:
    with pytest.raises(BusDecodeError) as info:
        decode(frames) if limits is None else decode(frames, limits)
    assert info.value.reason in REASONS
    return info.value.reason


def _set_array(i: int, **kw: Any) -> Callable[[dict[str, Any]], None]:
    fields = {"name": 0, "dtype": 1, "shape": 2, "nbytes": 3}

    def edit(h: dict[str, Any]) -> None:
        for k, v in kw.items():
            h["arrays"][i][fields[k]] = v

    return edit


REJECTIONS: dict[str, Callable[[], list[bytes]]] = {
    "one frame": lambda: [b"obs/r"],
    "array frame missing": lambda: _obs_frames()[:2],
    "extra frame": lambda: [*_obs_frames(), b"\x00" * 4],
    "array frame short": lambda: [*_obs_frames()[:2], _obs_frames()[2][:-1]],
    "header not msgpack": lambda: [b"t", b"\xc1\xc1\xc1", b""],
    "header a list": lambda: [b"t", msgspec.msgpack.encode([1, 2]), b""],
    "wrong scalar type": lambda: _with_header(_obs_frames(), lambda h: h.update(robot=5)),
    "negative seq": lambda: _with_header(_obs_frames(), lambda h: h["env"].update(seq=-1)),
    "empty sender": lambda: _with_header(_obs_frames(), lambda h: h["env"].update(sender="")),
    "wrong version": lambda: _obs_frames(env=make_env(version=BUS_SCHEMA_VERSION + 1)),
    "wrong version, other fields": lambda: _with_header(
        _obs_frames(), lambda h: h.update(env={"schema_version": 2, "novel": 1}, extra=1)
    ),
    "unknown kind": lambda: _with_header(_obs_frames(), lambda h: h.update(kind="teleport")),
    "missing field": lambda: _with_header(_obs_frames(), lambda h: h.pop("robot")),
    "extra field": lambda: _with_header(_obs_frames(), lambda h: h.update(colour="red")),
    "missing array": lambda: _with_header(_obs_frames()[:2], lambda h: h.update(arrays=[])),
    "unexpected array": lambda: _with_header(_obs_frames(), _set_array(0, name="secret")),
    "duplicate array": lambda: _with_header(
        [*_obs_frames(), _obs_frames()[2]], lambda h: h["arrays"].append(h["arrays"][0])
    ),
    "dtype not allowed": lambda: _with_header(_obs_frames(), _set_array(0, dtype="|O")),
    "dtype not the field's": lambda: _with_header(
        [*_obs_frames()[:2], np.zeros(8, "<i4").tobytes()], _set_array(0, dtype="<i4")
    ),
    "big-endian dtype": lambda: _with_header(_obs_frames(), _set_array(0, dtype=">f4")),
    "wrong ndim": lambda: _with_header(_obs_frames(), _set_array(0, shape=[2, 4])),
    "nbytes mismatch": lambda: _with_header(_obs_frames(), _set_array(0, nbytes=31)),
    "frame longer than nbytes": lambda: [*_obs_frames()[:2], _obs_frames()[2] + b"\x00\x00\x00\x00"],
    "negative dimension": lambda: _with_header(_obs_frames(), _set_array(0, shape=[-8], nbytes=-32)),
    "huge declared shape": lambda: _with_header(_obs_frames(), _set_array(0, shape=[2**62], nbytes=2**63)),
    "nan obs": lambda: _obs_frames(np.array([0.0, np.nan], np.float32)),
    "inf obs": lambda: _obs_frames(np.array([np.inf, 0.0], np.float32)),
    "inf weights": lambda: [
        bytes(f)
        for f in encode(
            b"w",
            make_env(),
            msgspec.structs.replace(
                sample_messages()[3], params={"w": np.array([[1.0, -np.inf]], np.float32)}
            ),
        )
    ],
    "nan reward": lambda: [
        bytes(f)
        for f in encode(b"r", make_env(), msgspec.structs.replace(make_chunk(), reward=np.full(5, np.nan)))
    ],
    "both terminated and truncated": lambda: _replace_array(
        _frames(make_chunk()), "truncated", np.array([False, False, False, True, False]).tobytes()
    ),
    "rows disagree": lambda: _with_header(
        _replace_array(_frames(make_chunk()), "next_t_ns", np.zeros(4, "<i8").tobytes()),
        lambda h: h["arrays"][-1].__setitem__(slice(2, 4), [[4], 32]),
    ),
    "bad arch json": lambda: _with_header(
        _frames(sample_messages()[3]), lambda h: h.update(arch="{not json")
    ),
    "unknown command": lambda: _with_header(
        [bytes(f) for f in encode(b"c", make_env(), Request(command="stop"))],
        lambda h: h.update(command="self_destruct"),
    ),
}

EXPECTED_REASON = {
    "one frame": "bad_frames",
    "array frame missing": "bad_frames",
    "extra frame": "bad_frames",
    "array frame short": "truncated",
    "header not msgpack": "bad_header",
    "header a list": "bad_header",
    "wrong scalar type": "bad_header",
    "negative seq": "bad_header",
    "empty sender": "bad_header",
    "wrong version": "bad_version",
    "wrong version, other fields": "bad_version",
    "unknown kind": "unknown_kind",
    "missing field": "bad_fields",
    "extra field": "bad_fields",
    "missing array": "bad_fields",
    "unexpected array": "bad_fields",
    "duplicate array": "bad_fields",
    "dtype not allowed": "bad_dtype",
    "dtype not the field's": "bad_dtype",
    "big-endian dtype": "bad_dtype",
    "wrong ndim": "bad_shape",
    "nbytes mismatch": "bad_shape",
    "frame longer than nbytes": "bad_shape",
    "negative dimension": "bad_shape",
    "huge declared shape": "oversized",
    "nan obs": "nan",
    "inf obs": "nan",
    "inf weights": "nan",
    "nan reward": "nan",
    "both terminated and truncated": "bad_value",
    "rows disagree": "bad_value",
    "bad arch json": "bad_value",
    "unknown command": "bad_header",
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejection_reason(case: str) -> None:
    assert _reason(REJECTIONS[case]()) == EXPECTED_REASON[case]


def test_every_reason_is_exercised() -> None:
    covered = set(EXPECTED_REASON.values()) | {"bad_magic", "oversized"}
    assert covered == set(REASONS)


def test_oversized_against_limits() -> None:
    frames = _obs_frames(np.zeros(1024, np.float32))  # 4 KiB
    assert _reason(frames, DecodeLimits(max_array_bytes=4095)) == "oversized"
    assert _reason(frames, DecodeLimits(max_header_bytes=16)) == "oversized"
    assert _reason(frames, DecodeLimits(max_total_bytes=4095)) == "oversized"
    weights = [bytes(f) for f in encode(b"w", make_env(), sample_messages()[3])]
    assert _reason(weights, DecodeLimits(max_arrays=3)) == "oversized"
    assert decode(frames, DecodeLimits(max_array_bytes=4096)).msg.obs.size == 1024  # type: ignore[attr-defined]


def test_single_part_rejections() -> None:
    good = encode_single(b"cmd", make_env(), Observation(robot="r", obs=np.ones(5, np.float32)))
    cases = {
        b"": "truncated",
        good[:PREFIX_BYTES - 1]: "truncated",
        b"XXXX" + good[4:]: "bad_magic",
        good[:4] + (BUS_SCHEMA_VERSION + 1).to_bytes(2, "little") + good[6:]: "bad_version",
        good[:-1]: "truncated",
        good + b"\x00": "bad_frames",
        good[:PREFIX_BYTES + 3 + 4]: "truncated",
    }  # fmt: skip
    for data, reason in cases.items():
        with pytest.raises(BusDecodeError) as info:
            decode_single(data)
        assert info.value.reason == reason, data


def test_nan_is_allowed_to_be_sent_but_not_received() -> None:
    # The sender does not scan for NaN (cost); the receiver always does.
    frames = _obs_frames(np.array([np.nan], np.float32))
    assert len(frames) == 3
    assert _reason(frames) == "nan"


# ------------------------------------------------------------------------------------------ fuzz


_GOOD_FRAMES = [[bytes(f) for f in encode(b"t", make_env(), m)] for m in sample_messages()]
_GOOD_SINGLE = [encode_single(b"t", make_env(), m) for m in sample_messages()]


def _decode_or_reject(frames: list[bytes]) -> None:
    try:
        decode(frames, DecodeLimits(max_array_bytes=1 << 20))
    except BusDecodeError as err:
        assert err.reason in REASONS


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_fuzz_random_frames(frames: list[bytes]) -> None:
    _decode_or_reject(frames)


@FUZZ
@given(st.binary(max_size=256))
def test_fuzz_random_single_part(data: bytes) -> None:
    try:
        decode_single(data)
    except BusDecodeError as err:
        assert err.reason in REASONS


@FUZZ
@given(st.data())
def test_fuzz_truncations_and_bit_flips(data: st.DataObject) -> None:
    frames = list(data.draw(st.sampled_from(_GOOD_FRAMES)))
    i = data.draw(st.integers(0, len(frames) - 1))
    frame = bytearray(frames[i])
    if frame and data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] ^= 1 << data.draw(st.integers(0, 7))
    else:
        frame = frame[: data.draw(st.integers(0, len(frame)))]
    frames[i] = bytes(frame)
    _decode_or_reject(frames)


@FUZZ
@given(st.data())
def test_fuzz_single_part_truncations_and_bit_flips(data: st.DataObject) -> None:
    buf = bytearray(data.draw(st.sampled_from(_GOOD_SINGLE)))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    buf = buf[: data.draw(st.integers(0, len(buf)))]
    try:
        decode_single(bytes(buf))
    except BusDecodeError as err:
        assert err.reason in REASONS


@FUZZ
@given(
    header=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text(max_size=8)
        | st.binary(max_size=8),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5)
        ),
        max_leaves=20,
    ),
    kind=st.sampled_from([*MESSAGE_TYPES, "nope"]),
)
def test_fuzz_structured_headers(header: Any, kind: str) -> None:
    """Well-formed MessagePack with the right kind but random contents still only raises BusDecodeError."""
    if isinstance(header, dict):
        header = {"kind": kind, "env": msgspec.to_builtins(make_env()), **header}
    _decode_or_reject([b"t", msgspec.msgpack.encode(header), b"\x00" * 8])


@FUZZ
@given(
    dtype=st.sampled_from([*sorted(ALLOWED_DTYPES), "<f2", "<c8", "<U1", "|V4", "<M8[ns]"]),
    shape=st.lists(st.integers(-2, 5), max_size=10),
    nbytes=st.integers(-5, 300),
    frame_len=st.integers(0, 300),
)
def test_fuzz_array_descriptors(dtype: str, shape: list[int], nbytes: int, frame_len: int) -> None:
    frames = _with_header(_obs_frames(), _set_array(0, dtype=dtype, shape=shape, nbytes=nbytes))
    frames[2] = bytes(frame_len)
    _decode_or_reject(frames)


def test_fuzz_is_fast_enough_to_keep() -> None:
    # A guard for the per-message cost: decoding a 256-byte observation stays well under 50 us here.
    frames = _obs_frames(np.zeros(64, np.float32))
    t0 = time.perf_counter()
    for _ in range(2000):
        decode(frames)
    assert (time.perf_counter() - t0) / 2000 < 50e-6


def test_joint_kinds_enforce_their_shape_rules() -> None:
    bad = [
        msgspec.structs.replace(sample_joint_state(), joint_vel_radps=np.zeros(3)),
        msgspec.structs.replace(sample_joint_state(), quat_wxyz=np.zeros(3)),
        JointTarget(robot="q", q_target_rad=np.zeros(8), kp=np.zeros(7)),
        JointTarget(robot="q", q_target_rad=np.zeros(8), kd=np.full(8, -1.0)),
        msgspec.structs.replace(sample_command_sent(), clipped_step=np.zeros(2, np.bool_)),
    ]
    for msg in bad:
        with pytest.raises(ValueError):
            encode(b"t", make_env(), msg)


def test_joint_target_with_nan_is_rejected_on_receipt() -> None:
    msg = JointTarget(robot="q", q_target_rad=np.array([0.0, np.nan]))
    with pytest.raises(BusDecodeError) as err:
        decode_single(encode_single(b"", make_env(), msg))
    assert err.value.reason == "nan"


def test_finite_check_survives_warnings_as_errors() -> None:
    # 3e19^2 overflows float32 in the fast dot-product test; under `python -W error` that overflow is an
    # exception, and the exact element-wise test must still decide: finite -> True, NaN -> False.
    import warnings

    from robot_rl.bus.codec import _finite

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _finite(np.array([3e19, 1.0], np.float32))
        assert not _finite(np.array([3e19, np.nan], np.float32))
