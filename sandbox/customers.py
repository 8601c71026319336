"""The customers of the sandbox platform and the platform's rules for changing them.

Not thread-safe on its own: SandboxStore calls it under its lock.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

_SORT_KEYS = {"CREATED_AT": "created", "UPDATED_AT": "updated", "NAME": "name", "DESCRIPTION": "description"}


class PayloadErrors(Exception):
    """A mutation was refused; `errors` is the payload's `[{field, messages}]` list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {' '.join(e['messages'])}" for e in errors))
        self.errors = errors


class InvalidCustomer(ValueError):
    """A customer to seed through the admin API is malformed or clashes; the message says which."""


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
    """One customer, with the sequence numbers the CREATED_AT and UPDATED_AT orders sort by.

    `is_system` marks the platform's internal test customers, which only seeding creates.
    """

    id: str
    name: str
    description: str
    external_id: str | None
    labels: list[str] | None
    created: int
    updated: int
    is_system: bool = False

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


@dataclass(frozen=True)
class CustomerFilter:
    """The `customers` query's filters; None means "not filtered on"."""

    external_id: str | None = None
    is_system: bool | None = None
    name: str | None = None
    name_icontains: str | None = None
    labels_contains: str | None = None

    def matches(self, c: CustomerRecord) -> bool:
        """Tell whether a customer passes every filter that is set."""
        return (
            (self.is_system is None or c.is_system == self.is_system)
            and (self.external_id is None or c.external_id == self.external_id)
            and (self.name is None or c.name == self.name)
            and (self.name_icontains is None or self.name_icontains.casefold() in c.name.casefold())
            # Labels are stored lower-cased, so match the way the platform's UI would.
            and (self.labels_contains is None or self.labels_contains.lower() in (c.labels or []))
        )

    def filters_only_on_is_system(self) -> bool:
        """Tell whether matching customers can be counted without looking at them."""
        return self == CustomerFilter(is_system=self.is_system)


class CustomerBook:
    """All customers, with uniqueness of name and externalId enforced through indexes.

    Creation ticks are kept in a sorted list, so a page in creation order starts with a bisection
    and costs the page's size, not the number of customers. Deleting leaves the tick in the list
    (skipped while reading) until enough have piled up to compact it.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, CustomerRecord] = {}
        self._by_name: dict[str, CustomerRecord] = {}
        self._by_external_id: dict[str, CustomerRecord] = {}
        self._by_tick: dict[int, CustomerRecord] = {}
        self._ticks: list[int] = []
        self._system_count = 0
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
        return self._add(values, is_system=False)

    def seed(self, customers: Sequence[Mapping[str, Any]]) -> int:
        """Add customers already checked by `sandbox.seeding`, all or none; raise InvalidCustomer on a
        name or externalId that is taken. Returns how many were added."""
        names: set[str] = set()
        external_ids: set[str] = set()
        for index, values in enumerate(customers):
            name, external_id = values["name"], values.get("externalId")
            if name in self._by_name or name in names:
                raise InvalidCustomer(f"Customer {index}: the name is already taken.")
            if external_id is not None and (
                external_id in self._by_external_id or external_id in external_ids
            ):
                raise InvalidCustomer(f"Customer {index}: the externalId is already taken.")
            names.add(name)
            if external_id is not None:
                external_ids.add(external_id)
        for values in customers:
            self._add(values, is_system=bool(values.get("isSystem")))
        return len(customers)

    def update(self, customer_id: str | None, values: Mapping[str, Any]) -> CustomerRecord:
        """Change only the fields present in `values`; labels are replaced as a whole."""
        record = self._existing(customer_id)
        self._check(values, exclude=record)
        if "name" in values:
            del self._by_name[record.name]
            record.name = values["name"]
            self._by_name[record.name] = record
        if "description" in values:
            record.description = values["description"] or ""
        if "externalId" in values:
            self._unindex_external_id(record)
            record.external_id = values["externalId"]
            self._index_external_id(record)
        if "labels" in values:
            record.labels = _labels(values["labels"])
        record.updated = next(self._clock)
        return record

    def delete(self, customer_id: str | None) -> CustomerRecord:
        """Remove a customer and return it as it was."""
        record = self._by_id.pop(self._existing(customer_id).id)
        del self._by_name[record.name]
        self._unindex_external_id(record)
        del self._by_tick[record.created]
        self._system_count -= record.is_system
        if len(self._ticks) > 2 * len(self._by_tick) + 1024:
            self._ticks = [tick for tick in self._ticks if tick in self._by_tick]
        return record

    def reissue(self, external_id: str) -> bool:
        """Delete the customer with `external_id` and create it again with the same values under a
        new id, as a restore on the platform's side would; False when there is none."""
        record = self._by_external_id.get(external_id)
        if record is None or record.is_system:
            return False
        self.delete(record.id)
        values = {"name": record.name, "description": record.description, "externalId": external_id,
                  "labels": record.labels}  # fmt: skip
        self._add(values, is_system=False)
        return True

    def search(
        self, wanted: CustomerFilter, sort_by: Sequence[Mapping[str, str] | None] = ()
    ) -> list[CustomerRecord]:
        """Return every customer matching `wanted`, in the requested order (creation order first)."""
        found = self.matching(wanted)
        for order in reversed([o for o in sort_by if o is not None]):
            found.sort(key=attrgetter(_SORT_KEYS[order["field"]]), reverse=order["direction"] == "DESC")
        return found

    def matching(self, wanted: CustomerFilter) -> list[CustomerRecord]:
        """Return the customers passing `wanted`, in creation order; by index when it names one."""
        candidates = self.indexed_candidates(wanted)
        if candidates is None:
            candidates = list(self._by_id.values())  # Insertion order is creation order.
        return [c for c in candidates if wanted.matches(c)]

    def indexed_candidates(self, wanted: CustomerFilter) -> list[CustomerRecord] | None:
        """The at most one customer an externalId or name filter can match, or None if neither is set."""
        if wanted.external_id is not None:
            found = self._by_external_id.get(wanted.external_id)
        elif wanted.name is not None:
            found = self._by_name.get(wanted.name)
        else:
            return None
        return [] if found is None else [found]

    def count(self, is_system: bool | None) -> int:
        """How many customers there are, of all, system or non-system ones."""
        if is_system is None:
            return len(self._by_id)
        return self._system_count if is_system else len(self._by_id) - self._system_count

    def in_creation_order(self, after: int | None, descending: bool) -> Iterator[CustomerRecord]:
        """Yield customers created after (before, if descending) the tick `after`, in that order."""
        ticks, by_tick = self._ticks, self._by_tick
        if descending:
            index = (len(ticks) if after is None else bisect.bisect_left(ticks, after)) - 1
            step = -1
        else:
            index = 0 if after is None else bisect.bisect_right(ticks, after)
            step = 1
        while 0 <= index < len(ticks):
            record = by_tick.get(ticks[index])
            if record is not None:
                yield record
            index += step

    def _add(self, values: Mapping[str, Any], is_system: bool) -> CustomerRecord:
        tick = next(self._clock)
        record = CustomerRecord(
            id=base64.b64encode(f"Customer:{uuid.uuid4()}".encode()).decode(),
            name=values["name"],
            description=values.get("description") or "",
            external_id=values.get("externalId"),
            labels=_labels(values.get("labels", [])),
            created=tick,
            updated=tick,
            is_system=is_system,
        )
        self._by_id[record.id] = record
        self._by_name[record.name] = record
        self._index_external_id(record)
        self._by_tick[tick] = record
        self._ticks.append(tick)
        self._system_count += is_system
        return record

    def _index_external_id(self, record: CustomerRecord) -> None:
        if record.external_id is not None:
            self._by_external_id[record.external_id] = record

    def _unindex_external_id(self, record: CustomerRecord) -> None:
        if record.external_id is not None:
            del self._by_external_id[record.external_id]

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
        errors = []
        name: str = values.get("name") or ""
        if "name" in values and not name.strip():
            errors.append(field_error("name", "This field cannot be blank."))
        elif "name" in values and _taken(self._by_name, name, exclude):
            errors.append(field_error("name", f"Name {quoted(name)} is already taken."))
        external_id = values.get("externalId")
        if external_id is not None and _taken(self._by_external_id, external_id, exclude):
            errors.append(field_error("externalId", f"External ID {quoted(external_id)} is already taken."))
        if None in (values.get("labels") or []):
            errors.append(field_error("labels", f"Labels must not contain null: {quoted(values['labels'])}."))
        if errors:
            raise PayloadErrors(errors)


def _taken(index: Mapping[str, CustomerRecord], value: str, exclude: CustomerRecord | None) -> bool:
    """Tell whether another customer than `exclude` holds `value` in a uniqueness index."""
    holder = index.get(value)
    return holder is not None and holder is not exclude


def _labels(labels: Sequence[str] | None) -> list[str]:
    """Lower-case labels as the platform does; a null list clears them."""
    return [label.lower() for label in labels or []]
