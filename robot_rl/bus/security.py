"""CURVE keys for tcp links that leave the host, and the rule that enforces them.

Rule: binding ``tcp://`` on anything but a loopback address (127.0.0.0/8, ``localhost``, ``::1``)
requires server keys; loopback tcp, ``ipc://`` and ``inproc://`` work without keys because only
processes on this host can reach them. With keys, the server socket is a CURVE server (traffic
encrypted and authenticated) and a ZAP authenticator admits only clients whose public key file lies
in the ``authorized_clients/`` directory; any other peer fails the handshake and never delivers or
receives a message.

Key directory made by :func:`generate_keys` (``robot-rl keys gen DIR``)::

    DIR/server.key                      server public key    (give to clients)
    DIR/server.key_secret               server key pair      (mode 0600, stays on the server)
    DIR/client.key                      client public key
    DIR/client.key_secret               client key pair      (mode 0600, give to trusted clients)
    DIR/authorized_clients/client.key   public keys the server admits (add more ``*.key`` files here)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

AUTHORIZED_DIR = "authorized_clients"
ZAP_DOMAIN = "robot-rl"
"""ZAP domain of every CURVE server socket; the authenticator admits keys for this domain only."""
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


@dataclasses.dataclass(frozen=True)
class ServerKeys:
    """A server key pair (Z85 bytes) and the directory of authorised client public keys."""

    public: bytes
    secret: bytes
    authorized_dir: Path


@dataclasses.dataclass(frozen=True)
class ClientKeys:
    """A client key pair and the server public key it expects (Z85 bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes


def generate_keys(out: Path, *, force: bool = False) -> list[Path]:
    """Create server and client CURVE key pairs in ``out`` (layout in the module docstring).

    Secret files are made mode 0600. Refuses to overwrite existing keys unless ``force``
    (FileExistsError), because overwriting would lock out every client holding the old keys.
    Returns the files written.
    """
    out = Path(out)
    names = ("server.key", "server.key_secret", "client.key", "client.key_secret")
    existing = [out / n for n in names if (out / n).exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists; pass --force to replace the keys in {out}")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in ("server", "client"):
        public_file, secret_file = zmq.auth.create_certificates(out, name)
        os.chmod(secret_file, 0o600)
        written += [Path(public_file), Path(secret_file)]
    authorized = out / AUTHORIZED_DIR
    authorized.mkdir(exist_ok=True)
    shutil.copyfile(out / "client.key", authorized / "client.key")
    written.append(authorized / "client.key")
    return written


def load_server_keys(key_dir: Path) -> ServerKeys:
    """Server keys from a directory made by :func:`generate_keys` (FileNotFoundError if absent)."""
    key_dir = Path(key_dir)
    public, secret = zmq.auth.load_certificate(key_dir / "server.key_secret")
    if secret is None:
        raise ValueError(f"{key_dir / 'server.key_secret'} holds no secret key")
    authorized = key_dir / AUTHORIZED_DIR
    if not authorized.is_dir():
        raise FileNotFoundError(f"{authorized} (directory of authorised client public keys) is missing")
    return ServerKeys(public=public, secret=secret, authorized_dir=authorized)


def load_client_keys(key_dir: Path, *, name: str = "client") -> ClientKeys:
    """Client keys ``<name>.key_secret`` and the server public key ``server.key`` from ``key_dir``."""
    key_dir = Path(key_dir)
    public, secret = zmq.auth.load_certificate(key_dir / f"{name}.key_secret")
    if secret is None:
        raise ValueError(f"{key_dir / (name + '.key_secret')} holds no secret key")
    server_public, _ = zmq.auth.load_certificate(key_dir / "server.key")
    return ClientKeys(public=public, secret=secret, server_public=server_public)


def tcp_host(endpoint: str) -> str | None:
    """The host part of a ``tcp://host:port`` endpoint (brackets stripped), or None for other transports."""
    if not endpoint.startswith("tcp://"):
        return None
    rest = endpoint[len("tcp://") :]
    # A connect endpoint may name a source first ("tcp://src;dst:port"); binding uses the last part.
    rest = rest.rsplit(";", 1)[-1]
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = tcp_host(endpoint)
    if host is None:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        # "*", "0.0.0.0"-like wildcards are addresses; anything else here is an interface name
        # ("eth0") or hostname, which may face the network.
        return False


def check_bind_allowed(endpoint: str, server_keys: ServerKeys | None) -> None:
    """Raise ValueError if binding ``endpoint`` would accept other hosts without CURVE keys."""
    if server_keys is not None or is_loopback_endpoint(endpoint):
        return
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise ValueError(f"bind {endpoint!r}: unsupported transport (use tcp://, ipc:// or inproc://)")
    raise ValueError(
        f"refusing to bind {endpoint!r} without CURVE keys: it accepts connections from other hosts. "
        "Create keys with `robot-rl keys gen DIR` and pass the server keys, or bind 127.0.0.1 / ipc://."
    )


def apply_server_keys(sock: zmq.Socket[bytes], keys: ServerKeys) -> None:
    """Make ``sock`` a CURVE server (before bind). A ZAP authenticator must run on its context."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    # The ZAP domain makes libzmq consult the authenticator for every handshake on this socket.
    sock.zap_domain = ZAP_DOMAIN.encode()


def apply_client_keys(sock: zmq.Socket[bytes], keys: ClientKeys) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is in ``keys`` (before connect)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public


def start_authenticator(ctx: zmq.Context[zmq.Socket[bytes]], keys: ServerKeys) -> ThreadAuthenticator:
    """Start a ZAP handler on ``ctx`` admitting only the public keys in ``keys.authorized_dir``.

    The caller stops it (``.stop()``) before terminating the context.
    """
    auth = ThreadAuthenticator(ctx)
    auth.start()
    # pyzmq looks the socket's ZAP domain up literally (a "*" entry does not match "robot-rl").
    auth.configure_curve(domain=ZAP_DOMAIN, location=str(keys.authorized_dir))
    return auth
