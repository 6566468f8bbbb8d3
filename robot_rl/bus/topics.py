"""Topic names (frame 0 of every message) and the default bus addresses of a run.

PUB/SUB filtering is a byte *prefix* match on frame 0: subscribing to ``b"heartbeat/"`` receives
every heartbeat, and subscribing to ``b"obs/a1"`` would also receive ``b"obs/a10"``, so a
subscriber that needs one exact robot compares ``Decoded.topic`` after decoding.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Literal

WEIGHTS = b"weights"
"""PolicyWeights, learner -> sim workers and deploy (PUB/SUB)."""
ROLLOUT = b"rollout"
"""RolloutChunk, sim workers -> learner (PUSH/PULL)."""
STATUS = b"status"
"""Status, any process -> launcher (PUB/SUB on the telemetry endpoint)."""
HEARTBEAT_PREFIX = b"heartbeat/"
"""Heartbeat, ``heartbeat/<sender>``, any process -> launcher (PUB/SUB on the telemetry endpoint)."""
OBS_PREFIX = b"obs/"
"""Observation, ``obs/<robot>``, bridge or sim -> policy (PUB/SUB)."""
CONTROL = b"control"
"""Request and Reply (DEALER -> ROUTER)."""

Transport = Literal["ipc", "inproc", "tcp"]
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def heartbeat_topic(sender: str) -> bytes:
    """``b"heartbeat/<sender>"``."""
    return HEARTBEAT_PREFIX + sender.encode()


def obs_topic(robot: str) -> bytes:
    """``b"obs/<robot>"``."""
    return OBS_PREFIX + robot.encode()


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """The addresses of one run's links; who binds each is in docs/bus.md ("Links").

    Attributes:
        weights: learner binds PUB; sim workers and deploy connect SUB.
        rollout: learner binds PULL; sim workers connect PUSH.
        telemetry: launcher binds SUB; every process connects a PUB for heartbeats and status.
        obs: bridge (or sim) binds PUB for observations.
        command: bridge binds a CONFLATE SUB for the latest command; the policy connects PUB.
        control_base: worker ``i`` binds ROUTER at :meth:`control` ``(i)``; requesters connect DEALER.
    """

    weights: str
    rollout: str
    telemetry: str
    obs: str
    command: str
    control_base: str
    transport: Transport

    def control(self, index: int) -> str:
        """Control (ROUTER) address of process ``index`` (0 = learner, 1.. = sim workers)."""
        if index < 0:
            raise ValueError(f"control index must be >= 0, got {index}")
        if self.transport == "tcp":
            host, port = self.control_base.rsplit(":", 1)
            return f"{host}:{int(port) + index}"
        return f"{self.control_base}-{index}"


def default_endpoints(
    run_id: str,
    transport: Transport = "ipc",
    *,
    host: str = "127.0.0.1",
    base_port: int = 5550,
    ipc_dir: Path | None = None,
) -> Endpoints:
    """The default addresses of run ``run_id``.

    ``ipc`` puts socket files in ``ipc_dir`` (default: the system temp dir) as ``rrl-<run>-<link>``
    (short, because ipc paths are limited to about 100 bytes). ``inproc`` names are scoped by the
    run id and only reach threads of one process. ``tcp`` uses ``host`` and consecutive ports from
    ``base_port``: weights +0, rollout +1, telemetry +2, obs +3, command +4, control +10+i. The
    default host is loopback; any other host needs CURVE keys to bind (security.check_bind_allowed).
    """
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run_id {run_id!r}: use 1-64 characters from A-Z a-z 0-9 _ . -")
    if transport == "inproc":
        return endpoints_from_base(f"inproc://rrl-{run_id}")
    if transport == "ipc":
        base = Path(tempfile.gettempdir()) if ipc_dir is None else ipc_dir
        return endpoints_from_base(f"ipc://{base}/rrl-{run_id}")
    if transport == "tcp":
        h = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return endpoints_from_base(f"tcp://{h}:{base_port}")
    raise ValueError(f"transport {transport!r}: expected 'ipc', 'inproc' or 'tcp'")


_LINKS = ("weights", "rollout", "telemetry", "obs", "command", "control")
_TCP_OFFSETS = {"weights": 0, "rollout": 1, "telemetry": 2, "obs": 3, "command": 4, "control": 10}
_TCP_BASE = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")


def endpoints_from_base(base: str) -> Endpoints:
    """The endpoints of a run given one *base address*, the form a command line passes around.

    - ``ipc:///dir/rrl-RUN`` -> ``ipc:///dir/rrl-RUN-weights``, ``...-rollout``, ... (the names
      :func:`default_endpoints` gives run ``RUN`` with ``ipc_dir=/dir``);
    - ``inproc://rrl-RUN`` -> ``inproc://rrl-RUN-weights``, ...;
    - ``tcp://HOST:PORT`` -> the port layout of :func:`default_endpoints` with ``base_port=PORT``
      (weights +0, rollout +1, telemetry +2, obs +3, command +4, control +10+i).

    Any other form raises ValueError naming the address and the accepted forms.
    """
    if base.startswith("tcp://"):
        m = _TCP_BASE.match(base)
        if m is None:
            raise ValueError(f"base address {base!r}: expected tcp://HOST:PORT (IPv6 hosts in brackets)")
        port = int(m.group("port"))
        if not 1024 <= port <= 65535 - 64:
            raise ValueError(f"base address {base!r}: port {port} out of range 1024..65471")
        addr = {n: f"tcp://{m.group('host')}:{port + _TCP_OFFSETS[n]}" for n in _LINKS}
        transport: Transport = "tcp"
    elif base.startswith(("ipc://", "inproc://")):
        transport = "ipc" if base.startswith("ipc://") else "inproc"
        name = base.split("://", 1)[1]
        if not name or name.endswith("/") or any(c.isspace() for c in name):
            raise ValueError(f"base address {base!r}: expected {transport}://NAME with a non-empty NAME")
        addr = {n: f"{base}-{n}" for n in _LINKS}
        # The longest link name plus a control index must still fit a unix socket path (~107 bytes).
        if transport == "ipc" and len(addr["telemetry"]) - len("ipc://") > 100:
            raise ValueError(f"base address {base!r}: ipc path too long for a unix socket (> 100 bytes)")
    else:
        raise ValueError(
            f"base address {base!r}: expected ipc:///DIR/rrl-RUN, inproc://rrl-RUN or tcp://HOST:PORT"
        )
    return Endpoints(
        weights=addr["weights"],
        rollout=addr["rollout"],
        telemetry=addr["telemetry"],
        obs=addr["obs"],
        command=addr["command"],
        control_base=addr["control"],
        transport=transport,
    )


def base_address(endpoints: Endpoints) -> str:
    """The base address that :func:`endpoints_from_base` maps back to ``endpoints``.

    Raises ValueError when ``endpoints`` does not follow the base layout (hand-built addresses).
    """
    if endpoints.transport == "tcp":
        base = endpoints.weights
    else:
        suffix = "-weights"
        if not endpoints.weights.endswith(suffix):
            raise ValueError(f"weights address {endpoints.weights!r} does not end in {suffix!r}")
        base = endpoints.weights[: -len(suffix)]
    if endpoints_from_base(base) != endpoints:
        raise ValueError(f"endpoints {endpoints} do not follow the layout of base address {base!r}")
    return base
