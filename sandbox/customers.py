"""The customers of the sandbox platform and the platform's rules for changing them.

Not thread-safe on its own: SandboxStore calls it under its lock.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

_SORT_KEYS = {"CREATED_AT": "created", "UPDATED_AT": "updated", "NAME": "name", "DESCRIPTION": "description"}


class PayloadErrors(Exception):
    """A mutation was refused; `errors` is the payload's `[{field, messages}]` list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {' '.join(e['messages'])}" for e in errors))
        self.errors = errors


def field_error(field: str, message: str) -> dict[str, Any]:
    """Shape one payload error."""
    return {"field": field, "messages": [message]}


def quoted(value: Any) -> str:
    """Quote a submitted value for an error message the way GraphQL servers do: as JSON.

    Like a real API ("Name 'Jane Doe' is already taken"), the sandbox echoes submitted values in its
    errors, so a client's redaction of personal data in stored messages is actually exercised.
    """
    return json.dumps(value, ensure_ascii=False)


@dataclass
class CustomerRecord:
    """One customer, with the sequence numbers the CREATED_AT and UPDATED_AT orders sort by."""

    id: str
    name: str
    description: str
    external_id: str | None
    labels: list[str] | None
    created: int
    updated: int

    def to_node(self) -> dict[str, Any]:
        """Return the customer as the schema's Customer type, copying the labels list."""
        labels = None if self.labels is None else list(self.labels)
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "externalId": self.external_id,
            "labels": labels,
        }


class CustomerBook:
    """All customers, in creation order, with uniqueness of name and externalId enforced."""

    def __init__(self) -> None:
        self._by_id: dict[str, CustomerRecord] = {}
        # A counter, not the wall clock, so two changes in the same microsecond still order.
        self._clock = itertools.count(1)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, customer_id: str) -> CustomerRecord | None:
        """Return the customer with this id, if any."""
        return self._by_id.get(customer_id)

    def create(self, values: Mapping[str, Any]) -> CustomerRecord:
        """Add a customer from CreateCustomerInput fields, or raise PayloadErrors."""
        self._check(values, exclude=None)
        tick = next(self._clock)
        record = CustomerRecord(
            id=base64.b64encode(f"Customer:{uuid.uuid4()}".encode()).decode(),
            name=values["name"],
            description=values.get("description") or "",
            external_id=values.get("externalId"),
            labels=_labels(values.get("labels", [])),
            created=tick,
            updated=tick,
        )
        self._by_id[record.id] = record
        return record

    def update(self, customer_id: str | None, values: Mapping[str, Any]) -> CustomerRecord:
        """Change only the fields present in `values`; labels are replaced as a whole."""
        record = self._existing(customer_id)
        self._check(values, exclude=record)
        if "name" in values:
            record.name = values["name"]
        if "description" in values:
            record.description = values["description"] or ""
        if "externalId" in values:
            record.external_id = values["externalId"]
        if "labels" in values:
            record.labels = _labels(values["labels"])
        record.updated = next(self._clock)
        return record

    def delete(self, customer_id: str | None) -> CustomerRecord:
        """Remove a customer and return it as it was."""
        return self._by_id.pop(self._existing(customer_id).id)

    def search(
        self,
        *,
        external_id: str | None = None,
        is_system: bool | None = None,
        name: str | None = None,
        name_icontains: str | None = None,
        labels_contains: str | None = None,
        sort_by: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[CustomerRecord]:
        """Return the customers matching every given filter, in the requested order."""
        # Every sandbox customer is a non-system one.
        found = [] if is_system else list(self._by_id.values())
        if external_id is not None:
            found = [c for c in found if c.external_id == external_id]
        if name is not None:
            found = [c for c in found if c.name == name]
        if name_icontains is not None:
            found = [c for c in found if name_icontains.casefold() in c.name.casefold()]
        if labels_contains is not None:
            # Labels are stored lower-cased, so match the way the platform's UI would.
            found = [c for c in found if labels_contains.lower() in (c.labels or [])]
        found.sort(key=lambda c: c.created)
        for order in reversed([o for o in sort_by or [] if o is not None]):
            found.sort(key=attrgetter(_SORT_KEYS[order["field"]]), reverse=order["direction"] == "DESC")
        return found

    def _existing(self, customer_id: str | None) -> CustomerRecord:
        """Return the customer a mutation names, or raise PayloadErrors on a missing or unknown id."""
        if not customer_id:
            raise PayloadErrors([field_error("id", "This field is required.")])
        record = self._by_id.get(customer_id)
        if record is None:
            raise PayloadErrors([field_error("id", "Customer not found.")])
        return record

    def _check(self, values: Mapping[str, Any], exclude: CustomerRecord | None) -> None:
        """Raise PayloadErrors listing every rule the new values break."""
        others = [c for c in self._by_id.values() if c is not exclude]
        errors = []
        if "name" in values and not (values["name"] or "").strip():
            errors.append(field_error("name", "This field cannot be blank."))
        elif "name" in values and any(c.name == values["name"] for c in others):
            errors.append(field_error("name", f"Name {quoted(values['name'])} is already taken."))
        external_id = values.get("externalId")
        if external_id is not None and any(c.external_id == external_id for c in others):
            errors.append(field_error("externalId", f"External ID {quoted(external_id)} is already taken."))
        if None in (values.get("labels") or []):
            errors.append(field_error("labels", f"Labels must not contain null: {quoted(values['labels'])}."))
        if errors:
            raise PayloadErrors(errors)


def _labels(labels: Sequence[str] | None) -> list[str]:
    """Lower-case labels as the platform does; a null list clears them."""
    return [label.lower() for label in labels or []]
