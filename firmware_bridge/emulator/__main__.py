"""`python -m firmware_bridge.emulator --robot quadruped`: the same command as `robot-rl emulator`."""

from __future__ import annotations

import sys

import tyro

from firmware_bridge.emulator.commands import Emulator


def main(argv: list[str] | None = None) -> int:
    command = tyro.cli(
        Emulator, args=argv, prog="python -m firmware_bridge.emulator", description=Emulator.__doc__
    )
    try:
        return command.execute()
    except (ValueError, FileNotFoundError) as exc:
        print(f"emulator: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
