"""Run the simulator on its own: `python -m simulators.spotflow_platform --help`.

Prints one JSON line once ready (instance, ca_file, provisioning_token, hub_host, control_url,
workspace_id, data_dir), then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
import signal
import tempfile

from .simulator import DEFAULT_MQTT_PORT, PlatformSimulator


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulators.spotflow_platform")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, default=0, help="HTTPS device API (0 = any)")
    parser.add_argument("--mqtt-port", type=int, default=DEFAULT_MQTT_PORT)
    parser.add_argument("--control-port", type=int, default=0, help="plain-HTTP control page")
    parser.add_argument("--data-dir", type=Path, help="kept between runs (default: a temp dir)")
    parser.add_argument(
        "--auto-approve",
        nargs="?",
        type=float,
        const=0.0,
        metavar="DELAY",
        help="approve every provisioning request, DELAY seconds after it arrives (default 0)",
    )
    parser.add_argument("--provisioning-token")
    parser.add_argument("--workspace-id", default="ws-sim")
    parser.add_argument("--sas-ttl", type=float, default=86400, help="seconds")
    parser.add_argument("--registration-token-ttl", type=float, default=7 * 86400, help="seconds")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args()


async def _serve(arguments: argparse.Namespace) -> None:
    data_dir = arguments.data_dir or Path(tempfile.mkdtemp(prefix="spotflow-sim-"))
    sim = PlatformSimulator(
        data_dir,
        auto_approve=arguments.auto_approve is not None,
        auto_approve_delay=arguments.auto_approve or 0.0,
        host=arguments.host,
        api_port=arguments.api_port,
        mqtt_port=arguments.mqtt_port,
        control_port=arguments.control_port,
        workspace_id=arguments.workspace_id,
        provisioning_token=arguments.provisioning_token,
        registration_token_ttl=arguments.registration_token_ttl,
        sas_ttl=arguments.sas_ttl,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await sim.start()
    try:
        ready = {
            "instance": sim.instance,
            "ca_file": str(sim.ca_file),
            "provisioning_token": sim.provisioning_token,
            "hub_host": sim.hub_host,
            "control_url": sim.control_url,
            "workspace_id": sim.workspace_id,
            "data_dir": str(data_dir),
        }
        print(json.dumps(ready), flush=True)
        await stop.wait()
    finally:
        await sim.stop()


def main() -> None:
    """Parse the arguments and serve."""
    arguments = _arguments()
    logging.basicConfig(level=arguments.log_level.upper())
    asyncio.run(_serve(arguments))


if __name__ == "__main__":
    main()
