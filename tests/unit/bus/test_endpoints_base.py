"""Base addresses: endpoints_from_base and base_address (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_rl.bus.topics import base_address, default_endpoints, endpoints_from_base


def test_ipc_base_gives_default_names(tmp_path: Path) -> None:
    ep = endpoints_from_base(f"ipc://{tmp_path}/rrl-run7")
    assert ep == default_endpoints("run7", "ipc", ipc_dir=tmp_path)
    assert ep.rollout == f"ipc://{tmp_path}/rrl-run7-rollout"
    assert ep.control(2) == f"ipc://{tmp_path}/rrl-run7-control-2"


def test_inproc_base_gives_default_names() -> None:
    ep = endpoints_from_base("inproc://rrl-abc")
    assert ep == default_endpoints("abc", "inproc")
    assert ep.weights == "inproc://rrl-abc-weights"


def test_tcp_base_port_layout() -> None:
    ep = endpoints_from_base("tcp://127.0.0.1:6000")
    assert ep == default_endpoints("x", "tcp", base_port=6000)
    # 6000 + offsets 0, 1, 2, 3, 4 and control 10 + i
    assert (ep.weights, ep.rollout, ep.telemetry, ep.obs, ep.command) == tuple(
        f"tcp://127.0.0.1:{p}" for p in (6000, 6001, 6002, 6003, 6004)
    )
    assert ep.control(1) == "tcp://127.0.0.1:6011"
    assert endpoints_from_base("tcp://[::1]:5550") == default_endpoints("x", "tcp", host="::1")


@pytest.mark.parametrize(
    "base",
    [
        "ipc:///tmp/rrl-a",
        "inproc://rrl-b",
        "tcp://127.0.0.1:5550",
        "tcp://localhost:7000",
        "tcp://[::1]:5550",
    ],
)
def test_base_address_round_trip(base: str) -> None:
    assert base_address(endpoints_from_base(base)) == base


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "udp://127.0.0.1:5550",
        "/tmp/rrl-a",
        "ipc://",
        "inproc://",
        "ipc:///tmp/dir/",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:80",
        "tcp://127.0.0.1:65500",
        "tcp://127.0.0.1:*",
        "tcp://::1:5550",
        "ipc:///" + "d" * 120 + "/rrl-a",
    ],
)
def test_bad_base_addresses_raise(bad: str) -> None:
    with pytest.raises(ValueError, match="base address"):
        endpoints_from_base(bad)


def test_base_address_rejects_hand_built_endpoints(tmp_path: Path) -> None:
    ep = default_endpoints("r", "ipc", ipc_dir=tmp_path)
    odd = type(ep)(**{**ep.__dict__, "rollout": f"ipc://{tmp_path}/elsewhere"})
    with pytest.raises(ValueError, match="layout"):
        base_address(odd)
