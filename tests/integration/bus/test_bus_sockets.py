"""Real sockets over ipc: garbage barrages against every bound socket kind, request timeouts, heartbeats."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from robot_rl.bus.codec import BusDecodeError, DecodeLimits, decode, encode, encode_single
from robot_rl.bus.messages import BUS_SCHEMA_VERSION, Envelope, Heartbeat, Observation, Status
from robot_rl.bus.sockets import (
    BusContext,
    Heartbeater,
    LivenessTracker,
    Receiver,
    Requester,
    Responder,
    Sender,
    make_conflate_sub,
    make_pull,
    make_router,
    make_sub,
)

pytestmark = pytest.mark.integration

LIMITS = DecodeLimits(max_array_bytes=64 << 10)  # the receivers here accept arrays up to 64 KiB


@pytest.fixture
def ctx() -> Iterator[BusContext]:
    with BusContext() as c:
        yield c


def _env(seq: int, version: int = BUS_SCHEMA_VERSION) -> Envelope:
    now = time.time_ns()
    return Envelope(schema_version=version, seq=seq, t_src_ns=now, t_pub_ns=now, sender="fuzzer")


def _obs(seq: int, obs: np.ndarray | None = None, version: int = BUS_SCHEMA_VERSION) -> list[bytes]:
    o = np.full(16, float(seq), np.float32) if obs is None else obs
    return [bytes(f) for f in encode(b"obs/r", _env(seq, version), Observation(robot="r", obs=o))]


def garbage_and_valid(n_valid: int, seed: int = 0) -> tuple[list[list[bytes]], Counter[str], int]:
    """A barrage: (messages, expected rejection counts, number of valid ones), valid ones interleaved.

    The expected reason of each crafted message is written out; for random bytes it is whatever the
    codec says (the point there is that the receiver survives and counts it).
    """
    rng = np.random.default_rng(seed)
    crafted: list[tuple[list[bytes], str]] = [
        (_obs(0, np.array([1.0, np.nan, 2.0], np.float32)), "nan"),
        (_obs(0, np.array([np.inf], np.float32)), "nan"),
        (_obs(0, version=BUS_SCHEMA_VERSION + 1), "bad_version"),
        (_obs(0, np.zeros(32 << 10, np.float32)), "oversized"),  # 128 KiB > 64 KiB limit
        (_obs(0)[:2], "bad_frames"),
        ([*_obs(0)[:2], _obs(0)[2][:-3]], "truncated"),
        ([b"obs/r", b"\xc1" + rng.bytes(40)], "bad_header"),
        ([b"obs/r"], "bad_frames"),
        (
            [b"obs/r", msgspec.msgpack.encode({"kind": "warp", "env": msgspec.to_builtins(_env(0))})],
            "unknown_kind",
        ),
    ]
    messages: list[list[bytes]] = []
    expected: Counter[str] = Counter()
    for frames, reason in crafted:
        messages.append(frames)
        expected[reason] += 1
    for _ in range(30):
        frames = [rng.bytes(int(rng.integers(0, 64))) for _ in range(int(rng.integers(1, 5)))]
        try:
            decode(frames, LIMITS)
        except BusDecodeError as err:
            expected[err.reason] += 1
            messages.append(frames)
    order = rng.permutation(len(messages))
    barrage: list[list[bytes]] = []
    seq = 1
    for i, j in enumerate(order):
        barrage.append(messages[j])
        if i % 3 == 0 and seq <= n_valid:
            barrage.append(_obs(seq))
            seq += 1
    while seq <= n_valid:
        barrage.append(_obs(seq))
        seq += 1
    return barrage, expected, n_valid


class ReceiverThread:
    """Runs ``Receiver.recv`` in a loop in its own thread, as a receiving process would."""

    def __init__(self, make: Callable[[], Receiver], on_message: Callable[[Receiver], None] | None = None):
        self._make = make
        self._on_message = on_message
        self.received: list[Observation | Status | Heartbeat] = []
        self.counters: dict[str, int] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            rx = self._make()
            self.counters = rx.counters
            self._ready.set()
            while not self._stop.is_set():
                got = rx.recv(20)
                if got is not None:
                    self.received.append(got.msg)  # type: ignore[arg-type]
                    if self._on_message is not None:
                        self._on_message(rx)
            rx.sock.close(linger=0)
        except BaseException as err:  # recorded so that the test fails with it, not a silent thread
            self.error = err
            self._ready.set()

    def __enter__(self) -> ReceiverThread:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_for(self, n_messages: int, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < n_messages and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.error is None, self.error
        assert len(self.received) >= n_messages, (len(self.received), self.counters)


def _rejections(counters: dict[str, int]) -> Counter[str]:
    return Counter(
        {k.removeprefix("rejected/"): v for k, v in counters.items() if k.startswith("rejected/") and v}
    )


@pytest.mark.parametrize("kind", ["sub", "pull", "router"])
def test_barrage_is_counted_and_valid_traffic_continues(ctx: BusContext, tmp_path: Path, kind: str) -> None:
    endpoint = f"ipc://{tmp_path}/{kind}"
    n_valid = 20
    barrage, expected, _ = garbage_and_valid(n_valid, seed=len(kind))
    assert {"nan", "bad_version", "oversized", "truncated", "bad_frames", "bad_header"} <= set(expected)

    def make() -> Receiver:
        if kind == "sub":
            return Receiver(make_sub(ctx, endpoint, bind=True), limits=LIMITS)
        if kind == "pull":
            return Receiver(make_pull(ctx, endpoint), limits=LIMITS)
        return Receiver(make_router(ctx, endpoint), router=True, limits=LIMITS)

    peer_type = {"sub": zmq.PUB, "pull": zmq.PUSH, "router": zmq.DEALER}[kind]
    with ReceiverThread(make) as rt:
        peer = ctx.zmq.socket(peer_type)
        peer.linger = 0
        peer.connect(endpoint)
        if kind == "sub":
            # PUB drops until the subscription has reached it (slow joiner): send a probe until one lands.
            deadline = time.monotonic() + 5
            while not rt.received and time.monotonic() < deadline:
                peer.send_multipart(_obs(0))
                time.sleep(0.01)
            rt.wait_for(1)
        base = len(rt.received)
        base_rejects = _rejections(rt.counters)
        for frames in barrage:
            peer.send_multipart(frames)
        rt.wait_for(base + n_valid)
        time.sleep(0.05)  # let any trailing garbage be counted
        assert rt.alive and rt.error is None
        got = rt.received[base:]
        assert [float(m.obs[0]) for m in got] == [float(s) for s in range(1, n_valid + 1)]  # type: ignore[union-attr]
        assert _rejections(rt.counters) - base_rejects == expected
        peer.close(linger=0)


def test_conflate_single_part_link_survives_garbage(ctx: BusContext, tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/cmd"
    good = encode_single(b"", _env(1), Observation(robot="r", obs=np.ones(4, np.float32)))
    nan = encode_single(b"", _env(2), Observation(robot="r", obs=np.array([np.nan], np.float32)))
    cases: list[tuple[bytes, str | None]] = [
        (b"\x00" * 3, "truncated"),
        (b"JUNK" + good[4:], "bad_magic"),
        (good[:-2], "truncated"),
        (nan, "nan"),
        (good[:4] + (BUS_SCHEMA_VERSION + 1).to_bytes(2, "little") + good[6:], "bad_version"),
        (good, None),
    ]
    with ReceiverThread(lambda: Receiver(make_conflate_sub(ctx, endpoint), single_part=True)) as rt:
        pub = ctx.zmq.socket(zmq.PUB)
        pub.linger = 0
        pub.connect(endpoint)
        deadline = time.monotonic() + 5
        while not rt.received and time.monotonic() < deadline:
            pub.send(good)
            time.sleep(0.01)
        rt.wait_for(1)
        for data, reason in cases:
            # CONFLATE keeps only the latest message, so the barrage goes one message at a time.
            before_ok, before_rej = len(rt.received), _rejections(rt.counters)
            pub.send(data)
            deadline = time.monotonic() + 2
            while (
                len(rt.received) == before_ok
                and _rejections(rt.counters) == before_rej
                and time.monotonic() < deadline
            ):
                time.sleep(0.002)
            if reason is None:
                assert len(rt.received) == before_ok + 1
            else:
                assert _rejections(rt.counters) - before_rej == Counter({reason: 1})
        assert rt.alive and rt.error is None
        pub.close(linger=0)
    last = rt.received[-1]
    assert isinstance(last, Observation) and last.obs.tolist() == [1.0] * 4


def test_sender_seq_and_receiver_gap_count(ctx: BusContext, tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/pull"
    pull = make_pull(ctx, endpoint)
    push = ctx.socket(zmq.PUSH, endpoint, bind=False)
    tx = Sender(push, "worker/0")
    rx = Receiver(pull)
    envs = [tx.send(b"status", Status(state="running")) for _ in range(3)]
    assert [e.seq for e in envs if e is not None] == [0, 1, 2]
    for _ in range(3):
        assert rx.recv(1000) is not None
    # A message the receiver never sees (seq 3 skipped) shows up as a gap.
    tx.seq[b"status"] += 1
    tx.send(b"status", Status(state="running"))
    got = rx.recv(1000)
    assert got is not None and got.env.seq == 4
    assert rx.counters["received/gap"] == 1 and rx.counters["received/ok"] == 4


# ------------------------------------------------------------------------------ request / reply


class ResponderThread:
    """A ROUTER responder that answers status requests until stopped; its socket closes on stop."""

    def __init__(self, ctx: BusContext, endpoint: str, start_delay_s: float = 0.0) -> None:
        self.ctx, self.endpoint, self.start_delay_s = ctx, endpoint, start_delay_s
        self.served = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        time.sleep(self.start_delay_s)
        responder = Responder(make_router(self.ctx, self.endpoint), "worker/1")
        while not self._stop.is_set():
            req = responder.recv_request(20)
            if req is None:
                continue
            identity, env, request = req
            if request.command == "seed":
                responder.reply(identity, env, ok=True, payload={"seed": request.args.get("seed", -1)})
            else:
                responder.reply(identity, env, ok=False, error=f"unsupported: {request.command}")
            self.served += 1
        responder.receiver.sock.close(linger=0)

    def start(self) -> ResponderThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_request_reply_then_timeout_when_responder_is_gone(ctx: BusContext, tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/control"
    server = ResponderThread(ctx, endpoint).start()
    req = Requester(ctx, endpoint, "launcher", timeout_s=0.5, attempts=3, backoff_initial_s=0.05)
    try:
        reply = req.request("seed", {"seed": 7})
        assert reply.ok and reply.payload == {"seed": 7}
        assert not req.request("reset").ok  # an error reply is delivered, not a timeout
        server.stop()
        req.timeout_s = 0.2
        t0 = time.monotonic()
        reply = req.request("status")
        elapsed = time.monotonic() - t0
        assert not reply.ok and reply.error.startswith("timeout")
        # 3 attempts of 0.2 s plus back-off 0.05 + 0.1 s; never blocked beyond that.
        assert 0.6 <= elapsed < 1.5
        assert req.counters["request/failed"] == 1 and req.counters["request/retry"] == 2
        assert req.backoff_s == pytest.approx(0.2)  # doubled per retry, reset only by a reply
    finally:
        req.close()
        server.stop()


def test_requester_retries_until_a_late_responder_answers(ctx: BusContext, tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/late"
    server = ResponderThread(ctx, endpoint, start_delay_s=0.35).start()
    req = Requester(ctx, endpoint, "launcher", timeout_s=0.2, attempts=5, backoff_initial_s=0.05)
    try:
        reply = req.request("seed", {"seed": 3})
        assert reply.ok and reply.payload["seed"] == 3
        assert req.counters["request/retry"] >= 1
        assert req.backoff_s == 0.05  # reset by the reply
    finally:
        req.close()
        server.stop()


# ------------------------------------------------------------------------------------ heartbeats


def test_liveness_detects_a_dead_peer_within_three_intervals(ctx: BusContext, tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/telemetry"
    interval = 0.1
    sub = make_sub(ctx, endpoint, topics=[b"heartbeat/"], bind=True)
    rx = Receiver(sub)
    tracker = LivenessTracker()
    stop = threading.Event()

    def worker() -> None:
        pub = ctx.socket(zmq.PUB, endpoint, bind=False)
        beat = Heartbeater(Sender(pub, "sim/0"), interval_s=interval)
        while not stop.is_set():
            beat.tick("running", {"steps": 1})
            time.sleep(0.005)
        pub.close(linger=0)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    t_end = time.monotonic() + 1.0
    last_beat = 0.0
    while time.monotonic() < t_end:
        got = rx.recv(20)
        if got is not None and tracker.observe(got):
            last_beat = time.monotonic()
    assert tracker.is_alive("sim/0") and tracker.states() == {"sim/0": "running"}
    assert rx.counters["received/ok"] >= 5
    stop.set()  # the peer dies
    thread.join(5)
    while not tracker.dead():
        got = rx.recv(10)
        if got is not None and tracker.observe(got):
            last_beat = time.monotonic()
        assert time.monotonic() - last_beat < 10 * interval, "dead peer not detected"
    detected_after = time.monotonic() - last_beat
    assert tracker.dead() == ["sim/0"]
    assert 3 * interval <= detected_after <= 3 * interval + 0.2  # + scheduling slack on a loaded machine


def test_heartbeater_tick_respects_the_interval() -> None:
    class FakeSender:
        sender = "x"

        def __init__(self) -> None:
            self.sent: list[Heartbeat] = []

        def send(self, topic: bytes, msg: Heartbeat) -> object:
            self.sent.append(msg)
            return object()

    fake = FakeSender()
    beat = Heartbeater(fake, interval_s=1.0)  # type: ignore[arg-type]
    assert [beat.tick(now=t) for t in (0.0, 0.5, 0.99, 1.0, 1.5, 2.2)] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    assert beat.topic == b"heartbeat/x" and len(fake.sent) == 3
