"""Gymnasium environments over the bus (the real robot, through the firmware bridge).

Importing `robot_rl.envs` registers `robot_rl/RealQuadruped-v0` (nondeterministic: the robot is real);
`gymnasium.make("robot_rl.envs:robot_rl/RealQuadruped-v0", bus="ipc:///DIR/rrl-RUN")` imports this package
first. The simulated ids (`robot_rl/Quadruped-v0`, ...) are registered by `import sim`. Module imports stay
light: the environment itself (pyzmq, MuJoCo for the shared task code) loads only when made.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

REAL_ENV_IDS: dict[str, str] = {"quadruped": "robot_rl/RealQuadruped-v0"}

if REAL_ENV_IDS["quadruped"] not in registry:
    register(
        id=REAL_ENV_IDS["quadruped"],
        entry_point="robot_rl.envs.real_robot:RealRobotEnv",
        nondeterministic=True,
        # bus None -> the bridge's default address for run "real" (ipc://<tmp>/rrl-real).
        kwargs={"robot": "quadruped", "bus": None},
    )
