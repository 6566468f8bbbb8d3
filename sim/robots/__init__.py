"""The robots robot-rl ships, by name. Each is a backend-neutral `RobotModel` (see `sim.robots.model`)."""

from __future__ import annotations

from sim.robots.manipulator import MANIPULATOR
from sim.robots.model import RobotModel
from sim.robots.quadruped import QUADRUPED

ROBOTS: dict[str, RobotModel] = {"quadruped": QUADRUPED, "manipulator": MANIPULATOR}


def get_robot(name: str) -> RobotModel:
    """The robot called `name`; ValueError listing the valid names otherwise."""
    try:
        return ROBOTS[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; valid choices: {sorted(ROBOTS)}") from None
