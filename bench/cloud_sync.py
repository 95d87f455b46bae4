"""Full refresh of a big account: this library against the published crownstone-cloud 1.4.11.

One simulated account (10 spheres x 30 stones, 6 rooms, 4 users each) answers every request
after 25 ms, as a distant cloud would. Both clients log in once, then refresh everything in
alternating rounds; the simulator counts the requests of each refresh.

Run: .venv/bin/python -m bench.cloud_sync
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import json
import logging
import statistics
import time

import aiohttp
from crownstone_cloud import CrownstoneCloud as PublishedCloud  # type: ignore[import-untyped]
import crownstone_cloud.helpers.requests as published_requests  # type: ignore[import-untyped]

from custom_components.crownstone_spotflow.crownstone import CrownstoneCloud
from simulators.crownstone_cloud import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    CloudSimulator,
    generated_home,
)

SPHERES = 10
ROUNDS = 7
LATENCY = 0.025


async def _measure(
    sim: CloudSimulator, refresh: Callable[[], Awaitable[None]]
) -> tuple[float, int]:
    sim.reset_counters()
    start = time.perf_counter()
    await refresh()
    return time.perf_counter() - start, sim.request_count()


async def main() -> dict[str, float]:
    """Run the rounds and return the figures."""
    home = generated_home(
        spheres=SPHERES, stones_per_sphere=30, rooms_per_sphere=6, users_per_sphere=4
    )
    sim = CloudSimulator(home, phone_delay=None, latency=LATENCY)
    await sim.start(host="127.0.0.1", port=0)
    # The published client has its base URL as a module constant.
    published_requests.DEFAULT_CLOUD_ADDR = sim.url
    try:
        async with aiohttp.ClientSession() as session:
            ours = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, session, base_url=sim.url)
            published = PublishedCloud(DEMO_EMAIL, DEMO_PASSWORD, session)
            await ours.async_initialize()
            await published.async_initialize()
            runs: dict[str, list[tuple[float, int]]] = {
                "ours": [],
                "ours_poll": [],
                "published": [],
            }
            for _ in range(ROUNDS):
                runs["ours"].append(await _measure(sim, lambda: ours.async_synchronize(users=True)))
                runs["published"].append(await _measure(sim, published.async_synchronize))
                runs["ours_poll"].append(await _measure(sim, ours.async_synchronize))
    finally:
        await sim.stop()

    medians = {name: statistics.median(t for t, _ in samples) for name, samples in runs.items()}
    requests = {name: max(n for _, n in samples) for name, samples in runs.items()}
    print(f"{SPHERES} spheres x 30 stones, {LATENCY * 1000:.0f} ms per request, {ROUNDS} rounds")
    print(f"{'client':<42}{'requests':>10}{'median s':>12}")
    labels = {
        "published": "crownstone-cloud 1.4.11 async_synchronize",
        "ours": "ours async_synchronize(users=True)",
        "ours_poll": "ours async_synchronize() (users known)",
    }
    for name, label in labels.items():
        print(f"{label:<42}{requests[name]:>10}{medians[name]:>12.4f}")
    figures = {
        "ours_requests": requests["ours"],
        "published_requests": requests["published"],
        "ours_median_s": round(medians["ours"], 4),
        "published_median_s": round(medians["published"], 4),
        "speedup": round(medians["published"] / medians["ours"], 2),
        "request_ratio": round(requests["published"] / requests["ours"], 2),
        "ours_poll_requests": requests["ours_poll"],
        "ours_poll_median_s": round(medians["ours_poll"], 4),
    }
    print(f"speedup {figures['speedup']}x, {figures['request_ratio']}x fewer requests")
    return figures


if __name__ == "__main__":
    # The published client logs every refresh at debug level only; keep the output ours.
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(main())))
