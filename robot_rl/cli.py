"""`robot-rl` command line.

Every subcommand is a frozen dataclass (its field docstrings are the `--help` text) with an
`execute() -> int` method (not `run`: several commands have a `--run` field). This module only
dispatches `robot-rl GROUP COMMAND ARGS...` to the dataclass and lets tyro parse ARGS; command modules
keep heavy imports (MuJoCo, pyarrow, torch) inside `execute()` so that `robot-rl --help` stays fast on an
onboard computer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

import tyro

from firmware_bridge.bridge_commands import Bridge
from firmware_bridge.emulator.commands import Emulator
from robot_rl import __version__
from robot_rl.bus.commands import KeysGen
from robot_rl.cav.commands import CavTest
from robot_rl.certify.commands import Certify
from robot_rl.data.commands import LogsExport, LogsImport, LogsInfo
from robot_rl.data.errors import RunLockedError
from robot_rl.deploy.commands import Deploy
from robot_rl.export.commands import Export
from robot_rl.launch.commands import Launch
from robot_rl.record import Record
from robot_rl.runners.commands import Learner
from robot_rl.runners.train import Train
from sim.commands import SimGap, SimWorker


class Command(Protocol):
    def execute(self) -> int: ...


@dataclass(frozen=True)
class Group:
    summary: str
    commands: dict[str, type[Command]]


COMMANDS: dict[str, type[Command]] = {
    "bridge": Bridge,
    "certify": Certify,
    "deploy": Deploy,
    "emulator": Emulator,
    "export": Export,
    "launch": Launch,
    "learner": Learner,
    "record": Record,
    "sim-worker": SimWorker,
    "train": Train,
}
"""Single commands: `robot-rl NAME ARGS...`."""

GROUPS: dict[str, Group] = {
    "logs": Group(
        "Inspect, export and import episode logs (calib/<run>/ folders).",
        {"info": LogsInfo, "export": LogsExport, "import": LogsImport},
    ),
    "sim": Group("Simulator tools.", {"gap": SimGap}),
    "keys": Group("Bus security: CURVE key pairs for tcp:// links beyond loopback.", {"gen": KeysGen}),
    "cav": Group("Automated-vehicle overtaking tests: crash-rate estimation.", {"test": CavTest}),
}


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _usage(group: str | None = None) -> str:
    lines = [f"robot-rl {__version__}: hybrid sim/real robot learning.", ""]
    if group is None:
        lines.append("usage: robot-rl COMMAND [SUBCOMMAND] [ARGS...]   (robot-rl COMMAND SUBCOMMAND --help)")
        lines.append("")
        lines.append("commands:")
        for name, cls in COMMANDS.items():
            lines.append(f"  {name:<19} {_summary(cls)}")
        for name, g in GROUPS.items():
            lines.append(f"  {name:<19} {g.summary}")
            for sub, cls in g.commands.items():
                lines.append(f"    {name + ' ' + sub:<17} {_summary(cls)}")
    else:
        lines.append(f"usage: robot-rl {group} SUBCOMMAND [ARGS...]   (robot-rl {group} SUBCOMMAND --help)")
        lines.append("")
        lines.append(GROUPS[group].summary)
        lines.append("")
        for sub, cls in GROUPS[group].commands.items():
            lines.append(f"  {sub:<10} {_summary(cls)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the chosen subcommand and return its exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"robot-rl {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name in COMMANDS:
        cls, prog = COMMANDS[name], f"robot-rl {name}"
    elif name in GROUPS:
        group = GROUPS[name]
        if not rest or rest[0] in ("-h", "--help"):
            print(_usage(name))
            return 0 if rest else 2
        sub, rest = rest[0], rest[1:]
        if sub not in group.commands:
            valid = ", ".join(group.commands)
            print(f"robot-rl: error: unknown subcommand {name} {sub!r}; valid: {valid}", file=sys.stderr)
            return 2
        cls, prog = group.commands[sub], f"robot-rl {name} {sub}"
    else:
        valid = ", ".join([*COMMANDS, *GROUPS])
        print(f"robot-rl: error: unknown command {name!r}; valid: {valid}", file=sys.stderr)
        return 2
    return run_command(cls, rest, prog)


def run_command(cls: type[Command], args: list[str], prog: str) -> int:
    """Parse `args` into `cls` with tyro and execute it (also the `python -m` entry of the processes)."""
    try:
        command = tyro.cli(cls, args=args, prog=prog, description=cls.__doc__)
        return command.execute()
    except (ValueError, FileNotFoundError, FileExistsError, RunLockedError) as exc:
        # Bad input is reported in one line that names the problem; tracebacks are for bugs.
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
