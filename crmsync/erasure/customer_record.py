"""What an erasure does besides the purchases: the customer record (ERASURE_CUSTOMER_ACTION).

- `none` (default): the customer record stays as it is (it holds the company's name, which the
  platform needs, and an erasure request is about a person);
- `anonymize`: its description becomes "" (the one free-text field that may describe a person);
- `delete`: the customer is deleted, which on the platform also deletes its users and instances.

Either change respects the ledger: a field (or a customer) written by an event newer than the
erasure is left alone, as it is data the CRM sent after the request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, Self, TypeVar

__all__ = ["apply_customer_action", "CustomerLedger"]


class CustomerLedger(Protocol):
    """The per-customer ordering rule (jobs.ordering.Ledger), as much of it as the customer action needs."""

    def fields_to_write(self, version: str, fields: dict[str, Any]) -> dict[str, Any]: ...
    def after_write(self, version: str, fields: dict[str, Any]) -> Self: ...
    def may_delete(self, version: str) -> bool: ...
    def after_delete(self, version: str) -> Self: ...


L = TypeVar("L", bound=CustomerLedger)


def apply_customer_action(
    action: str,
    ledger: L,
    version: str,
    clear_description: Callable[[], bool],
    delete_customer: Callable[[], bool],
) -> tuple[L, str]:
    """Apply `action` to the customer; return the ledger after it and what happened, for the audit.

    The platform calls are passed in (each returns False when the customer is absent), so this rule
    knows nothing of the API client."""
    if action == "anonymize":
        if not ledger.fields_to_write(version, {"description": ""}):
            return ledger, "newer_description_kept"
        if not clear_description():
            return ledger, "absent"
        return ledger.after_write(version, {"description": ""}), "anonymized"
    if action == "delete":
        if not ledger.may_delete(version):
            return ledger, "newer_customer_kept"
        deleted = delete_customer()
        return ledger.after_delete(version), "deleted" if deleted else "absent"
    return ledger, ""
