"""Command line: `serve` a simulator until SIGINT/SIGTERM (wired as `mdm vpp simulator serve`)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Sequence

from .server import Simulator


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the serve options to `parser`."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0 = a free port)")
    parser.add_argument("--seed", default="1", help="seed of the generated data")
    parser.add_argument("--assets", type=int, default=12)
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--users", type=int, default=25)
    parser.add_argument("--assignments", type=int, default=None,
                        help="total assignments (default 2*devices + users)")
    parser.add_argument("--page-size", type=int, default=437)
    parser.add_argument("--async-delay", type=float, default=0.2, help="seconds an event stays PENDING")
    parser.add_argument("--token-file", default="var/simulator.vpptoken",
                        help="where to write the .vpptoken (mode 0600)")
    return parser


def _seed_value(raw: object) -> object:
    try:
        return int(str(raw))
    except ValueError:
        return raw


def serve(args: argparse.Namespace, *, ready: threading.Event | None = None,
          stop: threading.Event | None = None) -> int:
    """Start the simulator, write the token file, print the URL, serve until a signal."""
    stop = stop or threading.Event()
    sim = Simulator(seed=_seed_value(args.seed), assets=args.assets, devices=args.devices,
                    users=args.users, assignments=args.assignments, page_size=args.page_size,
                    async_delay=args.async_delay, host=args.host, port=args.port)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        with sim:
            path = sim.write_token(args.token_file)
            print(f"Apple Apps and Books simulator at {sim.base_url} (token file: {path})", flush=True)
            if ready is not None:
                ready.set()
            while not stop.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_serve_arguments(argparse.ArgumentParser(
        prog="python -m plugins.vpp.simulator", description="Serve a local Apple Apps and Books v2 simulator."))
    return serve(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
