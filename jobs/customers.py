"""Customer writes by external id: the platform only mutates by its own id, so each one looks up first."""

from __future__ import annotations

from typing import Any

from crmsync.core.errors import CustomerNotYetCreated, PayloadErrors, PermanentError

from .documents import CREATE_CUSTOMER, DELETE_CUSTOMER, FIND_CUSTOMER, UPDATE_CUSTOMER
from .platform_api import PlatformApi

__all__ = ["find_customer_id", "upsert_customer", "delete_customer", "clear_description"]


def find_customer_id(api: PlatformApi, external_id: str) -> str | None:
    """The platform id of the (non-system) customer with `external_id`, or None."""
    data = api.execute(FIND_CUSTOMER, {"externalId": external_id})
    nodes = data["customers"]["nodes"]
    if len(nodes) > 1:
        raise PermanentError("several platform customers share this external id")
    return str(nodes[0]["id"]) if nodes else None


def upsert_customer(api: PlatformApi, external_id: str, fields: dict[str, Any]) -> str:
    """Create the customer with `fields`, or update only `fields` on the existing one; return its id.

    The lookup happens on every attempt, so a retry after a create whose answer was lost finds the
    customer and updates it instead of creating it twice.
    """
    customer_id = find_customer_id(api, external_id)
    if customer_id is None:
        if "name" not in fields:
            raise CustomerNotYetCreated("customer does not exist yet and the event carries no name")
        data = api.execute(CREATE_CUSTOMER, {"input": {"externalId": external_id, **fields}})
        return _customer_id(data, "createCustomer")
    data = api.execute(UPDATE_CUSTOMER, {"input": {"id": customer_id, **fields}})
    return _customer_id(data, "updateCustomer")


def delete_customer(api: PlatformApi, external_id: str) -> bool:
    """Delete the customer; True if one was deleted, False if it was already absent (also success)."""
    customer_id = find_customer_id(api, external_id)
    if customer_id is None:
        return False
    _customer_id(api.execute(DELETE_CUSTOMER, {"input": {"id": customer_id}}), "deleteCustomer")
    return True


def _customer_id(data: dict[str, Any], mutation: str) -> str:
    # The payload's own `errors` list, not a top-level key: the platform's tutorial checks the wrong place.
    payload = data.get(mutation) or {}
    errors = payload.get("errors") or []
    if errors:
        details = "; ".join(f"{e.get('field')}: {' '.join(e.get('messages') or [])}" for e in errors)
        raise PayloadErrors(f"{mutation} failed: {details}")
    customer = payload.get("customer")
    if not customer:
        raise PayloadErrors(f"{mutation} returned no customer")
    return str(customer["id"])


def clear_description(api: PlatformApi, external_id: str) -> bool:
    """Set the customer's description to "" (ERASURE_CUSTOMER_ACTION=anonymize); False if absent."""
    customer_id = find_customer_id(api, external_id)
    if customer_id is None:
        return False
    data = api.execute(UPDATE_CUSTOMER, {"input": {"id": customer_id, "description": ""}})
    payload = data.get("updateCustomer") or {}
    if payload.get("errors") or not payload.get("customer"):
        # The messages are not copied: they may echo the customer's current values.
        raise PayloadErrors("updateCustomer refused to clear the description")
    return True
