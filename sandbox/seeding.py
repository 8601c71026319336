"""Checking the customers the admin API seeds in bulk: a list, or a recipe to generate many.

Seeding skips the GraphQL layer and the mutation counters, so a test or benchmark can set up a large
platform (100,000 customers in about a second) and still count only the mutations under test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.customers import InvalidCustomer

CUSTOMER_KEYS = frozenset({"name", "description", "externalId", "labels", "isSystem"})
GENERATE_DEFAULTS: dict[str, Any] = {
    "count": 0,
    "start": 1,
    "name_prefix": "Customer ",
    "external_id_prefix": "crm-",
    "description": "",
    "labels": [],
    "is_system": False,
}
MAX_GENERATED = 1_000_000


def customers_to_seed(body: Any) -> list[dict[str, Any]]:
    """Return the customers a `POST /admin/customers` body asks for, or raise InvalidCustomer.

    The body is `{"customers": [{name, description?, externalId?, labels?, isSystem?}, ...]}` or
    `{"generate": {count, start?, name_prefix?, external_id_prefix?, description?, labels?, is_system?}}`.
    """
    if isinstance(body, Mapping) and set(body) == {"customers"} and isinstance(body["customers"], list):
        return [_checked(index, c) for index, c in enumerate(body["customers"])]
    if isinstance(body, Mapping) and set(body) == {"generate"} and isinstance(body["generate"], Mapping):
        return _generated(body["generate"])
    raise InvalidCustomer('The body must be {"customers": [...]} or {"generate": {...}}.')


def _checked(index: int, data: Any) -> dict[str, Any]:
    """Check one listed customer against the Customer shape, naming it by its index when it fails."""
    if not isinstance(data, Mapping):
        raise InvalidCustomer(f"Customer {index} must be a JSON object.")
    unknown = sorted(set(data) - CUSTOMER_KEYS)
    if unknown:
        raise InvalidCustomer(f"Customer {index} has unknown fields: {', '.join(unknown)}.")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise InvalidCustomer(f"Customer {index} needs a non-blank string name.")
    for key in ("description", "externalId"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InvalidCustomer(f"Customer {index}: {key} must be a string or null.")
    if not _is_string_list_or_null(data.get("labels")):
        raise InvalidCustomer(f"Customer {index}: labels must be a list of strings or null.")
    if not isinstance(data.get("isSystem", False), bool):
        raise InvalidCustomer(f"Customer {index}: isSystem must be a boolean.")
    return dict(data)


def _generated(recipe: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Make `count` customers named `name_prefix + n` with externalId `external_id_prefix + n`
    (null when the prefix is null), for n from `start`."""
    unknown = sorted(set(recipe) - set(GENERATE_DEFAULTS))
    if unknown:
        raise InvalidCustomer(f"Unknown generate settings: {', '.join(unknown)}.")
    r = {**GENERATE_DEFAULTS, **recipe}
    count, start = r["count"], r["start"]
    if not _is_int(count) or not 0 <= count <= MAX_GENERATED or not _is_int(start):
        raise InvalidCustomer(f"count must be a whole number up to {MAX_GENERATED}, start an integer.")
    if not isinstance(r["name_prefix"], str) or not isinstance(r["description"], str):
        raise InvalidCustomer("name_prefix and description must be strings.")
    prefix = r["external_id_prefix"]
    if prefix is not None and not isinstance(prefix, str):
        raise InvalidCustomer("external_id_prefix must be a string or null.")
    if not _is_string_list_or_null(r["labels"]) or not isinstance(r["is_system"], bool):
        raise InvalidCustomer("labels must be a list of strings, is_system a boolean.")
    name_prefix, labels = r["name_prefix"], r["labels"]
    return [
        {
            "name": f"{name_prefix}{n}",
            "externalId": None if prefix is None else f"{prefix}{n}",
            "description": r["description"],
            "labels": labels,
            "isSystem": r["is_system"],
        }
        for n in range(start, start + count)
    ]


def _is_string_list_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
