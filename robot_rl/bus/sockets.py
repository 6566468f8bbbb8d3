"""Sockets and endpoints of the bus: every socket with LINGER=0, explicit high-water marks and timeouts.

Layers:

- :class:`BusContext` owns the ZeroMQ context, the CURVE keys and the ZAP authenticator, and makes
  sockets (``make_pub``, ``make_sub``, ...): it refuses to bind a non-loopback tcp address without
  server keys (security.check_bind_allowed).
- :class:`Sender` / :class:`Receiver` stamp and check envelopes around the pure codec. A receiver
  never raises on bad input: each rejected message is counted in ``counters["rejected/<reason>"]``
  and the receiver goes on waiting for a valid one until its timeout.
- :class:`Requester` / :class:`Responder`: request-reply over DEALER/ROUTER with a timeout on every
  wait, retries and reconnect back-off (the Paranoid Pirate numbers: liveness 3, interval 1 s,
  back-off 1 -> 32 s); :class:`Heartbeater` / :class:`LivenessTracker`: heartbeats and dead-peer
  detection after 3 missed intervals.

Nothing here blocks forever: every receive has a timeout and every send on a socket that can block
(PUSH, DEALER at its high-water mark) has a send timeout.

Sockets are not thread-safe: each socket, and the Sender/Receiver wrapping it, belongs to one thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeAlias

import zmq
from zmq.auth.thread import ThreadAuthenticator

from robot_rl.bus.codec import (
    DEFAULT_LIMITS,
    BusDecodeError,
    Decoded,
    DecodeLimits,
    decode,
    decode_single,
    encode,
    encode_single,
)
from robot_rl.bus.messages import (
    BUS_SCHEMA_VERSION,
    Command,
    Envelope,
    Heartbeat,
    Message,
    Reply,
    Request,
    Scalar,
)
from robot_rl.bus.security import (
    ClientKeys,
    ServerKeys,
    apply_client_keys,
    apply_server_keys,
    check_bind_allowed,
    start_authenticator,
)
from robot_rl.bus.topics import CONTROL, heartbeat_topic

Socket: TypeAlias = zmq.Socket[bytes]

DEFAULT_SNDHWM = 1000
"""Messages queued per peer before PUB drops / PUSH and DEALER block. libzmq's default, kept for
sensor and telemetry links; pass a small value (1-10) for links where only fresh data matters."""
DEFAULT_RCVHWM = 1000
"""Messages queued on the receiving side per peer before back-pressure reaches the sender."""
DEFAULT_SEND_TIMEOUT_MS = 1000
"""How long a send on a blocking socket type (PUSH, DEALER) waits at the high-water mark."""
HEARTBEAT_INTERVAL_S = 1.0
"""Paranoid Pirate heartbeat interval."""
HEARTBEAT_LIVENESS = 3
"""Missed heartbeats after which a peer is considered dead."""
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 32.0


def _is_tcp(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


class BusContext:
    """A ZeroMQ context plus the keys that secure its tcp sockets.

    Args:
        server_keys: applied to every tcp socket this context *binds* (CURVE server); a ZAP
            authenticator admitting only ``server_keys.authorized_dir`` starts with the first one.
        client_keys: applied to every tcp socket this context *connects* (CURVE client).
        io_threads: libzmq I/O threads (1 is enough below ~1 GB/s).

    Use as a context manager, or call :meth:`close`: it closes the sockets it made (LINGER=0, so
    unsent messages are dropped at once), stops the authenticator and terminates the context.
    """

    def __init__(
        self,
        *,
        server_keys: ServerKeys | None = None,
        client_keys: ClientKeys | None = None,
        io_threads: int = 1,
    ) -> None:
        self.zmq: zmq.Context[Socket] = zmq.Context(io_threads)
        self.zmq.linger = 0
        self.server_keys = server_keys
        self.client_keys = client_keys
        self._auth: ThreadAuthenticator | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> BusContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every socket, stop the authenticator, terminate the context. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._auth is not None:
            self._auth.stop()
        self.zmq.destroy(linger=0)

    def socket(
        self,
        kind: int,
        endpoint: str,
        *,
        bind: bool,
        sndhwm: int = DEFAULT_SNDHWM,
        rcvhwm: int = DEFAULT_RCVHWM,
        send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS,
        options: Mapping[int, int | bytes] | None = None,
    ) -> Socket:
        """A socket of ``kind`` (``zmq.PUB`` ...) bound or connected to ``endpoint``.

        Options are set before bind/connect (HWMs and CONFLATE only take effect then). Binding a
        non-loopback tcp address without server keys raises ValueError.
        """
        if bind:
            check_bind_allowed(endpoint, self.server_keys)
        sock = self.zmq.socket(kind)
        try:
            sock.linger = 0
            sock.sndhwm = sndhwm
            sock.rcvhwm = rcvhwm
            sock.sndtimeo = send_timeout_ms
            for opt, value in (options or {}).items():
                sock.setsockopt(opt, value)
            if _is_tcp(endpoint) and bind and self.server_keys is not None:
                self._ensure_authenticator(self.server_keys)
                apply_server_keys(sock, self.server_keys)
            elif _is_tcp(endpoint) and not bind and self.client_keys is not None:
                apply_client_keys(sock, self.client_keys)
            if bind:
                sock.bind(endpoint)
            else:
                sock.connect(endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        return sock

    def _ensure_authenticator(self, keys: ServerKeys) -> None:
        with self._lock:
            if self._auth is None:
                self._auth = start_authenticator(self.zmq, keys)


def make_pub(ctx: BusContext, endpoint: str, *, bind: bool = True, sndhwm: int = DEFAULT_SNDHWM) -> Socket:
    """PUB (sensors, weights, telemetry). Drops messages for a subscriber whose queue is full."""
    return ctx.socket(zmq.PUB, endpoint, bind=bind, sndhwm=sndhwm)


def make_sub(
    ctx: BusContext,
    endpoint: str,
    *,
    topics: Iterable[bytes] = (b"",),
    bind: bool = False,
    rcvhwm: int = DEFAULT_RCVHWM,
) -> Socket:
    """SUB subscribed to each prefix in ``topics`` (``b""`` = everything)."""
    opts: dict[int, int | bytes] = {}
    sock = ctx.socket(zmq.SUB, endpoint, bind=bind, rcvhwm=rcvhwm, options=opts)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    return sock


def make_conflate_sub(ctx: BusContext, endpoint: str, *, bind: bool = True, topic: bytes = b"") -> Socket:
    """SUB with CONFLATE: keeps only the latest message. Carries single-part messages only
    (libzmq drops multipart ones on a CONFLATE socket), so pair it with ``Sender(single_part=True)``.
    One topic per socket: conflation keeps the last message whatever its topic."""
    sock = ctx.socket(zmq.SUB, endpoint, bind=bind, rcvhwm=1, options={zmq.CONFLATE: 1})
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    return sock


def make_push(
    ctx: BusContext,
    endpoint: str,
    *,
    bind: bool = False,
    sndhwm: int = DEFAULT_SNDHWM,
    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS,
) -> Socket:
    """PUSH (rollouts): at the high-water mark a send waits up to ``send_timeout_ms`` (back-pressure)."""
    return ctx.socket(zmq.PUSH, endpoint, bind=bind, sndhwm=sndhwm, send_timeout_ms=send_timeout_ms)


def make_pull(ctx: BusContext, endpoint: str, *, bind: bool = True, rcvhwm: int = DEFAULT_RCVHWM) -> Socket:
    """PULL (rollouts at the learner)."""
    return ctx.socket(zmq.PULL, endpoint, bind=bind, rcvhwm=rcvhwm)


def make_router(ctx: BusContext, endpoint: str, *, bind: bool = True) -> Socket:
    """ROUTER (the responder of control requests). ROUTER_MANDATORY makes a reply to a peer that
    has gone raise instead of vanishing silently, so the responder can count it."""
    return ctx.socket(zmq.ROUTER, endpoint, bind=bind, options={zmq.ROUTER_MANDATORY: 1})


def make_dealer(
    ctx: BusContext, endpoint: str, *, bind: bool = False, send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS
) -> Socket:
    """DEALER (the requester of control requests)."""
    return ctx.socket(zmq.DEALER, endpoint, bind=bind, send_timeout_ms=send_timeout_ms)


def make_pair(ctx: BusContext, endpoint: str, *, bind: bool) -> Socket:
    """PAIR (one-to-one links, used by the benchmark)."""
    return ctx.socket(zmq.PAIR, endpoint, bind=bind)


# ------------------------------------------------------------------------------ sender / receiver

_SNDMORE = int(zmq.SNDMORE)  # a plain int: or-ing pyzmq's enum flags costs ~1 us per message
_COPY_BELOW = zmq.COPY_THRESHOLD


def send_frames(sock: Socket, frames: list[bytes | memoryview], prefix: bytes | None = None) -> None:
    """Send a multipart message (optionally after a ROUTER identity ``prefix``).

    Small frames are copied into libzmq messages, which is cheaper than pinning Python buffers;
    frames of 64 KiB and more are sent zero-copy. libzmq applies the high-water mark to the first
    part only, so a send timeout (zmq.Again) can only happen before anything was queued.
    About 2x faster than ``send_multipart`` for a 3-frame message (no enum arithmetic per part).
    """
    if prefix is not None:
        sock.send(prefix, _SNDMORE)
    last = len(frames) - 1
    send = sock.send
    for i in range(last):
        frame = frames[i]
        if len(frame) < _COPY_BELOW:
            send(frame, _SNDMORE)
        else:
            send(frame, _SNDMORE, copy=False)
    frame = frames[last]
    if len(frame) < _COPY_BELOW:
        send(frame, 0)
    else:
        send(frame, 0, copy=False)


def recv_frames(sock: Socket) -> list[bytes | memoryview]:
    """Receive one multipart message (blocking per the socket's RCVTIMEO; zmq.Again on timeout).

    The first frame (topic or ROUTER identity) comes back as bytes, the rest as zero-copy
    memoryviews of libzmq's buffers (they keep their frame alive).
    """
    frame = sock.recv(0, copy=False)
    out: list[bytes | memoryview] = [frame.bytes]
    while frame.more:
        frame = sock.recv(0, copy=False)
        out.append(frame.buffer)
    return out


class Sender:
    """Stamps envelopes and sends messages on one socket (PUB, PUSH, PAIR, DEALER).

    ``seq`` counts per topic the messages the socket accepted, from 0. ``t_pub_ns`` is taken just
    before the send; ``t_src_ns`` defaults to it. ``single_part=True`` uses the one-frame layout
    that CONFLATE sockets need.
    """

    def __init__(self, sock: Socket, sender: str, *, single_part: bool = False) -> None:
        if not sender or len(sender) > 128:
            raise ValueError(f"sender id must be 1-128 characters, got {sender!r}")
        self.sock = sock
        self.sender = sender
        self.single_part = single_part
        self.seq: dict[bytes, int] = {}
        self.counters: dict[str, int] = {"sent/ok": 0, "sent/timeout": 0}

    def stamp(self, topic: bytes, *, t_src_ns: int | None = None, valid: bool = True) -> Envelope:
        """The envelope the next message on ``topic`` gets (does not advance ``seq``)."""
        now = time.time_ns()
        return Envelope(
            schema_version=BUS_SCHEMA_VERSION,
            seq=self.seq.get(topic, 0),
            t_src_ns=now if t_src_ns is None else t_src_ns,
            t_pub_ns=now,
            sender=self.sender,
            valid=valid,
        )

    def send(
        self, topic: bytes, msg: Message, *, t_src_ns: int | None = None, valid: bool = True
    ) -> Envelope | None:
        """Encode and send; returns the envelope sent, or None if the socket would not take the
        message within its send timeout (PUSH/DEALER at the high-water mark; counted
        ``sent/timeout``). PUB never blocks: libzmq drops for slow subscribers, seen as ``seq`` gaps.
        """
        env = self.stamp(topic, t_src_ns=t_src_ns, valid=valid)
        try:
            if self.single_part:
                self.sock.send(encode_single(topic, env, msg), copy=True)
            else:
                send_frames(self.sock, encode(topic, env, msg))
        except zmq.Again:
            self.counters["sent/timeout"] += 1
            return None
        self.seq[topic] = env.seq + 1
        self.counters["sent/ok"] += 1
        return env


class Receiver:
    """Receives, validates and counts messages on one socket (SUB, PULL, PAIR, DEALER, ROUTER).

    ``counters`` holds ``received/ok``, ``rejected/<reason>`` (codec.REASONS) and ``received/gap``
    (messages missed according to ``seq``, per sender and topic). ``router=True`` expects and strips
    the identity frame a ROUTER socket prepends; :attr:`last_identity` is the peer's identity.
    """

    def __init__(
        self,
        sock: Socket,
        *,
        single_part: bool = False,
        router: bool = False,
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        self.sock = sock
        self.single_part = single_part
        self.router = router
        self.limits = limits
        self.counters: dict[str, int] = {"received/ok": 0, "received/gap": 0}
        self.last_error: BusDecodeError | None = None
        self.last_identity: bytes = b""
        self._last_seq: dict[tuple[str, bytes], int] = {}
        self._rcvtimeo = -2  # not a valid libzmq value, so the first recv sets it

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def recv(self, timeout_ms: int) -> Decoded | None:
        """The next valid message, or None if none arrived within ``timeout_ms`` (0 = poll once).

        Invalid messages are counted and skipped; they do not reset the timeout.
        """
        t0 = time.monotonic()
        remaining = max(0, timeout_ms)
        while True:
            if remaining != self._rcvtimeo:
                # RCVTIMEO on a blocking recv is one libzmq call where poll + NOBLOCK recv is two.
                self.sock.rcvtimeo = remaining
                self._rcvtimeo = remaining
            try:
                frames = recv_frames(self.sock)
            except zmq.Again:
                return None
            decoded = self._decode(frames)
            if decoded is not None:
                return decoded
            if remaining == 0:
                return None
            # A rejected message does not extend the wait: only the time left is waited for next.
            remaining = max(0, int(timeout_ms - (time.monotonic() - t0) * 1000.0 + 0.999))

    def _decode(self, frames: list[bytes | memoryview]) -> Decoded | None:
        try:
            if self.router:
                self.last_identity = bytes(frames[0])
                frames = frames[1:]
                if frames:
                    # The topic frame must be bytes like the first frame of a plain receive.
                    frames[0] = bytes(frames[0])
            if self.single_part:
                if len(frames) != 1:
                    raise BusDecodeError("bad_frames", f"{len(frames)} frames on a single-part link")
                decoded = decode_single(frames[0], self.limits)
            else:
                decoded = decode(frames, self.limits)
        except BusDecodeError as err:
            self.last_error = err
            self._count("rejected/" + err.reason)
            return None
        key = (decoded.env.sender, decoded.topic)
        last = self._last_seq.get(key)
        seq = decoded.env.seq
        if last is not None and seq > last + 1:
            self.counters["received/gap"] += seq - last - 1
        self._last_seq[key] = seq
        self.counters["received/ok"] += 1
        return decoded

    def drain_latest(self, timeout_ms: int) -> Decoded | None:
        """Wait up to ``timeout_ms`` for one message, then return the newest one queued (weights
        links: a worker wants only the latest snapshot, and multipart messages cannot CONFLATE)."""
        latest = self.recv(timeout_ms)
        while latest is not None:
            newer = self.recv(0)
            if newer is None:
                break
            latest = newer
        return latest


# ----------------------------------------------------------------------------- request / reply


class Responder:
    """Serves :class:`Request` messages on a bound ROUTER socket.

    ``recv_request`` returns ``(identity, envelope, request)``; answer with :meth:`reply`. Messages
    of another kind are counted as ``rejected/unexpected_kind``.
    """

    def __init__(self, sock: Socket, sender: str, *, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
        self.receiver = Receiver(sock, router=True, limits=limits)
        self.sender = Sender(sock, sender)
        self.counters = self.receiver.counters

    def rejections(self, prefix: str = "control/") -> dict[str, int]:
        """Non-zero ``rejected/<reason>`` counts of this socket, keys prefixed (for heartbeats)."""
        return {prefix + k: v for k, v in self.counters.items() if k.startswith("rejected/") and v}

    def recv_request(self, timeout_ms: int) -> tuple[bytes, Envelope, Request] | None:
        """The next valid request within ``timeout_ms``, or None."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            decoded = self.receiver.recv(max(0, int((deadline - time.monotonic()) * 1000.0)))
            if decoded is None:
                return None
            if isinstance(decoded.msg, Request):
                return self.receiver.last_identity, decoded.env, decoded.msg
            self.counters["rejected/unexpected_kind"] = self.counters.get("rejected/unexpected_kind", 0) + 1

    def reply(
        self,
        identity: bytes,
        request_env: Envelope,
        *,
        ok: bool,
        error: str = "",
        payload: Mapping[str, Scalar] | None = None,
    ) -> bool:
        """Send the reply to ``request_env``; False if the peer is gone (counted ``sent/unroutable``)."""
        msg = Reply(request_seq=request_env.seq, ok=ok, error=error, payload=dict(payload or {}))
        env = self.sender.stamp(CONTROL)
        try:
            send_frames(self.sender.sock, encode(CONTROL, env, msg), prefix=identity)
        except (zmq.Again, zmq.ZMQError):
            # EHOSTUNREACH (ROUTER_MANDATORY) or a full queue: the requester will time out and retry.
            self.sender.counters["sent/unroutable"] = self.sender.counters.get("sent/unroutable", 0) + 1
            return False
        self.sender.seq[CONTROL] = env.seq + 1
        self.sender.counters["sent/ok"] += 1
        return True


class Requester:
    """Request-reply client over DEALER that never blocks forever (Lazy/Paranoid Pirate).

    Each attempt waits ``timeout_s`` for the reply; on timeout the socket is closed and reopened
    (dropping queued requests and stale connections), the requester sleeps the current back-off
    (``backoff_initial_s``, doubling up to ``backoff_max_s``; reset by any reply) and retries, up to
    ``attempts`` attempts in all. It then returns ``Reply(ok=False, error="timeout: ...")``.
    Replies to earlier attempts are recognised by ``request_seq`` and dropped (``rejected/stale``).
    """

    def __init__(
        self,
        ctx: BusContext,
        endpoint: str,
        sender: str,
        *,
        timeout_s: float = HEARTBEAT_INTERVAL_S,
        attempts: int = HEARTBEAT_LIVENESS,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        if attempts < 1 or timeout_s <= 0 or backoff_initial_s < 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need attempts >= 1, timeout_s > 0, 0 <= backoff_initial_s <= backoff_max_s")
        self.ctx = ctx
        self.endpoint = endpoint
        self.sender_id = sender
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.backoff_s = backoff_initial_s
        self.limits = limits
        self.counters: dict[str, int] = {"request/ok": 0, "request/retry": 0, "request/failed": 0}
        self._seq = 0
        self._open()

    def _open(self) -> None:
        self.sock = make_dealer(self.ctx, self.endpoint, send_timeout_ms=int(self.timeout_s * 1000))
        self._sender = Sender(self.sock, self.sender_id)
        self._sender.seq[CONTROL] = self._seq
        self._receiver = Receiver(self.sock, limits=self.limits)

    def close(self) -> None:
        """Close the socket (LINGER=0)."""
        self.sock.close(linger=0)

    def request(self, command: Command, args: Mapping[str, Scalar] | None = None) -> Reply:
        """Send ``command`` and return the reply, or an ``ok=False`` reply after all attempts failed."""
        msg = Request(command=command, args=dict(args or {}))
        for attempt in range(self.attempts):
            env = self._sender.send(CONTROL, msg)
            self._seq = self._sender.seq.get(CONTROL, self._seq)
            if env is not None:
                reply = self._await_reply(env.seq)
                if reply is not None:
                    self.backoff_s = self.backoff_initial_s
                    self.counters["request/ok"] += 1
                    return reply
            if attempt + 1 < self.attempts:
                self.counters["request/retry"] += 1
                self.close()
                time.sleep(self.backoff_s)
                self.backoff_s = min(self.backoff_s * 2.0, self.backoff_max_s)
                self._open()
        self.counters["request/failed"] += 1
        return Reply(
            request_seq=-1,
            ok=False,
            error=f"timeout: no reply to {command!r} from {self.endpoint} after {self.attempts} attempts "
            f"of {self.timeout_s:g} s",
        )

    def _await_reply(self, seq: int) -> Reply | None:
        deadline = time.monotonic() + self.timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            decoded = self._receiver.recv(int(remaining * 1000.0) + 1)
            if decoded is None:
                return None
            if isinstance(decoded.msg, Reply) and decoded.msg.request_seq == seq:
                return decoded.msg
            self.counters["rejected/stale"] = self.counters.get("rejected/stale", 0) + 1
        return None


# ----------------------------------------------------------------------------------- heartbeats


class Heartbeater:
    """Publishes a :class:`Heartbeat` on ``heartbeat/<sender>`` every ``interval_s``.

    Call :meth:`tick` from the process's main loop, not from a thread of its own: a heartbeat then
    proves the loop is making progress, and a loop stuck in a long call is reported dead, which a
    background heartbeat thread would hide.
    """

    def __init__(self, sender: Sender, *, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.sender = sender
        self.interval_s = interval_s
        self.topic = heartbeat_topic(sender.sender)
        self._next = 0.0

    def tick(
        self, state: str = "running", counters: Mapping[str, int] | None = None, *, now: float | None = None
    ) -> bool:
        """Send a heartbeat if one is due (monotonic ``now``, seconds); True if one was sent."""
        t = time.monotonic() if now is None else now
        if t < self._next:
            return False
        self._next = t + self.interval_s
        hb = Heartbeat(state=state, interval_s=self.interval_s, counters=dict(counters or {}))
        return self.sender.send(self.topic, hb) is not None


class LivenessTracker:
    """Tracks peers by their heartbeats on the receiver's monotonic clock.

    A peer is dead when ``liveness`` of its own heartbeat intervals pass without one (Paranoid
    Pirate: 3 x 1 s). Times are ``time.monotonic()`` seconds, taken on receipt, so clock offsets
    between hosts do not matter.
    """

    def __init__(self, *, liveness: int = HEARTBEAT_LIVENESS) -> None:
        if liveness < 1:
            raise ValueError(f"liveness must be >= 1, got {liveness}")
        self.liveness = liveness
        self._last: dict[str, tuple[float, float, str]] = {}  # sender -> (t_seen, interval_s, state)

    def observe(self, decoded: Decoded, *, now: float | None = None) -> bool:
        """Record a received message if it is a heartbeat; True if it was."""
        if not isinstance(decoded.msg, Heartbeat):
            return False
        t = time.monotonic() if now is None else now
        self._last[decoded.env.sender] = (t, decoded.msg.interval_s, decoded.msg.state)
        return True

    def is_alive(self, sender: str, *, now: float | None = None) -> bool:
        """True if ``sender`` beat within its last ``liveness`` intervals (False if never seen)."""
        entry = self._last.get(sender)
        if entry is None:
            return False
        t = time.monotonic() if now is None else now
        return t - entry[0] <= self.liveness * entry[1]

    def dead(self, *, now: float | None = None) -> list[str]:
        """Peers seen before that have since missed ``liveness`` intervals, sorted."""
        t = time.monotonic() if now is None else now
        return sorted(s for s in self._last if not self.is_alive(s, now=t))

    def states(self) -> dict[str, str]:
        """The last reported state of every peer seen."""
        return {s: entry[2] for s, entry in self._last.items()}


@contextlib.contextmanager
def bus_context(**kwargs: Any) -> Iterator[BusContext]:
    """``with bus_context() as ctx:`` -- a :class:`BusContext` closed on exit."""
    ctx = BusContext(**kwargs)
    try:
        yield ctx
    finally:
        ctx.close()
