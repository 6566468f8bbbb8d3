"""A tiny bus process for the launcher tests: heartbeats on the launcher's telemetry endpoint.

Run as ``python heartbeat_child.py --sender NAME [...]`` under the launcher, which puts the telemetry
endpoint in RRL_TELEMETRY. It counts ``msgs_out`` at ``--rate`` messages per second (so the launcher's
messages/s column has a known value), prints a line per second to its log, and can crash, hang or stop
heartbeating on demand.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from robot_rl.bus.sockets import BusContext, Heartbeater, Sender, make_pub


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sender", required=True)
    ap.add_argument("--rate", type=float, default=50.0, help="msgs_out counted per second")
    ap.add_argument("--crash-after", type=float, default=None, help="exit with --exit-code after S seconds")
    ap.add_argument("--exit-code", type=int, default=3)
    ap.add_argument("--silent-after", type=float, default=None, help="stop heartbeating after S seconds")
    ap.add_argument("--ignore-sigterm", action="store_true")
    args = ap.parse_args()

    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_sigterm else on_term)
    print(f"child {args.sender} pid {os.getpid()} telemetry {os.environ['RRL_TELEMETRY']}", flush=True)
    t0 = time.monotonic()
    with BusContext() as ctx:
        pub = make_pub(ctx, os.environ["RRL_TELEMETRY"], bind=False)
        beat = Heartbeater(Sender(pub, args.sender), interval_s=0.2)
        next_print = t0
        while not stop:
            now = time.monotonic()
            age = now - t0
            if args.crash_after is not None and age >= args.crash_after:
                print(f"child {args.sender}: crashing with {args.exit_code}", flush=True)
                return int(args.exit_code)
            if args.silent_after is None or age < args.silent_after:
                beat.tick("running", {"msgs_out": int(age * args.rate), "msgs_in": 0, "env_steps": int(age)})
            if now >= next_print:
                print(f"child {args.sender}: alive {age:.1f}s", flush=True)
                next_print += 1.0
            time.sleep(0.02)
    print(f"child {args.sender}: SIGTERM, exiting 0", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
