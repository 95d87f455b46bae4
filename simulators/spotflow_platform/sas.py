"""Shared access signatures in the Azure IoT Hub format the Spotflow platform hands to devices."""

from __future__ import annotations

import base64
from dataclasses import dataclass
import hashlib
import hmac
from urllib.parse import parse_qs, quote

_PREFIX = "SharedAccessSignature "


@dataclass(frozen=True, slots=True)
class SasToken:
    """The parts of a parsed `SharedAccessSignature sr=...&sig=...&se=...` string."""

    resource: str
    signature: str
    expiry: int


def _sign(key: bytes, resource: str, expiry: int) -> str:
    to_sign = f"{quote(resource, safe='')}\n{expiry}".encode()
    return base64.b64encode(hmac.digest(key, to_sign, hashlib.sha256)).decode()


def create_sas(key: bytes, resource: str, expiry: int) -> str:
    """Return the SAS string a device presents as its MQTT password."""
    signature = quote(_sign(key, resource, expiry), safe="")
    return f"{_PREFIX}sr={quote(resource, safe='')}&sig={signature}&se={expiry}"


def parse_sas(value: str) -> SasToken | None:
    """Parse a SAS string; None when it is not one."""
    if not value.startswith(_PREFIX):
        return None
    fields = parse_qs(value.removeprefix(_PREFIX), keep_blank_values=True)
    try:
        (resource,), (signature,), (expiry,) = fields["sr"], fields["sig"], fields["se"]
        return SasToken(resource, signature, int(expiry))
    except (KeyError, ValueError):
        return None


def signature_matches(key: bytes, token: SasToken) -> bool:
    """Check the HMAC-SHA256 signature in constant time."""
    return hmac.compare_digest(_sign(key, token.resource, token.expiry), token.signature)
