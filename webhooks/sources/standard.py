"""crmsync's own contract (`POST /webhooks/standard`, and `/webhooks/crm` where CRMs were pointed
before): Standard Webhooks signatures over one event in crmsync's JSON schema, for in-house systems
that send crmsync's events themselves. A request is a batch of one.

Unlike the CRMs' batches, an invalid event is answered 422 with the schema's messages (its sender is
ours to fix), not acknowledged and rejected on its own; a new event is answered 202 with its job id,
a redelivered one 200.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crmsync.core.events import CUSTOMER_CREATED
from crmsync.core.settings import SettingsError, positive_int

from ..decoding import MalformedJSON, decode_json
from ..schemas import ValidationError, load_event
from ..signature import SignatureError, sign, verify_signature
from .items import (
    AuthenticationFailed,
    InboundRequest,
    MappedEvent,
    SourceBatch,
    SourceError,
    UnparseableBody,
)
from .kind import JSON, Acceptance, EnvVar, Reply, Sample

__all__ = ["NAME", "ALIAS", "KIND", "StandardSettings", "StandardSource", "InvalidEvent", "parse_secrets"]

NAME = "standard"
# The path CRMs were pointed at before the registry named every source: it still answers.
ALIAS = "crm"
SECRET_PREFIX = "whsec_"


class InvalidEvent(SourceError):
    """The body is JSON but not an event of the contract (answered 422 with the schema's messages)."""

    reason = "invalid_event"
    status = 422

    def __init__(self, messages: Any) -> None:
        super().__init__("The event does not match the webhook contract.")
        self.messages = messages

    @property
    def details(self) -> dict[str, Any]:
        return {"errors": self.messages}


class MalformedEvent(UnparseableBody):
    """The body is not JSON (answered 400)."""

    reason = "malformed_json"


@dataclass(frozen=True)
class StandardSettings:
    """WEBHOOK_SECRET (several for a rotation) and the signature's time window."""

    secrets: tuple[bytes, ...] = field(repr=False)
    tolerance_seconds: int = 300


class StandardSource:
    """Verifies Standard Webhooks signatures (every configured secret) and validates the event."""

    name = NAME
    media_type = JSON
    counts_refusals = True

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
        """The validated event; MalformedEvent (not JSON) or InvalidEvent (not the contract)."""
        try:
            payload = decode_json(body)
        except MalformedJSON as exc:
            raise MalformedEvent(str(exc)) from None
        try:
            return MappedEvent(webhook_id, load_event(payload))
        except ValidationError as exc:
            raise InvalidEvent(exc.messages) from None

    def receive(self, request: InboundRequest) -> SourceBatch:
        webhook_id = self.authenticate(request)
        return SourceBatch(NAME, events=[self.read(request.body, webhook_id)])

    def accepted(self, batch: SourceBatch, outcomes: Sequence[Acceptance]) -> Reply:
        (outcome,) = outcomes
        answer = json.dumps({"status": _outcome(outcome), "job_id": outcome.job_id}).encode()
        return Reply(202 if outcome.is_new else 200, answer)

    def refused(self, status: int, reason: str, message: str, details: Mapping[str, Any]) -> Reply | None:
        return None

    def receipt(self, batch: SourceBatch, outcomes: Sequence[Acceptance]) -> tuple[str, dict[str, Any]]:
        (mapped,), (outcome,) = batch.events, outcomes
        fields = {
            "event": "webhook_received",
            "webhook_id": mapped.delivery_id,
            "job_id": outcome.job_id,
            "type": mapped.event["type"],
            "external_id": mapped.event["data"]["external_id"],
            "outcome": _outcome(outcome),
        }
        return f"webhook {fields['outcome']}", fields


def _outcome(outcome: Acceptance) -> str:
    return "queued" if outcome.is_new else "duplicate"


def parse_secrets(value: str) -> tuple[bytes, ...]:
    """Decode `whsec_<base64>` secrets separated by spaces or commas (several allow rotation)."""
    secrets = []
    for token in re.split(r"[\s,]+", value.strip()):
        if not token:
            continue
        if not token.startswith(SECRET_PREFIX):
            raise SettingsError("WEBHOOK_SECRET: each secret must start with 'whsec_'")
        try:
            key = base64.b64decode(token[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise SettingsError("WEBHOOK_SECRET: a secret is not valid base64 after 'whsec_'") from exc
        if not key:
            raise SettingsError("WEBHOOK_SECRET: a secret is empty")
        secrets.append(key)
    return tuple(secrets)


class StandardKind:
    """crmsync's own contract in the registry. It has no table in the mappings file: its events are
    crmsync's already."""

    name = NAME
    title = "crmsync's own contract (Standard Webhooks)"
    env_vars = (
        EnvVar("WEBHOOK_SECRET", "Standard Webhooks secret(s) `whsec_<base64>`, comma-separated to rotate"),
        EnvVar("WEBHOOK_TOLERANCE_SECONDS", "How far a signature's timestamp may be from now (default 300)"),
    )
    enabled_by = ("WEBHOOK_SECRET",)
    default_mapping = None
    sample_id = "crm-0001"
    sample_name = "Mars Missions"
    version_fix = "send the record's last-modified time"

    def settings_from_env(self, env: Mapping[str, str]) -> StandardSettings | None:
        secrets = parse_secrets(env.get("WEBHOOK_SECRET", ""))
        tolerance = positive_int(env, "WEBHOOK_TOLERANCE_SECONDS", 300)
        return StandardSettings(secrets, tolerance) if secrets else None

    def load_mapping(self, table: Any, errors: list[str]) -> None:
        errors.append(f"{NAME}: crmsync's own contract has no mapping (its events are crmsync's)")

    def describe_mapping(self, mapping: None) -> Any:
        return None

    def mapping_lines(self, mapping: None) -> list[str]:
        return []

    def id_prefixes(self, mapping: None) -> set[str]:
        return {""}

    def build(self, settings: StandardSettings, mapping: None) -> StandardSource:
        return StandardSource(settings.secrets, settings.tolerance_seconds)

    def read_payload(self, body: bytes, mapping: None) -> SourceBatch:
        return SourceBatch(NAME, events=[StandardSource((), 0).read(body, "preview")])

    def dev_env(self) -> dict[str, str]:
        return {"WEBHOOK_SECRET": SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()}

    def sample(self, env: Mapping[str, str], url: str, external_id: str, name: str) -> Sample:
        settings = self.settings_from_env(env)
        if settings is None:
            raise ValueError("set WEBHOOK_SECRET to what the service verifies standard webhooks with")
        data = {"external_id": external_id, "name": name, "description": f"{name} Corp", "labels": ["sample"]}
        event = {"type": CUSTOMER_CREATED, "timestamp": datetime.now(UTC).isoformat(), "data": data}
        return Sample(*signed_delivery(settings.secrets[0], event))


def signed_delivery(
    secret: bytes, event: dict[str, Any], webhook_id: str | None = None, timestamp: int | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of a Standard Webhooks delivery of `event`."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "content-type": JSON,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }
    return headers, body


KIND = StandardKind()
