"""`python -m robot_rl.certify ARGS`: the `robot-rl certify` command without the CLI dispatcher."""

from __future__ import annotations

import sys

from robot_rl.certify.commands import main

if __name__ == "__main__":
    sys.exit(main())
