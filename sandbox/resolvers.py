"""Root values for the two schemas: graphql-core's default resolver calls these methods with (info, **args).

Method names are the schema's field names, which is why they are camelCase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLResolveInfo

from sandbox.customers import CustomerFilter, PayloadErrors, field_error, quoted
from sandbox.faults import FaultInjector
from sandbox.store import SandboxStore

# The sandbox passes no context value, so the context type is irrelevant.
Info = GraphQLResolveInfo[Any]


class CustomersRoot:
    """Query and Mutation fields of the customers API."""

    def __init__(self, store: SandboxStore, faults: FaultInjector) -> None:
        self._store = store
        self._faults = faults

    def customer(self, info: Info, id: str) -> dict[str, Any] | None:
        """Look up one customer by the platform's id."""
        return self._store.find_customer(id)

    def customers(
        self, info: Info, after: str | None = None, first: int | None = None, **filters: Any
    ) -> dict[str, Any]:
        """List customers matching the filters, one page of at most 100 at a time."""
        wanted = CustomerFilter(
            external_id=filters.get("externalId"),
            is_system=filters.get("isSystem"),
            name=filters.get("name"),
            name_icontains=filters.get("name_Icontains"),
            labels_contains=filters.get("labels_Contains"),
        )
        return self._store.list_customers(wanted, filters.get("sortBy"), after, first)

    def createCustomer(self, info: Info, input: dict[str, Any]) -> dict[str, Any]:
        """Create a customer; refusals go into the payload's errors."""
        return self._payload("createCustomer", input, lambda: self._store.create_customer(_fields(input)))

    def updateCustomer(self, info: Info, input: dict[str, Any]) -> dict[str, Any]:
        """Change the fields present in the input; refusals go into the payload's errors."""
        return self._payload(
            "updateCustomer", input, lambda: self._store.update_customer(input.get("id"), _fields(input))
        )

    def deleteCustomer(self, info: Info, input: dict[str, Any]) -> dict[str, Any]:
        """Delete a customer and return it; refusals go into the payload's errors."""
        return self._payload("deleteCustomer", input, lambda: self._store.delete_customer(input.get("id")))

    def _payload(
        self, mutation: str, mutation_input: dict[str, Any], mutate: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Run a customer mutation and shape its payload, turning refusals into `errors`."""
        payload: dict[str, Any] = {"clientMutationId": mutation_input.get("clientMutationId")}
        try:
            if self._faults.take_rejection():
                self._store.refuse(mutation, _echoing_errors(mutation_input))
            payload.update(customer=mutate(), errors=[])
        except PayloadErrors as refused:
            payload.update(customer=None, errors=refused.errors)
        return payload


class PersonalDataRoot:
    """Query and Mutation fields of the personal-data API."""

    def __init__(self, store: SandboxStore) -> None:
        self._store = store

    def purchase(self, info: Info, id: int) -> dict[str, Any] | None:
        """Look up one purchase."""
        return self._store.find_purchase(id)

    def deletePersonalCustomerData(self, info: Info, purchaseId: int) -> dict[str, Any]:
        """Anonymise a purchase; an unknown id raises PurchaseNotFound, a top-level GraphQL error."""
        return {"updatedPurchase": self._store.erase_personal_data(purchaseId)}


def _fields(mutation_input: dict[str, Any]) -> dict[str, Any]:
    """Keep the customer fields of a mutation input, dropping the id and the relay bookkeeping."""
    return {k: v for k, v in mutation_input.items() if k not in ("id", "clientMutationId")}


def _echoing_errors(mutation_input: dict[str, Any]) -> list[dict[str, Any]]:
    """One error per submitted field quoting its value, as a validating API would (the reject fault)."""
    submitted = {k: v for k, v in mutation_input.items() if k != "clientMutationId"}
    return [field_error(name, f"Invalid value: {quoted(value)}.") for name, value in submitted.items()]
