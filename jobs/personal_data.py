"""The personal-data API's one write: anonymise a purchase (the erasure's per-purchase step calls it)."""

from __future__ import annotations

from crmsync.core.errors import PayloadErrors

from .documents import DELETE_PERSONAL_CUSTOMER_DATA
from .platform_api import PlatformApi

__all__ = ["anonymise_purchase"]


def anonymise_purchase(api: PlatformApi, purchase_id: int) -> None:
    """Delete the personal data of one purchase; PayloadErrors when the API answers without it."""
    data = api.execute(DELETE_PERSONAL_CUSTOMER_DATA, {"purchaseId": purchase_id})
    if not (data.get("deletePersonalCustomerData") or {}).get("updatedPurchase"):
        raise PayloadErrors(f"deletePersonalCustomerData returned no purchase for purchase {purchase_id}")
