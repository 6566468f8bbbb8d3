"""robot-rl: hybrid sim/real robot learning."""

from __future__ import annotations

__version__ = "0.1.0"
