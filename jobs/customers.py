"""Customer writes by external id: the platform only mutates by its own id, so each one looks up first.

The platform's customer names are unique. A write whose name another customer holds fails as
`name_conflict`, naming that customer by external id; with NAME_CONFLICT_POLICY=suffix it is written
as "{name} ({externalId})" instead. Every write that carries a name tries the plain name first, so the
suffix goes away with the customer's next name change after the conflict ends.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from gql import GraphQLRequest

from crmsync.core.errors import (
    CustomerNotYetCreated,
    GraphQLErrors,
    NameConflict,
    PayloadErrors,
    PermanentError,
)

from .documents import (
    CREATE_CUSTOMER,
    DELETE_CUSTOMER,
    FIND_CUSTOMER,
    FIND_CUSTOMER_BY_NAME,
    FIND_CUSTOMER_FIELDS,
    UPDATE_CUSTOMER,
)
from .platform_api import PlatformApi

__all__ = [
    "find_customer_id",
    "find_customer",
    "upsert_customer",
    "Written",
    "rekey_customer",
    "delete_customer",
    "clear_description",
    "suffixed_name",
]

# How the platform words a taken name, in a payload error on `name` or in a top-level GraphQL error
# (which of the two is not confirmed: docs/crm-sources.md).
_TAKEN = re.compile(r"taken|already exists|unique|duplicate", re.IGNORECASE)


def find_customer_id(api: PlatformApi, external_id: str) -> str | None:
    """The platform id of the (non-system) customer with `external_id`, or None."""
    data = api.execute(FIND_CUSTOMER, {"externalId": external_id})
    nodes = data["customers"]["nodes"]
    if len(nodes) > 1:
        raise PermanentError("several platform customers share this external id")
    return str(nodes[0]["id"]) if nodes else None


def find_customer(api: PlatformApi, external_id: str) -> dict[str, Any] | None:
    """The (non-system) customer with `external_id`: its platform id and synced fields, or None."""
    nodes = api.execute(FIND_CUSTOMER_FIELDS, {"externalId": external_id})["customers"]["nodes"]
    if len(nodes) > 1:
        raise PermanentError("several platform customers share this external id")
    return dict(nodes[0]) if nodes else None


class Written(NamedTuple):
    """What `upsert_customer` did: the customer's platform id, and whether it created the customer."""

    customer_id: str
    created: bool


def upsert_customer(
    api: PlatformApi, external_id: str, fields: dict[str, Any], name_conflict_policy: str = "fail"
) -> Written:
    """Create the customer with `fields`, or update only `fields` on the existing one.

    The lookup happens on every attempt, so a retry after a create whose answer was lost finds the
    customer and updates it instead of creating it twice.
    """
    customer_id = find_customer_id(api, external_id)
    if customer_id is None:
        if "name" not in fields:
            raise CustomerNotYetCreated("customer does not exist yet and the event carries no name")
        values, document, mutation = {"externalId": external_id, **fields}, CREATE_CUSTOMER, "createCustomer"
    else:
        values, document, mutation = {"id": customer_id, **fields}, UPDATE_CUSTOMER, "updateCustomer"
    try:
        return Written(_write(api, document, mutation, values), customer_id is None)
    except NameConflict:
        if name_conflict_policy != "suffix":
            raise
        suffixed = {**values, "name": suffixed_name(fields["name"], external_id)}
        return Written(_write(api, document, mutation, suffixed), customer_id is None)


def suffixed_name(name: str, external_id: str) -> str:
    """The name NAME_CONFLICT_POLICY=suffix writes when another customer holds `name`."""
    return f"{name} ({external_id})"


def rekey_customer(api: PlatformApi, customer_id: str, external_id: str) -> str:
    """Give the customer `customer_id` the external id `external_id` (a merge's survivor)."""
    data = api.execute(UPDATE_CUSTOMER, {"input": {"id": customer_id, "externalId": external_id}})
    return _customer_id(data, "updateCustomer")


def _write(api: PlatformApi, document: GraphQLRequest, mutation: str, values: dict[str, Any]) -> str:
    """Run one create or update; a refused name becomes NameConflict, naming who holds it."""
    try:
        return _customer_id(api.execute(document, {"input": values}), mutation, "name" in values)
    except NameConflict:
        raise NameConflict(f"{mutation} failed: {_name_holder(api, values['name'])}") from None
    except GraphQLErrors as exc:
        if "name" in values and "name" in str(exc).lower() and _TAKEN.search(str(exc)):
            raise NameConflict(f"{mutation} failed: {_name_holder(api, values['name'])}") from None
        raise


def _name_holder(api: PlatformApi, name: str) -> str:
    """Who holds `name`, by external id (or platform id), for a message that must not hold the name."""
    nodes = api.execute(FIND_CUSTOMER_BY_NAME, {"name": name})["customers"]["nodes"]
    if not nodes:
        return "the name was taken by a customer that no longer holds it (replay to apply)"
    holder = nodes[0]
    if holder.get("externalId"):
        return f"the name is taken by the customer with external id {holder['externalId']}"
    return f"the name is taken by the platform customer {holder['id']} (no external id)"


def delete_customer(api: PlatformApi, external_id: str) -> bool:
    """Delete the customer; True if one was deleted, False if it was already absent (also success)."""
    customer_id = find_customer_id(api, external_id)
    if customer_id is None:
        return False
    _customer_id(api.execute(DELETE_CUSTOMER, {"input": {"id": customer_id}}), "deleteCustomer")
    return True


def _customer_id(data: dict[str, Any], mutation: str, names: bool = False) -> str:
    # The payload's own `errors` list, not a top-level key: the platform's tutorial checks the wrong place.
    payload = data.get(mutation) or {}
    errors = payload.get("errors") or []
    if names and any(e.get("field") == "name" and _TAKEN.search(" ".join(e.get("messages") or []))
                     for e in errors):  # fmt: skip
        raise NameConflict(mutation)
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
