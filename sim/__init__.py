"""Simulators: robots, physics backends, gap profiles and Gymnasium environments.

Importing `sim` registers the Gymnasium ids `robot_rl/Quadruped-v0` and `robot_rl/Manipulator-v0`
(kwargs `backend="mujoco"`, `profile="nominal"`); `gymnasium.make("sim:robot_rl/Quadruped-v0")` imports this
package first. On a machine without a display, importing `sim` defaults MUJOCO_GL to "egl" (offscreen
rendering) unless it is already set. Episode length is handled by the task (`truncated`), so no TimeLimit
wrapper is registered.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Headless machines: MuJoCo and dm_control default to GLFW, which needs a display (and warns at import
# without one). EGL renders offscreen; an explicit MUJOCO_GL from the user always wins. Must run before the
# first `import mujoco`, hence here.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

if TYPE_CHECKING:
    from sim.env import RobotEnv
    from sim.profile import GapProfile

ENV_IDS: dict[str, str] = {"quadruped": "robot_rl/Quadruped-v0", "manipulator": "robot_rl/Manipulator-v0"}


def _register() -> None:
    try:
        from gymnasium.envs.registration import register, registry
    except ImportError:  # an onboard computer runs the tasks and the estimator (robot-rl deploy) without it
        return
    for robot, entry in (
        ("quadruped", "sim.env:make_quadruped"),
        ("manipulator", "sim.env:make_manipulator"),
    ):
        if ENV_IDS[robot] not in registry:
            register(id=ENV_IDS[robot], entry_point=entry, kwargs={"backend": "mujoco", "profile": "nominal"})


_register()


def make_env(
    robot: str, backend: str = "mujoco", profile: GapProfile | str = "nominal", **kw: Any
) -> RobotEnv:
    """A `RobotEnv` (unwrapped); unknown robot, backend or profile -> ValueError listing valid choices."""
    from sim.env import RobotEnv

    return RobotEnv(robot=robot, backend=backend, profile=profile, **kw)
