"""Purchases of the personal-data API: checking seeded ones and anonymising their contacts."""

from __future__ import annotations

import copy
from typing import Any

CONTACT_KEYS = ("billingContact", "deliveryContact", "licenseeContact")
PURCHASE_KEYS = frozenset({"id", "customer", "customerCountry", *CONTACT_KEYS})
# Country and state are not personal data: the vendor leaves them as they were.
PERSONAL_FIELDS = ("company", "firstName", "lastName", "addressLine1", "addressLine2", "postalCode", "city")
ANONYMISED_VALUE = "XXX"
ANONYMISED_EMAIL = "anonymized@anonymized.invalid"


class InvalidPurchase(ValueError):
    """A purchase to seed does not have the Purchase shape of the schema."""


class PurchaseNotFound(LookupError):
    """No purchase has the requested id; the message is the top-level GraphQL error text."""

    def __init__(self, purchase_id: int) -> None:
        super().__init__(f"Purchase {purchase_id} not found")


def checked_purchase(data: Any) -> dict[str, Any]:
    """Return a private copy of a purchase to seed, or raise InvalidPurchase if it is malformed."""
    if not isinstance(data, dict):
        raise InvalidPurchase("Each purchase must be a JSON object.")
    unknown = sorted(set(data) - PURCHASE_KEYS)
    if unknown:
        raise InvalidPurchase(f"Unknown purchase fields: {', '.join(unknown)}.")
    if not _is_int(data.get("id")):
        raise InvalidPurchase("Each purchase needs an integer id.")
    for key in ("customer", *CONTACT_KEYS):
        value = data.get(key)
        if value is not None and not (isinstance(value, dict) and _is_int(value.get("id"))):
            raise InvalidPurchase(f"{key} must be null or an object with an integer id.")
    # Copied so later anonymisation never reaches back into the caller's objects.
    return copy.deepcopy(data)


def anonymise(purchase: dict[str, Any]) -> None:
    """Replace the personal data on every contact of `purchase` in place, keeping nulls and places."""
    for key in CONTACT_KEYS:
        contact = purchase.get(key)
        if contact is None:
            continue
        for field in PERSONAL_FIELDS:
            if contact.get(field) is not None:
                contact[field] = ANONYMISED_VALUE
        if contact.get("email") is not None:
            contact["email"] = ANONYMISED_EMAIL


def _is_int(value: Any) -> bool:
    """Tell a JSON integer from other values, booleans included."""
    return isinstance(value, int) and not isinstance(value, bool)
