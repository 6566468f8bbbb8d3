"""CLI commands for the bus: ``robot-rl keys gen DIR``.

A frozen dataclass turned into a CLI by tyro (field docstrings are the ``--help``); pyzmq is
imported inside ``execute`` so ``robot-rl --help`` stays fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

EXIT_OK = 0
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class KeysGen:
    """Create CURVE key pairs for a bus that binds tcp:// on a non-loopback address."""

    out: Annotated[Path, tyro.conf.Positional]
    """Directory for server.key(_secret), client.key(_secret) and authorized_clients/."""
    force: bool = False
    """Replace existing keys (every client holding the old client key is locked out)."""

    def execute(self) -> int:
        from robot_rl.bus.security import generate_keys

        try:
            written = generate_keys(self.out, force=self.force)
        except (FileExistsError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        for path in written:
            print(path)
        print(
            f"Keep {self.out / 'server.key_secret'} on the server; give clients client.key_secret and "
            "server.key. Admit more clients by adding their public *.key files to authorized_clients/."
        )
        return EXIT_OK
