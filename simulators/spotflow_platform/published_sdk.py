"""Where the published `spotflow-device` SDK can reach the simulator.

The SDK connects to port 8883 of the registration's `iotHubHostName`, whatever the host name
says (`MqttOptions::new(device_id, iot_hub_host_name, 8883)` in its source), so a port of our
choosing never reaches it. The simulator's broker then listens on 8883 of a loopback address of
its own: Linux routes all of 127.0.0.0/8 to the loopback interface, and 127.0.0.1:8883 stays
free for a development instance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import errno
from pathlib import Path
import random
from typing import Any

from .simulator import DEFAULT_MQTT_PORT, PlatformSimulator


@asynccontextmanager
async def platform_for_published_sdk(
    data_dir: Path, **options: Any
) -> AsyncIterator[PlatformSimulator]:
    """A started simulator with its broker on 8883 of a random 127.x.y.z (never 127.0.0.1).

    Give the SDK's process `SSL_CERT_FILE=<sim.ca_file>` and `instance=sim.instance`.
    """
    rng = random.SystemRandom()
    for _ in range(20):
        host = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        sim = PlatformSimulator(data_dir, host=host, mqtt_port=DEFAULT_MQTT_PORT, **options)
        try:
            await sim.start()
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                continue  # another run took this address: pick another
            raise
        break
    else:
        raise RuntimeError(f"no free loopback address for port {DEFAULT_MQTT_PORT}")
    try:
        yield sim
    finally:
        await sim.stop()
