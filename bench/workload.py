"""The events the benchmarks send: a CRM bulk edit over many customers, and the purchases it erases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.cli.sender import signed_request

__all__ = ["mixed_events", "purchases", "purchase_id", "ingest_event", "signed_lines", "line_request"]

_START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
# One customer's life, in CRM order: 10 % creates, 70 % updates, 10 % deletes; plus 10 % erasures, each
# for another person (an erasure scrubs and cancels the queued events of its own customer, so an erasure
# amid the customer's backlog would cancel most of the work this benchmark is meant to measure).
LIFE = ("created", "updated", "updated", "updated", "updated", "updated", "updated",
        "erasure_requested", "updated", "deleted")  # fmt: skip


def purchase_id(customer: int) -> int:
    return 500_000 + customer


def mixed_events(count: int, customers: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` (webhook id, event) pairs, round-robin over `customers` so that neighbours in the queue
    belong to different customers (a bulk edit), each customer going through LIFE in timestamp order."""
    events: list[tuple[str, dict[str, Any]]] = []
    for step in range(count // customers + 1):
        kind = LIFE[step % len(LIFE)]
        for customer in range(customers):
            if len(events) == count:
                return events
            at = (_START + timedelta(seconds=step)).isoformat().replace("+00:00", "Z")
            events.append((f"msg_bench_{step}_{customer}", _event(kind, customer, step, at)))
    return events


def _event(kind: str, customer: int, step: int, at: str) -> dict[str, Any]:
    external_id = f"crm-{customer:05d}" if kind != "erasure_requested" else f"crm-erased-{customer:05d}"
    data: dict[str, Any] = {"external_id": external_id}
    if kind in ("created", "updated"):
        # Names are unique on the platform; an update carrying one also creates a missing customer.
        data |= {"name": f"Customer {customer:05d} v{step}", "labels": ["Bench", f"step-{step}"]}
        if kind == "created":
            data["description"] = f"Customer {customer:05d}, created by the benchmark"
    elif kind == "erasure_requested":
        data["purchase_ids"] = [purchase_id(customer)]
    return {"type": f"customer.{kind}", "timestamp": at, "data": data}


def purchases(customers: int) -> list[dict[str, Any]]:
    """One purchase per customer, in the sandbox's Purchase shape, for the erasures to anonymise."""
    return [
        {
            "id": purchase_id(customer),
            "customer": {"id": 1_000_000 + customer},
            "customerCountry": {"id": "MT"},
            "billingContact": {
                "id": 2_000_000 + customer,
                "company": None,
                "firstName": "Han",
                "lastName": "Solo",
                "email": "han.solo@example.com",
                "addressLine1": "123 Test Ave",
                "addressLine2": None,
                "postalCode": "1234",
                "city": "Tatooine",
                "country": {"id": "MT", "name": "Malta"},
                "state": None,
            },  # fmt: skip
            "deliveryContact": None,
            "licenseeContact": None,
        }
        for customer in range(customers)
    ]


def ingest_event(index: int) -> dict[str, Any]:
    """A typical `customer.updated` delivery (about 250 bytes signed)."""
    return {
        "type": "customer.updated",
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
        "data": {"external_id": f"crm-{index % 5000:05d}", "name": f"Customer {index}", "labels": ["Bench"]},
    }


def signed_lines(secret: bytes, count: int, distinct_ids: int | None = None, tag: str = "") -> Iterator[str]:
    """Pre-signed deliveries, one per line: `id TAB timestamp TAB signature TAB body`, stamped now.

    With `distinct_ids`, ids repeat every `distinct_ids` deliveries: a redelivery storm (duplicates).
    """
    run = f"{tag}{datetime.now(UTC):%H%M%S}"
    for index in range(count):
        number = index % distinct_ids if distinct_ids else index
        headers, body = signed_request(secret, ingest_event(number), webhook_id=f"msg_{run}_{number}")
        yield "\t".join(
            (headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"], body.decode())
        )


def line_request(line: str) -> tuple[dict[str, str], bytes]:
    """The headers and body of one `signed_lines` delivery, as a sender posts it."""
    webhook_id, timestamp, signature, text = line.split("\t", 3)
    headers = {"Content-Type": "application/json", "webhook-id": webhook_id,
               "webhook-timestamp": timestamp, "webhook-signature": signature}  # fmt: skip
    return headers, text.encode()
