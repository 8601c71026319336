"""Customer writes by external id: the platform only mutates by its own id.

The id comes from the id cache (jobs/id_cache.py) when it holds it, else from a lookup. A write whose
cached id the platform no longer knows (deleted out of band) drops it, looks up and tries once more.
A customer never seen before is created without a lookup: the platform's external ids are unique, so
a create that finds its external id taken (created elsewhere, or by an attempt whose answer was lost)
turns into a lookup and an update, never into a duplicate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from crmsync.core.errors import CustomerGone, CustomerNotYetCreated, PayloadErrors, PermanentError

from .documents import CREATE_CUSTOMER, DELETE_CUSTOMER, FIND_CUSTOMER, UPDATE_CUSTOMER
from .id_cache import IdCache
from .platform_api import PlatformApi

__all__ = ["find_customer_id", "upsert_customer", "delete_customer", "clear_description"]

T = TypeVar("T")

# How the platform words a taken external id, and an id it does not know (payload errors on
# `externalId` and on `id`; the exact wording is not published: docs/crm-sources.md). A refusal of
# the values themselves (an invalid value) is neither, and fails the job as the payload error it is.
_TAKEN = re.compile(r"taken|already exists|unique|duplicate", re.IGNORECASE)
_UNKNOWN = re.compile(r"not found|does not exist|no such|unknown", re.IGNORECASE)


def find_customer_id(api: PlatformApi, ids: IdCache, external_id: str) -> str | None:
    """The platform id of the (non-system) customer with `external_id`, or None; cached either way."""
    data = api.execute(FIND_CUSTOMER, {"externalId": external_id})
    nodes = data["customers"]["nodes"]
    if len(nodes) > 1:
        raise PermanentError("several platform customers share this external id")
    if not nodes:
        ids.drop(external_id)
        return None
    customer_id = str(nodes[0]["id"])
    ids.put(external_id, customer_id)
    return customer_id


def upsert_customer(
    api: PlatformApi, ids: IdCache, external_id: str, fields: dict[str, Any], may_exist: bool = True
) -> str:
    """Create the customer with `fields`, or update only `fields` on the existing one; return its id.

    `may_exist` False (nothing was ever applied for it, and this is no retry) creates first when the
    event carries a name: one request instead of a lookup and a create.
    """
    cached = ids.get(external_id)
    if cached is not None:
        try:
            return _update(api, cached, fields)
        except CustomerGone:
            ids.drop(external_id)  # deleted out of band: the lookup below tells what is there now
    elif not may_exist and ids.enabled and "name" in fields:
        created = _create(api, ids, external_id, fields)
        if created is not None:
            return created
    customer_id = find_customer_id(api, ids, external_id)
    if customer_id is not None:
        return _update(api, customer_id, fields)
    if "name" not in fields:
        raise CustomerNotYetCreated("customer does not exist yet and the event carries no name")
    created = _create(api, ids, external_id, fields)
    if created is None:
        raise CustomerGone("the external id was taken by a customer created meanwhile")
    return created


def delete_customer(api: PlatformApi, ids: IdCache, external_id: str) -> bool:
    """Delete the customer; True if one was deleted, False if it was already absent (also success)."""
    deleted = _on_customer(api, ids, external_id, lambda customer_id: _delete(api, customer_id))
    ids.drop(external_id)
    return deleted is not None


def clear_description(api: PlatformApi, ids: IdCache, external_id: str) -> bool:
    """Set the customer's description to "" (ERASURE_CUSTOMER_ACTION=anonymize); False if absent."""
    return _on_customer(api, ids, external_id, lambda customer_id: _clear(api, customer_id)) is not None


def _on_customer(api: PlatformApi, ids: IdCache, external_id: str, write: Callable[[str], T]) -> T | None:
    """`write` applied to the customer's platform id (cached, else looked up); None if there is none."""
    cached = ids.get(external_id)
    if cached is not None:
        try:
            return write(cached)
        except CustomerGone:
            ids.drop(external_id)
    customer_id = find_customer_id(api, ids, external_id)
    return None if customer_id is None else write(customer_id)


def _create(api: PlatformApi, ids: IdCache, external_id: str, fields: dict[str, Any]) -> str | None:
    """The new customer's id, or None when the external id is taken (the customer exists)."""
    data = api.execute(CREATE_CUSTOMER, {"input": {"externalId": external_id, **fields}})
    errors = _errors(data, "createCustomer")
    if any(_says(error, "externalId", _TAKEN) for error in errors):
        return None
    customer_id = _customer_id(data, "createCustomer", errors)
    ids.put(external_id, customer_id)
    return customer_id


def _update(api: PlatformApi, customer_id: str, fields: dict[str, Any]) -> str:
    data = api.execute(UPDATE_CUSTOMER, {"input": {"id": customer_id, **fields}})
    return _customer_id(data, "updateCustomer", _known_id_errors(data, "updateCustomer"))


def _delete(api: PlatformApi, customer_id: str) -> str:
    data = api.execute(DELETE_CUSTOMER, {"input": {"id": customer_id}})
    return _customer_id(data, "deleteCustomer", _known_id_errors(data, "deleteCustomer"))


def _clear(api: PlatformApi, customer_id: str) -> str:
    data = api.execute(UPDATE_CUSTOMER, {"input": {"id": customer_id, "description": ""}})
    errors = _known_id_errors(data, "updateCustomer")
    payload = data.get("updateCustomer") or {}
    if errors or not payload.get("customer"):
        # The messages are not copied: they may echo the customer's current values.
        raise PayloadErrors("updateCustomer refused to clear the description")
    return str(payload["customer"]["id"])


def _errors(data: dict[str, Any], mutation: str) -> list[dict[str, Any]]:
    # The payload's own `errors` list, not a top-level key: the platform's tutorial checks the wrong place.
    return list((data.get(mutation) or {}).get("errors") or [])


def _known_id_errors(data: dict[str, Any], mutation: str) -> list[dict[str, Any]]:
    """The payload's errors; CustomerGone when they say the platform knows no customer by this id."""
    errors = _errors(data, mutation)
    if any(_says(error, "id", _UNKNOWN) for error in errors):
        raise CustomerGone(f"{mutation}: the platform knows no customer by this id")
    return errors


def _says(error: dict[str, Any], field: str, wording: re.Pattern[str]) -> bool:
    return error.get("field") == field and bool(wording.search(" ".join(error.get("messages") or [])))


def _customer_id(data: dict[str, Any], mutation: str, errors: list[dict[str, Any]]) -> str:
    if errors:
        details = "; ".join(f"{e.get('field')}: {' '.join(e.get('messages') or [])}" for e in errors)
        raise PayloadErrors(f"{mutation} failed: {details}")
    customer = (data.get(mutation) or {}).get("customer")
    if not customer:
        raise PayloadErrors(f"{mutation} returned no customer")
    return str(customer["id"])
