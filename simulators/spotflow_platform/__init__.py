"""A faithful Spotflow IoT Platform on loopback: HTTPS device API and MQTT-over-TLS hub."""

from .published_sdk import platform_for_published_sdk
from .simulator import PlatformSimulator
from .store import DeadLetter, StoredMessage
from .workspace import Operation

__all__ = [
    "DeadLetter",
    "Operation",
    "PlatformSimulator",
    "StoredMessage",
    "platform_for_published_sdk",
]
