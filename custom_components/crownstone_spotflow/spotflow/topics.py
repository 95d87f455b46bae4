"""MQTT topics of the Azure IoT Hub device protocol, as the Spotflow platform uses it."""

from __future__ import annotations

from urllib.parse import quote

TWIN_RESPONSE_PREFIX = "$iothub/twin/res/"
DESIRED_PATCH_PREFIX = "$iothub/twin/PATCH/properties/desired/"


def subscriptions(client_id: str) -> list[str]:
    """Return the topics a device subscribes to after connecting."""
    return [
        f"{TWIN_RESPONSE_PREFIX}#",
        f"{DESIRED_PATCH_PREFIX}#",
        f"devices/{client_id}/messages/devicebound/#",
    ]


def events_topic(client_id: str, property_bag: str) -> str:
    """Return the topic a stream message with this property bag is published to."""
    return f"devices/{client_id}/messages/events/{property_bag}"


def property_bag(
    *,
    stream_group: str | None,
    stream: str | None,
    batch_id: str | None = None,
    batch_slice_id: str | None = None,
    message_id: str | None = None,
    chunk_id: str | None = None,
    compressed: bool = False,
    complete_batch: bool = False,
    complete_message: bool = False,
) -> str:
    """Return the URL-encoded property bag, in the order the platform's SDK writes it."""
    pairs: list[tuple[str, str | None]] = [
        ("stream-group-name", stream_group),
        ("stream-name", stream),
        ("batch-id", batch_id),
        ("batch-slice-id", batch_slice_id),
        ("message-id", message_id),
        ("chunk-id", chunk_id),
        ("content-encoding", "br" if compressed else None),
        ("complete-batch", "true" if complete_batch else None),
        ("complete-message", "true" if complete_message else None),
        ("ignore-payload", "true" if complete_batch or complete_message else None),
    ]
    return "&".join(f"{key}={quote(value, safe='')}" for key, value in pairs if value is not None)


def twin_get_topic(request_id: int) -> str:
    """Return the topic that asks for the whole twin."""
    return f"$iothub/twin/GET/?$rid={request_id}"


def twin_reported_topic(request_id: int) -> str:
    """Return the topic that patches the reported properties."""
    return f"$iothub/twin/PATCH/properties/reported/?$rid={request_id}"


def parse_twin_response(topic: str) -> tuple[int, int | None] | None:
    """Return (status, request id) of a twin response topic, None if it is something else."""
    if not topic.startswith(TWIN_RESPONSE_PREFIX):
        return None
    status_text, _, query = topic[len(TWIN_RESPONSE_PREFIX) :].partition("/?")
    parameters = _query(query)
    try:
        status = int(status_text)
        request_id = int(parameters["$rid"]) if "$rid" in parameters else None
    except ValueError:
        return None
    return status, request_id


def parse_desired_patch_version(topic: str) -> int | None:
    """Return the version of a desired-properties patch topic, None if it is something else."""
    if not topic.startswith(DESIRED_PATCH_PREFIX):
        return None
    parameters = _query(topic[len(DESIRED_PATCH_PREFIX) :].removeprefix("?"))
    try:
        return int(parameters["$version"])
    except (KeyError, ValueError):
        return None


def _query(query: str) -> dict[str, str]:
    return dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
