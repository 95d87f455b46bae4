"""Brotli compression of stream messages, applied only when it makes the payload smaller."""

from __future__ import annotations

import brotli

from .models import Compression

_QUALITY = {Compression.FASTEST: 1, Compression.SMALLEST_SIZE: 11}


def compress(payload: bytes, compression: Compression) -> tuple[bytes, bool]:
    """Return the payload to send and whether it is Brotli-compressed."""
    if compression is Compression.UNCOMPRESSED or not payload:
        return payload, False
    compressed: bytes = brotli.compress(payload, quality=_QUALITY[compression])
    if len(compressed) < len(payload):
        return compressed, True
    return payload, False
