"""firmware_bridge runs on the robot's small onboard computer: it must not pull in torch or the learner."""

from __future__ import annotations

import json
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


BRIDGE_MODULES = ["firmware_bridge.bridge", "firmware_bridge.bridge_commands", "firmware_bridge.serial_port"]
BRIDGE_ALLOWED_ROBOT_RL = ("robot_rl", "robot_rl.bus", "robot_rl.schema")


def test_the_bridge_imports_only_the_bus_from_robot_rl_and_nothing_heavy() -> None:
    # The bridge speaks the bus, so robot_rl.bus (numpy, pyzmq, msgspec) is allowed; torch, the simulators,
    # the learner and the CLI framework are not.
    code = (
        "import importlib, json, sys\n"
        f"for m in {BRIDGE_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    loaded = json.loads(out.stdout)
    heavy = [
        m
        for m in loaded
        if m.split(".")[0] in {"torch", "sim", "mujoco", "gymnasium", "jax", "tensorflow", "tyro"}
    ]
    assert heavy == []
    learner = [
        m for m in loaded if m.split(".")[0] == "robot_rl" and not m.startswith(BRIDGE_ALLOWED_ROBOT_RL)
    ]
    assert learner == []
    assert "zmq" in loaded and "numpy" in loaded  # the check sees what the bridge really imports
