"""The sandbox's whole in-memory state behind one lock, with counters of the mutations executed."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sandbox.customers import CustomerBook, CustomerFilter, PayloadErrors
from sandbox.listing import Order, customers_page
from sandbox.purchases import PurchaseNotFound, anonymise, checked_purchase

MUTATIONS = ("createCustomer", "updateCustomer", "deleteCustomer", "deletePersonalCustomerData")


class SandboxStore:
    """Customers, purchases and mutation counters; every method is atomic."""

    def __init__(self) -> None:
        # One lock for everything; the condition lets tests await a mutation instead of sleeping.
        self._changed = threading.Condition(threading.Lock())
        self._customers = CustomerBook()
        self._purchases: dict[int, dict[str, Any]] = {}
        self._calls: Counter[str] = Counter()
        self._erasures: Counter[int] = Counter()

    def reset(self) -> None:
        """Forget every customer, purchase and counter."""
        with self._changed:
            self._customers = CustomerBook()
            self._purchases.clear()
            self._calls.clear()
            self._erasures.clear()
            self._changed.notify_all()

    def reset_counters(self) -> None:
        """Zero the mutation counters, keeping customers and purchases."""
        with self._changed:
            self._calls.clear()
            self._erasures.clear()

    def find_customer(self, customer_id: str) -> dict[str, Any] | None:
        """Return one customer as a Customer node, or None."""
        with self._changed:
            record = self._customers.get(customer_id)
            return None if record is None else record.to_node()

    def search_customers(self, sort_by: Sequence[Order] = (), **filters: Any) -> list[dict[str, Any]]:
        """Return the Customer nodes matching CustomerFilter's fields, in creation or `sort_by` order."""
        with self._changed:
            return [record.to_node() for record in self._customers.search(CustomerFilter(**filters), sort_by)]

    def list_customers(
        self, wanted: CustomerFilter, sort_by: Sequence[Order] | None, after: str | None, first: int | None
    ) -> dict[str, Any]:
        """Return one page of matching customers as a CustomerConnection (see sandbox.listing)."""
        with self._changed:
            return customers_page(self._customers, wanted, sort_by, after, first)

    def seed_customers(self, customers: Sequence[Mapping[str, Any]]) -> int:
        """Add checked customers (sandbox.seeding) without counting mutations; all or none."""
        with self._changed:
            return self._customers.seed(customers)

    def reissue_customers(self, external_ids: Iterable[str]) -> int:
        """Give each customer with one of `external_ids` a new id, out of band (no mutation counted):
        its old id is then unknown to the API. Returns how many there were."""
        with self._changed:
            return sum(self._customers.reissue(external_id) for external_id in external_ids)

    def create_customer(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Create a customer and return its node; raises PayloadErrors when refused."""
        with self._counted("createCustomer"):
            return self._customers.create(values).to_node()

    def update_customer(self, customer_id: str | None, values: Mapping[str, Any]) -> dict[str, Any]:
        """Change the given fields of a customer and return its node; raises PayloadErrors when refused."""
        with self._counted("updateCustomer"):
            return self._customers.update(customer_id, values).to_node()

    def delete_customer(self, customer_id: str | None) -> dict[str, Any]:
        """Delete a customer and return its last node; raises PayloadErrors when refused."""
        with self._counted("deleteCustomer"):
            return self._customers.delete(customer_id).to_node()

    def refuse(self, mutation: str, errors: list[dict[str, Any]]) -> None:
        """Count a call of `mutation` that a fault refuses, and raise PayloadErrors with `errors`."""
        with self._counted(mutation):
            raise PayloadErrors(errors)

    def seed_purchases(self, purchases: Iterable[Any]) -> int:
        """Add or replace purchases by id, all or none; raises InvalidPurchase. Returns how many."""
        checked = [checked_purchase(p) for p in purchases]
        with self._changed:
            self._purchases.update((p["id"], p) for p in checked)
            return len(checked)

    def find_purchase(self, purchase_id: int) -> dict[str, Any] | None:
        """Return a copy of one purchase, or None."""
        with self._changed:
            return copy.deepcopy(self._purchases.get(purchase_id))

    def erase_personal_data(self, purchase_id: int) -> dict[str, Any]:
        """Anonymise a purchase's contacts and return a copy; raises PurchaseNotFound."""
        with self._counted("deletePersonalCustomerData"):
            self._erasures[purchase_id] += 1
            purchase = self._purchases.get(purchase_id)
            if purchase is None:
                raise PurchaseNotFound(purchase_id)
            anonymise(purchase)
            return copy.deepcopy(purchase)

    def stats(self) -> dict[str, Any]:
        """Return the mutation counters and the sizes of the collections."""
        with self._changed:
            return {
                "mutations": {name: self._calls[name] for name in MUTATIONS},
                "deletePersonalCustomerData": {str(k): v for k, v in sorted(self._erasures.items())},
                "customers": len(self._customers),
                "purchases": len(self._purchases),
            }

    def wait_for_calls(self, mutation: str, count: int, timeout: float) -> bool:
        """Block until `mutation` has run at least `count` times; False if `timeout` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._calls[mutation] >= count, timeout)

    @contextmanager
    def _counted(self, mutation: str) -> Iterator[None]:
        """Hold the lock for one mutation, counting it whether or not it succeeds."""
        with self._changed:
            self._calls[mutation] += 1
            try:
                yield
            finally:
                self._changed.notify_all()
