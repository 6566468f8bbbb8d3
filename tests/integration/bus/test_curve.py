"""CURVE on tcp: unauthenticated and wrongly keyed clients are refused, the right key works; binding
a non-loopback address without keys is refused; loopback tcp and ipc work without keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from robot_rl.bus.commands import KeysGen
from robot_rl.bus.messages import Observation
from robot_rl.bus.security import ClientKeys, generate_keys, load_client_keys, load_server_keys
from robot_rl.bus.sockets import (
    BusContext,
    Receiver,
    Requester,
    Responder,
    Sender,
    make_pub,
    make_pull,
    make_push,
    make_router,
    make_sub,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keys")
    assert KeysGen(out=out).execute() == 0
    return out


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("other_keys")
    generate_keys(out)
    return out


class SecureServer:
    """A CURVE ROUTER responder on tcp loopback and a CURVE PULL, served from one thread."""

    def __init__(self, keys: Path) -> None:
        self.ctx = BusContext(server_keys=load_server_keys(keys))
        self.router = make_router(self.ctx, "tcp://127.0.0.1:*")
        self.pull = make_pull(self.ctx, "tcp://127.0.0.1:*")
        self.control = self.router.last_endpoint.decode()
        self.rollout = self.pull.last_endpoint.decode()
        self.pulled: list[Observation] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        responder = Responder(self.router, "learner")
        rx = Receiver(self.pull)
        while not self._stop.is_set():
            req = responder.recv_request(10)
            if req is not None:
                responder.reply(req[0], req[1], ok=True, payload={"state": "running"})
            got = rx.recv(10)
            if got is not None and isinstance(got.msg, Observation):
                self.pulled.append(got.msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.ctx.close()


@pytest.fixture
def server(keys: Path) -> Iterator[SecureServer]:
    s = SecureServer(keys)
    yield s
    s.close()


def _ask(ctx: BusContext, endpoint: str) -> tuple[bool, str]:
    req = Requester(ctx, endpoint, "client", timeout_s=0.3, attempts=2, backoff_initial_s=0.05)
    try:
        reply = req.request("status")
        return reply.ok, reply.error
    finally:
        req.close()


def test_client_with_the_right_keys_is_served(server: SecureServer, keys: Path) -> None:
    with BusContext(client_keys=load_client_keys(keys)) as ctx:
        ok, error = _ask(ctx, server.control)
        assert ok, error
        push = make_push(ctx, server.rollout)
        assert Sender(push, "sim/0").send(b"rollout", Observation(robot="r", obs=np.ones(3, np.float32)))
        deadline = time.monotonic() + 3
        while not server.pulled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.pulled) == 1


def test_client_without_keys_is_refused(server: SecureServer) -> None:
    with BusContext() as ctx:
        ok, error = _ask(ctx, server.control)
        assert not ok and error.startswith("timeout")
        push = make_push(ctx, server.rollout, send_timeout_ms=300)
        # libzmq queues the message locally (the pipe exists from connect), but the handshake is
        # refused, so it never reaches the server.
        tx = Sender(push, "intruder")
        for _ in range(5):
            tx.send(b"rollout", Observation(robot="r", obs=np.ones(3, np.float32)))
        time.sleep(0.5)
        assert server.pulled == []


def test_client_with_an_unauthorised_key_is_refused(
    server: SecureServer, keys: Path, other_keys: Path
) -> None:
    # A valid CURVE client key pair that the server has not authorised, with the right server key.
    wrong = load_client_keys(other_keys)
    right_server = load_client_keys(keys).server_public
    with BusContext(client_keys=ClientKeys(wrong.public, wrong.secret, right_server)) as ctx:
        ok, error = _ask(ctx, server.control)
        assert not ok and error.startswith("timeout")


def test_client_with_the_wrong_server_key_is_refused(server: SecureServer, other_keys: Path) -> None:
    with BusContext(client_keys=load_client_keys(other_keys)) as ctx:
        ok, _ = _ask(ctx, server.control)
        assert not ok


def test_curve_pub_sub_delivers_only_to_keyed_subscribers(keys: Path) -> None:
    with (
        BusContext(server_keys=load_server_keys(keys)) as server_ctx,
        BusContext(client_keys=load_client_keys(keys)) as good_ctx,
        BusContext() as bad_ctx,
    ):
        pub = make_pub(server_ctx, "tcp://127.0.0.1:*")
        endpoint = pub.last_endpoint.decode()
        good = Receiver(make_sub(good_ctx, endpoint))
        bad = Receiver(make_sub(bad_ctx, endpoint))
        tx = Sender(pub, "learner")
        deadline = time.monotonic() + 3
        got = None
        while got is None and time.monotonic() < deadline:
            tx.send(b"weights", Observation(robot="r", obs=np.ones(2, np.float32)))
            got = good.recv(20)
        assert got is not None
        for _ in range(10):
            tx.send(b"weights", Observation(robot="r", obs=np.ones(2, np.float32)))
        assert bad.recv(300) is None
        assert bad.counters["received/ok"] == 0


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://0.0.0.0:0", "tcp://*:5999", "tcp://10.1.2.3:5999", "tcp://eth0:5999", "tcp://[::]:5999"],
)
def test_binding_beyond_loopback_without_keys_raises(endpoint: str) -> None:
    with BusContext() as ctx, pytest.raises(ValueError, match="robot-rl keys gen") as info:
        make_pull(ctx, endpoint)
    assert endpoint in str(info.value)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:*", "tcp://localhost:*", "ipc://{tmp}/link"])
def test_loopback_and_ipc_work_without_keys(endpoint: str, tmp_path: Path) -> None:
    with BusContext() as ctx:
        pull = make_pull(ctx, endpoint.format(tmp=tmp_path))
        push = make_push(ctx, pull.last_endpoint.decode())
        assert Sender(push, "sim/0").send(b"rollout", Observation(robot="r", obs=np.ones(3, np.float32)))
        got = Receiver(pull).recv(2000)
        assert got is not None and got.env.sender == "sim/0"


def test_generated_secret_keys_are_private(keys: Path) -> None:
    for name in ("server.key_secret", "client.key_secret"):
        assert (keys / name).stat().st_mode & 0o777 == 0o600
    assert (keys / "authorized_clients" / "client.key").read_bytes() == (keys / "client.key").read_bytes()
    assert KeysGen(out=keys).execute() == 2  # refuses to overwrite
    assert zmq.has("curve")
