"""A child process that drives the published `spotflow-device` SDK, unchanged, for the tests.

The SDK blocks its caller in `DeviceClient.start()` (provisioning waits for approval) and keeps
native threads of its own, so it runs here, apart from the test's event loop, where a deadline
can end it. Protocol: one JSON object per line. The first argument is the start configuration
(`device_id`, `provisioning_token`, `db`, `instance`). Events go to stdout as
`{"event": ...}`; commands come on stdin as `{"op": ...}` and are answered in order with
`{"reply": op, "result": ...}` or `{"reply": op, "error": "..."}`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

import spotflow_device
from spotflow_device import Compression, DeviceClient, StreamSender

_OUT = threading.Lock()


def emit(message: dict[str, Any]) -> None:
    """Write one line; SDK callbacks come from its own threads."""
    with _OUT:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


class _Forward(logging.Handler):
    """Forward the SDK's warnings and errors (it logs background failures through `logging`)."""

    def emit(self, record: logging.LogRecord) -> None:
        emit(
            {
                "event": "log",
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def _on_provisioning(operation: spotflow_device.ProvisioningOperation) -> None:
    emit(
        {
            "event": "provisioning",
            "id": operation.id,
            "verification_code": operation.verification_code,
            "expiration_time": operation.expiration_time,
        }
    )


def _on_desired(properties: spotflow_device.DesiredProperties) -> None:
    emit({"event": "desired", "version": properties.version, "values": properties.values})


class Worker:
    """Runs the commands against one started client."""

    def __init__(self, client: DeviceClient) -> None:
        self.client = client
        self.senders: dict[tuple[str | None, str | None, str], StreamSender] = {}

    def sender(self, command: dict[str, Any]) -> StreamSender:
        key = (
            command.get("group"),
            command.get("stream"),
            command.get("compression", "UNCOMPRESSED"),
        )
        if key not in self.senders:
            self.senders[key] = self.client.create_stream_sender(
                key[0], key[1], getattr(Compression, key[2])
            )
        return self.senders[key]

    def run(self, command: dict[str, Any]) -> Any:
        op = command["op"]
        client = self.client
        if op == "send":
            sender = self.sender(command)
            send = sender.enqueue_message if command.get("enqueue", True) else sender.send_message
            for message in command["messages"]:
                # The stub says `str | bytes`; the 2.1.1 binary takes bytes only.
                send(message.pop("payload").encode(), **message)
            return len(command["messages"])
        if op == "send_many":
            sender = self.sender(command)
            payload = b"m" * command["size"]
            for index in range(command["count"]):
                sender.enqueue_message(
                    payload, batch_id=command["batch_id"], message_id=f"{command['prefix']}{index}"
                )
            return command["count"]
        if op == "complete_batch":
            self.sender(command).enqueue_batch_completion(command["batch_id"])
            return None
        if op == "complete_message":
            self.sender(command).enqueue_message_completion(
                command["batch_id"], command["message_id"]
            )
            return None
        if op == "wait_sent":
            client.wait_enqueued_messages_sent()
            return client.pending_messages_count
        if op == "pending_messages":
            return client.pending_messages_count
        if op == "report":
            client.update_reported_properties(command["properties"])
            return None
        if op == "pending_reported":
            return client.any_pending_reported_properties_updates
        if op == "wait_reported":
            # The SDK offers no notification for this, only the flag: watch it until it clears.
            deadline = time.monotonic() + command.get("timeout", 20)
            while client.any_pending_reported_properties_updates:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
            return True
        if op == "desired":
            desired = client.get_desired_properties()
            return {"version": desired.version, "values": desired.values}
        if op == "desired_if_newer":
            newer = client.get_desired_properties_if_newer(command.get("version"))
            return None if newer is None else {"version": newer.version, "values": newer.values}
        if op == "identity":
            return {"device_id": client.device_id, "workspace_id": client.workspace_id}
        raise ValueError(f"unknown op {op!r}")


def main() -> None:
    """Start the client, then answer commands until `exit` or the end of stdin."""
    config = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.CRITICAL)
    sdk_logger = logging.getLogger("spotflow")
    sdk_logger.setLevel(logging.WARNING)
    sdk_logger.addHandler(_Forward())
    client = DeviceClient.start(
        device_id=config.get("device_id"),
        provisioning_token=config["provisioning_token"],
        db=config["db"],
        instance=config["instance"],
        display_provisioning_operation_callback=_on_provisioning,
        desired_properties_updated_callback=_on_desired,
    )
    emit({"event": "started", "device_id": client.device_id, "workspace_id": client.workspace_id})
    worker = Worker(client)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "exit":
            break
        try:
            emit({"reply": command["op"], "result": worker.run(command)})
        except Exception as err:  # the test reads it
            emit({"reply": command["op"], "error": f"{type(err).__name__}: {err}"})
    del worker, client  # the SDK sends what it can and disconnects when the client goes
    emit({"event": "stopped"})


if __name__ == "__main__":
    main()
