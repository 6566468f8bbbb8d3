"""`python -m robot_rl.deploy ARGS`: the `robot-rl deploy` command without the CLI dispatcher."""

from __future__ import annotations

import sys

from robot_rl.deploy.commands import main

if __name__ == "__main__":
    sys.exit(main())
