"""`robot-rl launch`: start a run's processes from a topology file, watch and restart them.

- :mod:`robot_rl.launch.config` -- the TOML topology format (frozen dataclasses, ``load_topology``) and the
  command line of every process (``plan_processes``).
- :mod:`robot_rl.launch.supervisor` -- ``prepare_launch`` (run folder, bus addresses) and ``Supervisor``
  (start, heartbeats, restart with back-off, ordered stop, ``launch.json``).
- :mod:`robot_rl.launch.commands` -- the ``Launch`` CLI command.

docs/launch.md describes the file format, the process states and the run folder.
"""
