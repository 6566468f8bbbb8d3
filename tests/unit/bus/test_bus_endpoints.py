"""Topics, default endpoints, the bind rule, key generation and the liveness tracker (no sockets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robot_rl.bus.codec import Decoded
from robot_rl.bus.commands import KeysGen
from robot_rl.bus.messages import BUS_SCHEMA_VERSION, Envelope, Heartbeat, Observation
from robot_rl.bus.security import check_bind_allowed, is_loopback_endpoint, load_server_keys, tcp_host
from robot_rl.bus.sockets import LivenessTracker
from robot_rl.bus.topics import default_endpoints, heartbeat_topic, obs_topic


def test_topics() -> None:
    assert heartbeat_topic("sim/3") == b"heartbeat/sim/3"
    assert obs_topic("a1") == b"obs/a1"


def test_default_endpoints_per_transport(tmp_path: Path) -> None:
    ipc = default_endpoints("run7", "ipc", ipc_dir=tmp_path)
    assert ipc.weights == f"ipc://{tmp_path}/rrl-run7-weights"
    assert ipc.control(2) == f"ipc://{tmp_path}/rrl-run7-control-2"
    inproc = default_endpoints("run7", "inproc")
    assert inproc.rollout == "inproc://rrl-run7-rollout"
    tcp = default_endpoints("run7", "tcp", base_port=6000)
    assert (tcp.weights, tcp.rollout, tcp.telemetry, tcp.obs, tcp.command) == tuple(
        f"tcp://127.0.0.1:{p}" for p in (6000, 6001, 6002, 6003, 6004)
    )
    assert tcp.control(0) == "tcp://127.0.0.1:6010" and tcp.control(3) == "tcp://127.0.0.1:6013"
    assert default_endpoints("r", "tcp", host="::1").weights == "tcp://[::1]:5550"
    all_links = [ipc.weights, ipc.rollout, ipc.telemetry, ipc.obs, ipc.command, ipc.control(0)]
    assert len(set(all_links)) == len(all_links)


@pytest.mark.parametrize("bad", [{"run_id": "a b"}, {"run_id": ""}, {"run_id": "x", "transport": "udp"}])
def test_default_endpoints_rejects_bad_input(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        default_endpoints(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.8.0.1:5555", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///tmp/x", True),
        ("inproc://x", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://[::]:5555", False),
        ("tcp://192.168.1.5:5555", False),
        ("tcp://eth0:5555", False),
        ("tcp://robot.local:5555", False),
    ],
)
def test_loopback_classification(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback
    if loopback:
        check_bind_allowed(endpoint, None)
    else:
        with pytest.raises(ValueError, match="CURVE keys"):
            check_bind_allowed(endpoint, None)


def test_bind_allowed_with_keys(tmp_path: Path) -> None:
    assert KeysGen(out=tmp_path).execute() == 0
    check_bind_allowed("tcp://0.0.0.0:5555", load_server_keys(tmp_path))
    assert tcp_host("tcp://[fe80::1]:5") == "fe80::1" and tcp_host("ipc://x") is None


def test_keys_gen_force_replaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert KeysGen(out=tmp_path).execute() == 0
    first = (tmp_path / "server.key").read_bytes()
    assert KeysGen(out=tmp_path).execute() == 2
    assert "exists" in capsys.readouterr().err
    assert KeysGen(out=tmp_path, force=True).execute() == 0
    assert (tmp_path / "server.key").read_bytes() != first


def _beat(sender: str, interval_s: float) -> Decoded:
    env = Envelope(schema_version=BUS_SCHEMA_VERSION, seq=0, t_src_ns=0, t_pub_ns=0, sender=sender)
    return Decoded(b"heartbeat/" + sender.encode(), env, Heartbeat(state="running", interval_s=interval_s))


def test_liveness_tracker_three_missed_intervals() -> None:
    tracker = LivenessTracker()
    assert tracker.observe(_beat("a", 1.0), now=10.0)
    assert tracker.observe(_beat("b", 0.25), now=10.0)
    obs = Decoded(b"obs/x", _beat("c", 1.0).env, Observation(robot="x", obs=np.zeros(1, np.float32)))
    assert not tracker.observe(obs, now=10.0)
    assert not tracker.is_alive("never-seen", now=10.0)
    # Each peer is judged by its own interval: b (0.25 s) is dead after 0.75 s, a (1 s) after 3 s.
    assert tracker.dead(now=10.75) == []
    assert tracker.dead(now=10.76) == ["b"]
    assert tracker.is_alive("a", now=13.0) and not tracker.is_alive("a", now=13.01)
    assert tracker.dead(now=13.01) == ["a", "b"]
    tracker.observe(_beat("a", 1.0), now=13.5)  # a peer that comes back is alive again
    assert tracker.dead(now=13.5) == ["b"]
