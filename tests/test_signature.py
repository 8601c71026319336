"""Standard Webhooks verification, one test per failure mode."""

from __future__ import annotations

import base64
from dataclasses import FrozenInstanceError

import pytest

from webhooks.signature import (
    InvalidSignature,
    MalformedTimestamp,
    MissingHeader,
    SignatureError,
    TimestampOutOfTolerance,
    sign,
    verify_signature,
)

SECRET = b"first-secret-0123456789"
OTHER = b"second-secret-9876543210"
NOW = 1_790_000_000
BODY = b'{"type":"customer.deleted"}'


def headers(
    secret: bytes = SECRET, timestamp: int = NOW, body: bytes = BODY, webhook_id: str = "msg_1"
) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def test_valid_signature_returns_delivery_identity() -> None:
    delivery = verify_signature(headers(), BODY, [SECRET], 300, now=NOW)
    assert (delivery.webhook_id, delivery.timestamp) == ("msg_1", NOW)


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example from the Standard Webhooks specification's reference libraries.
    secret = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_named(missing: str) -> None:
    given = headers()
    del given[missing]
    with pytest.raises(MissingHeader, match=missing):
        verify_signature(given, BODY, [SECRET], 300, now=NOW)


def test_non_numeric_timestamp_is_malformed() -> None:
    given = {**headers(), "webhook-timestamp": "yesterday"}
    with pytest.raises(MalformedTimestamp):
        verify_signature(given, BODY, [SECRET], 300, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamp_outside_tolerance_in_either_direction_is_rejected(skew: int) -> None:
    given = headers(timestamp=NOW + skew)
    with pytest.raises(TimestampOutOfTolerance):
        verify_signature(given, BODY, [SECRET], 300, now=NOW)


@pytest.mark.parametrize("skew", [-300, 300])
def test_timestamp_at_the_tolerance_edge_is_accepted(skew: int) -> None:
    verify_signature(headers(timestamp=NOW + skew), BODY, [SECRET], 300, now=NOW)


def test_signature_from_an_unknown_secret_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(headers(secret=OTHER), BODY, [SECRET], 300, now=NOW)


def test_tampered_body_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(headers(), BODY + b" ", [SECRET], 300, now=NOW)


def test_signature_bound_to_its_webhook_id() -> None:
    given = {**headers(), "webhook-id": "msg_2"}
    with pytest.raises(InvalidSignature):
        verify_signature(given, BODY, [SECRET], 300, now=NOW)


def test_any_configured_secret_verifies_during_rotation() -> None:
    verify_signature(headers(secret=OTHER), BODY, [SECRET, OTHER], 300, now=NOW)


def test_one_valid_entry_among_several_signatures_is_enough() -> None:
    valid = headers()["webhook-signature"]
    given = {**headers(), "webhook-signature": f"v1a,ZWQyNTUxOQ== garbage v1,AAAA {valid}"}
    verify_signature(given, BODY, [SECRET], 300, now=NOW)


@pytest.mark.parametrize("signature", ["v1,", "v2," + "A" * 44, "nocomma", "v1,not base64!"])
def test_malformed_signature_entries_are_invalid_not_errors(signature: str) -> None:
    given = {**headers(), "webhook-signature": signature}
    with pytest.raises(InvalidSignature):
        verify_signature(given, BODY, [SECRET], 300, now=NOW)


@pytest.mark.parametrize(
    "spelling",
    [f"+{NOW}", f"0{NOW}", f"{str(NOW)[:4]}_{str(NOW)[4:]}", f"{NOW}.0", "١٧٩٠٠٠٠٠٠٠", "9" * 400, "-5"],
)
def test_timestamp_other_than_plain_digits_is_malformed(spelling: str) -> None:
    # Each of these once parsed to an integer (or overflowed); signed over that integer, it verified.
    given = {**headers(), "webhook-timestamp": spelling}
    with pytest.raises(MalformedTimestamp):
        verify_signature(given, BODY, [SECRET], 300, now=NOW)


@pytest.mark.parametrize(
    ("error", "reason", "message"),
    [
        (MissingHeader("webhook-id"), "missing_header", "missing required header webhook-id"),
        (MalformedTimestamp(), "malformed_timestamp",
         "webhook-timestamp must be unix seconds in plain digits"),
        (TimestampOutOfTolerance(300), "timestamp_out_of_tolerance",
         "webhook-timestamp is more than 300 s away from the server's clock"),
        (InvalidSignature(), "invalid_signature",
         "no webhook-signature entry matches the body with a configured secret"),
        (SignatureError("any other"), "invalid_signature", "any other"),
    ],
    ids=["missing", "malformed", "out-of-tolerance", "invalid", "base"],
)  # fmt: skip
def test_each_failure_has_its_reason_and_the_message_the_401_carries(
    error: SignatureError, reason: str, message: str
) -> None:
    assert (error.reason, str(error)) == (reason, message)


def test_a_verified_delivery_cannot_be_altered() -> None:
    delivery = verify_signature(headers(), BODY, [SECRET], 300, now=NOW)
    with pytest.raises(FrozenInstanceError):
        delivery.webhook_id = "msg_forged"  # type: ignore[misc]
