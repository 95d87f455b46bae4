"""The test side of `spotflow_sdk_worker`: the published SDK in a child process, driven by JSON
lines, against a simulator from `platform_for_published_sdk`."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import sys
from typing import Any

from simulators.spotflow_platform import PlatformSimulator

REPO = Path(__file__).resolve().parents[2]
# A deadline for anything the SDK is asked to do: a safety net against a hung child, never a
# way to wait for something (every wait below ends on the awaited line or state).
DEADLINE = 60.0


class SdkDevice:
    """One run of the published SDK in a child process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, sim: PlatformSimulator, db: Path, device_id: str | None = "sdk-device"
    ) -> SdkDevice:
        """Start the worker; it calls `DeviceClient.start` at once."""
        config = {
            "device_id": device_id,
            "provisioning_token": sim.provisioning_token,
            "db": str(db),
            "instance": sim.instance,
        }
        env = {**os.environ, "SSL_CERT_FILE": str(sim.ca_file), "PYTHONPATH": str(REPO)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.contract.spotflow_sdk_worker",
            json.dumps(config),
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**22,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            if "reply" in message:
                self._replies.put_nowait(message)
            else:
                self.events.append(message)
                self._changed.set()
        self.events.append({"event": "exited"})
        self._changed.set()

    async def event(
        self, kind: str, after: int = 0, containing: str = "", **fields: Any
    ) -> dict[str, Any]:
        """Return the first event of `kind` from index `after` on (a log message `containing`
        a fragment, with these `fields`), waiting for it."""
        async with asyncio.timeout(DEADLINE):
            while True:
                for message in self.events[after:]:
                    if (
                        message["event"] == kind
                        and containing in message.get("message", "")
                        and all(message.get(name) == value for name, value in fields.items())
                    ):
                        return message
                    if message["event"] == "exited" and kind != "exited":
                        raise AssertionError(f"the SDK worker ended before {kind!r}")
                self._changed.clear()
                await self._changed.wait()

    def logged(self, fragment: str) -> list[dict[str, Any]]:
        """The SDK's warnings and errors that contain `fragment`."""
        return [
            event
            for event in self.events
            if event["event"] == "log" and fragment in event["message"]
        ]

    async def call(self, op: str, **arguments: Any) -> Any:
        """Run one command in the worker and return its result."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **arguments}).encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(DEADLINE):
            reply = await self._replies.get()
        assert reply["reply"] == op, reply
        if "error" in reply:
            raise AssertionError(f"{op}: {reply['error']}")
        return reply.get("result")

    async def stop(self) -> None:
        """Let the SDK shut down (it flushes and disconnects), or kill it at the deadline."""
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.write(b'{"op": "exit"}\n')
            self.process.stdin.close()
        try:
            async with asyncio.timeout(DEADLINE):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reader

    async def __aenter__(self) -> SdkDevice:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            await self.stop()
            return
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await self._reader
