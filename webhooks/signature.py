"""Standard Webhooks signature verification over the raw request body.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256, sent as one or more
space-separated `v1,<base64>` entries. Every configured secret is tried, so a secret can be rotated
without downtime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "SignatureError",
    "MissingHeader",
    "MalformedTimestamp",
    "TimestampOutOfTolerance",
    "InvalidSignature",
    "SignedDelivery",
    "verify_signature",
    "sign",
]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
# Unix seconds as plain ASCII digits without leading zeros: `int()` would also take "+17", "0017",
# "1_7" and non-ASCII digits, each a second spelling of one signed value. At most 16 digits (some
# 300 million years): hundreds of digits are no instant, and thousands make `int()` itself fail.
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,15}")


class SignatureError(Exception):
    """A delivery's signature headers do not prove it came from the CRM."""

    reason = "invalid_signature"


class MissingHeader(SignatureError):
    reason = "missing_header"

    def __init__(self, header: str) -> None:
        super().__init__(f"missing required header {header}")


class MalformedTimestamp(SignatureError):
    reason = "malformed_timestamp"

    def __init__(self) -> None:
        super().__init__(f"{TIMESTAMP_HEADER} must be unix seconds in plain digits")


class TimestampOutOfTolerance(SignatureError):
    reason = "timestamp_out_of_tolerance"

    def __init__(self, tolerance: int) -> None:
        super().__init__(f"{TIMESTAMP_HEADER} is more than {tolerance} s away from the server's clock")


class InvalidSignature(SignatureError):
    reason = "invalid_signature"

    def __init__(self) -> None:
        super().__init__(f"no {SIGNATURE_HEADER} entry matches the body with a configured secret")


class Headers(Protocol):
    """Case-insensitive header lookup, as werkzeug's `Headers` (a plain lower-case dict also fits)."""

    def get(self, key: str, default: str, /) -> str: ...


@dataclass(frozen=True)
class SignedDelivery:
    """The verified identity of one delivery."""

    webhook_id: str
    timestamp: int


def sign(secret: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Return the `v1,<base64>` signature of a delivery (used by senders, tests and benchmarks)."""
    return _signature(secret, webhook_id, str(timestamp), body)


def _signature(secret: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_signature(
    headers: Headers,
    body: bytes,
    secrets: Iterable[bytes],
    tolerance_seconds: int,
    now: float | None = None,
) -> SignedDelivery:
    """Check a delivery's headers against its raw body; raise a SignatureError subclass if they fail."""
    webhook_id = _header(headers, ID_HEADER)
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    signatures = _header(headers, SIGNATURE_HEADER)
    if not _TIMESTAMP.fullmatch(raw_timestamp):
        raise MalformedTimestamp()
    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise TimestampOutOfTolerance(tolerance_seconds)
    # Signed over the header exactly as sent, the way the sender computed it.
    expected = [_signature(secret, webhook_id, raw_timestamp, body).encode() for secret in secrets]
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1" or not value:
            # Other schemes (v1a, ed25519) are not configured here; skip them like unknown entries.
            continue
        candidate = entry.encode()
        # Compare against every secret without an early exit so timing reveals nothing.
        matched = False
        for signature in expected:
            matched |= hmac.compare_digest(candidate, signature)
        if matched:
            return SignedDelivery(webhook_id=webhook_id, timestamp=timestamp)
    raise InvalidSignature()


def _header(headers: Headers, name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise MissingHeader(name)
    return value
