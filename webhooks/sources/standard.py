"""crmsync's own contract (`POST /webhooks/crm`), the first source: Standard Webhooks signatures over
one event in crmsync's JSON schema, for in-house systems that send crmsync's events themselves.

Unlike the CRMs' batches, a request is one event: an invalid one is answered 422 with the schema's
messages (its sender is ours to fix), not acknowledged and rejected on its own.
"""

from __future__ import annotations

from typing import Any

from ..decoding import MalformedJSON, decode_json
from ..schemas import ValidationError, load_event
from ..signature import SignatureError, verify_signature
from .items import AuthenticationFailed, InboundRequest, MappedEvent, SourceError, UnparseableBody

__all__ = ["NAME", "StandardSource", "InvalidEvent"]

NAME = "crm"


class InvalidEvent(SourceError):
    """The body is JSON but not an event of the contract (answered 422 with `messages`)."""

    reason = "invalid_event"

    def __init__(self, messages: Any) -> None:
        super().__init__("The event does not match the webhook contract.")
        self.messages = messages


class StandardSource:
    """Verifies Standard Webhooks signatures (every configured secret) and validates the event."""

    name = NAME

    def __init__(self, secrets: tuple[bytes, ...], tolerance_seconds: int) -> None:
        self._secrets = secrets
        self._tolerance = tolerance_seconds

    def authenticate(self, request: InboundRequest) -> str:
        """The verified delivery id; AuthenticationFailed names the failure."""
        try:
            delivery = verify_signature(request.headers, request.body, self._secrets, self._tolerance)
        except SignatureError as exc:
            raise AuthenticationFailed(exc.reason, str(exc)) from None
        return delivery.webhook_id

    def read(self, body: bytes, webhook_id: str) -> MappedEvent:
        """The validated event; UnparseableBody (not JSON) or InvalidEvent (not the contract)."""
        try:
            payload = decode_json(body)
        except MalformedJSON as exc:
            raise UnparseableBody(str(exc)) from None
        try:
            return MappedEvent(webhook_id, load_event(payload))
        except ValidationError as exc:
            raise InvalidEvent(exc.messages) from None
