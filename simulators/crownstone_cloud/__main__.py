"""Serve the simulated Crownstone cloud until SIGINT/SIGTERM.

`python -m simulators.crownstone_cloud [--host H] [--port N] [--phone-delay S]
[--ping-interval S] [--scenario demo|large]` prints one JSON line when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from .control import add_control_routes
from .scenario import DEMO_EMAIL, DEMO_PASSWORD, demo_home, generated_home
from .simulator import CloudSimulator


def _phone_delay(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


async def _serve(args: argparse.Namespace) -> None:
    scenario = generated_home() if args.scenario == "large" else demo_home()
    sim = CloudSimulator(scenario, phone_delay=args.phone_delay, ping_interval=args.ping_interval)
    app = sim.build_app()
    add_control_routes(app, sim)
    await sim.start_app(app, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ready = {
        "url": sim.url,
        "sse_url": sim.sse_url,
        "email": DEMO_EMAIL,
        "password": DEMO_PASSWORD,
        "control_url": f"http://{args.host}:{sim.port}/_control",
        "port": sim.port,
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(prog="python -m simulators.crownstone_cloud")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--phone-delay", type=_phone_delay, default=0.05, help='seconds, or "none": no phone'
    )
    parser.add_argument("--ping-interval", type=float, default=30.0)
    parser.add_argument("--scenario", choices=("demo", "large"), default="demo")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
