"""What an erasure does besides the purchases: the customer record (ERASURE_CUSTOMER_ACTION).

- `none` (default): the customer record stays as it is (it holds the company's name, which the
  platform needs, and an erasure request is about a person);
- `anonymize`: its description becomes "" (the one free-text field that may describe a person);
- `delete`: the customer is deleted, which on the platform also deletes its users and instances.

Either change respects the ledger: a field (or a customer) written by an event newer than the
erasure is left alone, as it is data the CRM sent after the request.
"""

from __future__ import annotations

from rq import get_current_job

from .customers import delete_customer, find_customer_id
from .documents import UPDATE_CUSTOMER
from .errors import PayloadErrors, SyncError
from .ordering import Ledger
from .platform_api import PlatformApi

__all__ = ["apply_customer_action", "is_final_attempt"]


def apply_customer_action(
    api: PlatformApi, action: str, ledger: Ledger, external_id: str, version: str
) -> tuple[Ledger, str]:
    """Apply `action` to the customer; return the ledger after it and what happened, for the audit."""
    if action == "anonymize":
        if not ledger.fields_to_write(version, {"description": ""}):
            return ledger, "newer_description_kept"
        if not _clear_description(api, external_id):
            return ledger, "absent"
        return ledger.after_write(version, {"description": ""}), "anonymized"
    if action == "delete":
        if not ledger.may_delete(version):
            return ledger, "newer_customer_kept"
        deleted = delete_customer(api, external_id)
        return ledger.after_delete(version), "deleted" if deleted else "absent"
    return ledger, ""


def is_final_attempt(exc: SyncError) -> bool:
    """Whether this failure ends the job's retries (same rule as apply_event's retry policy)."""
    job = get_current_job()
    return not exc.retryable or job is None or not job.retries_left


def _clear_description(api: PlatformApi, external_id: str) -> bool:
    customer_id = find_customer_id(api, external_id)
    if customer_id is None:
        return False
    data = api.execute(UPDATE_CUSTOMER, {"input": {"id": customer_id, "description": ""}})
    payload = data.get("updateCustomer") or {}
    if payload.get("errors") or not payload.get("customer"):
        # The messages are not copied: they may echo the customer's current values.
        raise PayloadErrors("updateCustomer refused to clear the description")
    return True
