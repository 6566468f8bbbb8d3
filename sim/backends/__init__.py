"""Physics backends behind one `PhysicsBackend` Protocol (see `sim.backends.base`).

Imports are lazy so that choosing one backend does not import the others' simulators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.backends.base import PhysicsBackend
    from sim.robots.model import RobotModel

BACKENDS: tuple[str, ...] = ("mujoco", "dmcontrol", "pybullet")


def make_backend(name: str, robot: RobotModel) -> PhysicsBackend:
    """A fresh backend `name` ("mujoco", "dmcontrol" or "pybullet") simulating `robot`, nominal dynamics."""
    if name == "mujoco":
        from sim.backends.mujoco_backend import MujocoBackend

        return MujocoBackend(robot)
    if name == "dmcontrol":
        from sim.backends.dmcontrol_backend import DmControlBackend

        return DmControlBackend(robot)
    if name == "pybullet":
        from sim.backends.pybullet_backend import PyBulletBackend

        return PyBulletBackend(robot)
    raise ValueError(f"unknown backend {name!r}; valid choices: {list(BACKENDS)}")
