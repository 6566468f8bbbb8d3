"""firmware_bridge runs on the robot's small onboard computer: it must not pull in torch or the learner."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "firmware_bridge",
    "firmware_bridge.protocol",
    "firmware_bridge.protocol.cobs",
    "firmware_bridge.protocol.crc",
    "firmware_bridge.protocol.frames",
    "firmware_bridge.protocol.messages",
    "firmware_bridge.protocol.stream",
    "firmware_bridge.calibration",
    "firmware_bridge.safety",
]
FORBIDDEN = ["torch", "robot_rl", "sim", "mujoco", "gymnasium", "jax", "tensorflow"]


def test_importing_firmware_bridge_loads_no_heavy_or_learner_modules() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(n for n in {FORBIDDEN!r} if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_check_would_see_torch_if_it_were_imported() -> None:
    # The subprocess check must be able to fail: importing something that imports json shows up the same way.
    code = "import sys, firmware_bridge.calibration; print('json' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["True", "True"]
