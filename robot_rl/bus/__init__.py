"""The robot-rl bus: typed, versioned messages over ZeroMQ (wire protocol: docs/bus.md).

- :mod:`robot_rl.bus.messages` -- payload types, the kind registry, ``BUS_SCHEMA_VERSION``.
- :mod:`robot_rl.bus.codec` -- pure bytes <-> message functions; ``BusDecodeError`` on bad input.
- :mod:`robot_rl.bus.topics` -- topic names and ``default_endpoints``.
- :mod:`robot_rl.bus.sockets` -- ``BusContext``, socket factories, ``Sender``/``Receiver``,
  ``Requester``/``Responder``, ``Heartbeater``/``LivenessTracker``.
- :mod:`robot_rl.bus.security` -- CURVE keys and the non-loopback bind rule.
- :mod:`robot_rl.bus.commands` -- ``robot-rl keys gen DIR``.
"""
