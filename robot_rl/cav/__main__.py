"""`python -m robot_rl.cav test ARGS`: the `robot-rl cav test` command without the CLI dispatcher."""

from __future__ import annotations

import sys

from robot_rl.cav.commands import main

if __name__ == "__main__":
    sys.exit(main())
