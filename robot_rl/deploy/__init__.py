"""Onboard deployment (``robot-rl deploy``): run an exported ``policy.onnx`` against the firmware bridge.

- :mod:`robot_rl.deploy.observation`: :class:`~robot_rl.deploy.observation.ObservationBuilder`, the
  observation and reward from the bridge's ``JointState`` (shared with ``RealRobotEnv``).
- :mod:`robot_rl.deploy.checks`: the start-up checks of a model's manifest against the robot's calibration.
- :mod:`robot_rl.deploy.report`: timing statistics and the end-of-run report.
- :mod:`robot_rl.deploy.runner`: :class:`~robot_rl.deploy.runner.DeployRunner`, the state machine
  WAIT -> RAMP -> HOLD -> RUN -> DAMP -> DONE.
- :mod:`robot_rl.deploy.commands`: the ``Deploy`` command (``python -m robot_rl.deploy``); its module imports
  the standard library only (``robot-rl --help`` imports it), the rest inside ``Deploy.execute``.
- :mod:`robot_rl.deploy.exit_codes`: the command's exit codes.

The whole path imports numpy, onnxruntime, pyzmq, msgspec, pyarrow (the log store) and the standard library,
plus the numpy-only parts of ``sim`` (robots, tasks, estimator); never torch, Gymnasium or MuJoCo. This
``__init__`` imports nothing.
"""
