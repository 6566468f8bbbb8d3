"""Exit codes of `robot-rl deploy` (standard library only: `robot-rl --help` imports the command module)."""

from __future__ import annotations

EXIT_OK = 0
"""Every episode completed or fell, or the operator stopped the run (SIGINT/SIGTERM)."""
EXIT_REFUSED = 2
"""Bad input, or a model that does not match the robot (nothing was commanded)."""
EXIT_BRIDGE = 3
"""No state from the bridge, or a control request it could not carry out (nothing was commanded)."""
EXIT_SAFETY_STOP = 4
"""A safety stop: deadline, nan, estop, fault or lost (the robot was damped where a link remained)."""
