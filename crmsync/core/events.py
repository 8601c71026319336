"""The event model, shared by the receiving and the applying side: the event types, and `Event`, one
accepted CRM event (plain JSON in the queue, a typed view in code)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "CUSTOMER_CREATED",
    "CUSTOMER_UPDATED",
    "CUSTOMER_DELETED",
    "CUSTOMER_MERGED",
    "ERASURE_REQUESTED",
    "EVENT_TYPES",
    "Event",
    "CUSTOMER_FIELDS",
    "PERSONAL_FIELDS",
    "normalize_labels",
    "parse_version",
]

# The event types of the webhook contract, defined here only.
CUSTOMER_CREATED = "customer.created"
CUSTOMER_UPDATED = "customer.updated"
CUSTOMER_DELETED = "customer.deleted"
ERASURE_REQUESTED = "customer.erasure_requested"
# Records merged in the CRM: `external_id` is the survivor as it is known from now on, `merged_ids`
# the ids merged into it, in order of preference — when no customer has `external_id` yet, the first
# of them that has one is kept and re-keyed to it (HubSpot's `newObjectId`); the others are deleted,
# and each id in `merged_ids` becomes an alias of the survivor for events after the merge.
CUSTOMER_MERGED = "customer.merged"
EVENT_TYPES = (CUSTOMER_CREATED, CUSTOMER_UPDATED, CUSTOMER_DELETED, ERASURE_REQUESTED, CUSTOMER_MERGED)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Fields of the customer record that crmsync keeps in sync, in their CRM (and GraphQL input) names.
CUSTOMER_FIELDS = ("name", "description", "labels")
# Fields that may hold personal data: never logged, scrubbed from Redis on erasure.
PERSONAL_FIELDS = ("name", "description", "labels")


@dataclass(frozen=True)
class Event:
    """One CRM event: its delivery id, type, CRM timestamp and validated data."""

    webhook_id: str
    type: str
    timestamp: str
    data: dict[str, Any]

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Event:
        return cls(
            webhook_id=payload["webhook_id"],
            type=payload["type"],
            timestamp=payload["timestamp"],
            data=payload["data"],
        )

    def to_payload(self) -> dict[str, Any]:
        """The event as the job's plain-JSON argument (what `from_payload` reads back)."""
        return {
            "webhook_id": self.webhook_id,
            "type": self.type,
            "timestamp": self.timestamp,
            "data": self.data,
        }

    @property
    def external_id(self) -> str:
        return str(self.data["external_id"])

    @property
    def version(self) -> str:
        """A totally ordered version: CRM time in microseconds, then the webhook id as tie-break,
        as text whose order is time order from year 1 to 9999 (what the schema accepts).

        Two events stamped with the same microsecond are ordered by webhook id, so every worker
        reaches the same verdict whatever order they arrive in.
        """
        moment = datetime.fromisoformat(self.timestamp)
        micros = (moment - _EPOCH) // timedelta(microseconds=1)
        if micros >= 0:
            return f"{micros:020d}|{self.webhook_id}"
        # Before 1970: "-" sorts before every digit, and 10**19 + micros (19 digits down to year 1)
        # grows with the time, so text order stays time order and post-1970 versions keep their form.
        return f"-{10**19 + micros:019d}|{self.webhook_id}"

    def customer_fields(self) -> dict[str, Any]:
        """The customer fields this event sets; a create sets all of them (absent ones to empty)."""
        fields = {name: self.data[name] for name in CUSTOMER_FIELDS if name in self.data}
        if self.type == CUSTOMER_CREATED:
            fields.setdefault("description", "")
            fields.setdefault("labels", [])
        if "labels" in fields:
            fields["labels"] = normalize_labels(fields["labels"])
        return fields

    def personal_values(self) -> list[str]:
        """Every personal string this event carries, for redacting messages that may echo them."""
        values: list[str] = []
        for name in PERSONAL_FIELDS:
            value = self.data.get(name)
            if isinstance(value, str):
                values.append(value)
            elif isinstance(value, list):
                values.extend(str(item) for item in value)
        return [value for value in values if value]


def normalize_labels(labels: list[str]) -> list[str]:
    """Lower-case and de-duplicate, keeping first-seen order (the platform lower-cases labels too)."""
    return list(dict.fromkeys(label.lower() for label in labels))


def parse_version(version: str) -> tuple[datetime, str]:
    """The CRM time and webhook id of a version made by `Event.version` (for showing it to operators)."""
    digits, _, webhook_id = version.partition("|")
    micros = int(digits[1:]) - 10**19 if digits.startswith("-") else int(digits)
    return _EPOCH + timedelta(microseconds=micros), webhook_id
