"""Customer writes by external id: the platform only mutates by its own id.

The id comes from the id cache (jobs/id_cache.py) when it holds it, else from a lookup. A write whose
cached id the platform no longer knows (deleted out of band) drops it, looks up and tries once more.
A customer never seen before is created without a lookup: the platform's external ids are unique, so
a create that finds its external id taken (created elsewhere, or by an attempt whose answer was lost)
turns into a lookup and an update, never into a duplicate.

The platform's customer names are unique. A write whose name another customer holds fails as
`name_conflict`, naming that customer by external id; with NAME_CONFLICT_POLICY=suffix it is written
as "{name} ({externalId})" instead. Every write that carries a name tries the plain name first, so the
suffix goes away with the customer's next name change after the conflict ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from gql import GraphQLRequest

from crmsync.core.errors import (
    CustomerGone,
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
from .id_cache import NO_CACHE, IdCache
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

T = TypeVar("T")

# How the platform words a taken name or external id (in a payload error on that field, or for a name
# in a top-level GraphQL error: which of the two is not confirmed, docs/crm-sources.md), and an id it
# does not know. A refusal of the values themselves (an invalid value) is none of these, and fails
# the job as the payload error it is.
_TAKEN = re.compile(r"taken|already exists|unique|duplicate", re.IGNORECASE)
_UNKNOWN = re.compile(r"not found|does not exist|no such|unknown", re.IGNORECASE)


class _ExternalIdTaken(Exception):
    """A create found its external id taken: the customer exists (control flow only, never raised out)."""


def find_customer_id(api: PlatformApi, external_id: str, ids: IdCache = NO_CACHE) -> str | None:
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
    api: PlatformApi,
    external_id: str,
    fields: dict[str, Any],
    name_conflict_policy: str = "fail",
    ids: IdCache = NO_CACHE,
    may_exist: bool = True,
) -> Written:
    """Create the customer with `fields`, or update only `fields` on the existing one.

    `may_exist` False (nothing was ever applied for it, and this is no retry) creates first when the
    event carries a name: one request instead of a lookup and a create. Without a cache (`ids`) every
    write looks up first.
    """
    cached = ids.get(external_id)
    if cached is not None:
        try:
            return Written(_update(api, external_id, cached, fields, name_conflict_policy), False)
        except CustomerGone:
            ids.drop(external_id)  # deleted out of band: the lookup below tells what is there now
    elif not may_exist and ids.enabled and "name" in fields:
        created = _create(api, ids, external_id, fields, name_conflict_policy)
        if created is not None:
            return Written(created, True)
    customer_id = find_customer_id(api, external_id, ids)
    if customer_id is not None:
        return Written(_update(api, external_id, customer_id, fields, name_conflict_policy), False)
    if "name" not in fields:
        raise CustomerNotYetCreated("customer does not exist yet and the event carries no name")
    created = _create(api, ids, external_id, fields, name_conflict_policy)
    if created is None:
        raise CustomerGone("the external id was taken by a customer created meanwhile")
    return Written(created, True)


def suffixed_name(name: str, external_id: str) -> str:
    """The name NAME_CONFLICT_POLICY=suffix writes when another customer holds `name`."""
    return f"{name} ({external_id})"


def rekey_customer(
    api: PlatformApi, customer_id: str, external_id: str, ids: IdCache = NO_CACHE, previous: str = ""
) -> str:
    """Give the customer `customer_id` the external id `external_id` (a merge's survivor); the cache
    then holds it under its new external id, and no longer under `previous`."""
    ids.drop(previous)  # first: a cached id under the old external id must never reach this record
    data = api.execute(UPDATE_CUSTOMER, {"input": {"id": customer_id, "externalId": external_id}})
    rekeyed = _customer_id(data, "updateCustomer")
    ids.put(external_id, rekeyed)
    return rekeyed


def delete_customer(api: PlatformApi, external_id: str, ids: IdCache = NO_CACHE) -> bool:
    """Delete the customer; True if one was deleted, False if it was already absent (also success)."""
    deleted = _on_customer(api, ids, external_id, lambda customer_id: _delete(api, customer_id))
    ids.drop(external_id)
    return deleted is not None


def clear_description(api: PlatformApi, external_id: str, ids: IdCache = NO_CACHE) -> bool:
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
    customer_id = find_customer_id(api, external_id, ids)
    return None if customer_id is None else write(customer_id)


def _create(
    api: PlatformApi, ids: IdCache, external_id: str, fields: dict[str, Any], policy: str
) -> str | None:
    """The new customer's id, or None when the external id is taken (the customer exists)."""
    values = {"externalId": external_id, **fields}
    try:
        customer_id = _with_policy(
            policy, external_id, values, lambda sent: _write(api, CREATE_CUSTOMER, "createCustomer", sent)
        )
    except _ExternalIdTaken:
        return None
    ids.put(external_id, customer_id)
    return customer_id


def _update(api: PlatformApi, external_id: str, customer_id: str, fields: dict[str, Any], policy: str) -> str:
    values = {"id": customer_id, **fields}
    return _with_policy(
        policy, external_id, values, lambda sent: _write(api, UPDATE_CUSTOMER, "updateCustomer", sent)
    )


def _with_policy(
    policy: str, external_id: str, values: dict[str, Any], write: Callable[[dict[str, Any]], str]
) -> str:
    """`write` of `values`; a taken name is written suffixed when NAME_CONFLICT_POLICY=suffix."""
    try:
        return write(values)
    except NameConflict:
        if policy != "suffix":
            raise
        return write({**values, "name": suffixed_name(values["name"], external_id)})


def _write(api: PlatformApi, document: GraphQLRequest, mutation: str, values: dict[str, Any]) -> str:
    """Run one create or update: a taken external id (on a create) is _ExternalIdTaken, an unknown id
    CustomerGone, a refused name NameConflict naming who holds it."""
    try:
        data = api.execute(document, {"input": values})
    except GraphQLErrors as exc:
        if "name" in values and "name" in str(exc).lower() and _TAKEN.search(str(exc)):
            raise NameConflict(f"{mutation} failed: {_name_holder(api, values['name'])}") from None
        raise
    errors = _errors(data, mutation)
    # Checked before the name: a create whose answer was lost finds its own name taken too.
    if "externalId" in values and any(_says(error, "externalId", _TAKEN) for error in errors):
        raise _ExternalIdTaken()
    _raise_if_unknown_id(errors, mutation)
    try:
        return _customer_id(data, mutation, "name" in values)
    except NameConflict:
        raise NameConflict(f"{mutation} failed: {_name_holder(api, values['name'])}") from None


def _name_holder(api: PlatformApi, name: str) -> str:
    """Who holds `name`, by external id (or platform id), for a message that must not hold the name."""
    nodes = api.execute(FIND_CUSTOMER_BY_NAME, {"name": name})["customers"]["nodes"]
    if not nodes:
        return "the name was taken by a customer that no longer holds it (replay to apply)"
    holder = nodes[0]
    if holder.get("externalId"):
        return f"the name is taken by the customer with external id {holder['externalId']}"
    return f"the name is taken by the platform customer {holder['id']} (no external id)"


def _delete(api: PlatformApi, customer_id: str) -> str:
    data = api.execute(DELETE_CUSTOMER, {"input": {"id": customer_id}})
    _raise_if_unknown_id(_errors(data, "deleteCustomer"), "deleteCustomer")
    return _customer_id(data, "deleteCustomer")


def _clear(api: PlatformApi, customer_id: str) -> str:
    data = api.execute(UPDATE_CUSTOMER, {"input": {"id": customer_id, "description": ""}})
    errors = _errors(data, "updateCustomer")
    _raise_if_unknown_id(errors, "updateCustomer")
    payload = data.get("updateCustomer") or {}
    if errors or not payload.get("customer"):
        # The messages are not copied: they may echo the customer's current values.
        raise PayloadErrors("updateCustomer refused to clear the description")
    return str(payload["customer"]["id"])


def _errors(data: dict[str, Any], mutation: str) -> list[dict[str, Any]]:
    # The payload's own `errors` list, not a top-level key: the platform's tutorial checks the wrong place.
    return list((data.get(mutation) or {}).get("errors") or [])


def _raise_if_unknown_id(errors: list[dict[str, Any]], mutation: str) -> None:
    if any(_says(error, "id", _UNKNOWN) for error in errors):
        raise CustomerGone(f"{mutation}: the platform knows no customer by this id")


def _says(error: dict[str, Any], field: str, wording: re.Pattern[str]) -> bool:
    return error.get("field") == field and bool(wording.search(" ".join(error.get("messages") or [])))


def _customer_id(data: dict[str, Any], mutation: str, names: bool = False) -> str:
    errors = _errors(data, mutation)
    if names and any(_says(error, "name", _TAKEN) for error in errors):
        raise NameConflict(mutation)
    if errors:
        details = "; ".join(f"{e.get('field')}: {' '.join(e.get('messages') or [])}" for e in errors)
        raise PayloadErrors(f"{mutation} failed: {details}")
    customer = (data.get(mutation) or {}).get("customer")
    if not customer:
        raise PayloadErrors(f"{mutation} returned no customer")
    return str(customer["id"])
