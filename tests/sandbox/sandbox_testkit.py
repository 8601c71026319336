"""Constants and a small HTTP client shared by the sandbox tests."""

from __future__ import annotations

from typing import Any

import requests

CUSTOMERS_TOKEN = "customers-test-token"
PERSONAL_DATA_TOKEN = "personal-data-test-token"

HAN_SOLO_PURCHASE: dict[str, Any] = {
    "id": 356018965,
    "customer": {"id": 131355826},
    "customerCountry": {"id": "MT"},
    "billingContact": {
        "id": 380127817,
        "company": None,
        "firstName": "Han",
        "lastName": "Solo",
        "email": "han.solo@example.com",
        "addressLine1": "123 Test Ave",
        "addressLine2": None,
        "postalCode": "1234",
        "city": "Tatooine",
        "country": {"id": "MT", "name": "Malta"},
        "state": None,
    },
    "deliveryContact": None,
    "licenseeContact": None,
}


class ApiClient:
    """A keep-alive HTTP session against one sandbox URL, sending a Bearer token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str = "", **kwargs: Any) -> requests.Response:
        """Send one request to `base_url + path`, never retrying, with a short default timeout."""
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base_url + path, **kwargs)

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a GraphQL request, expect a 200 response, and return its JSON body."""
        response = self.request("POST", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Execute a GraphQL request that must succeed and return its `data`."""
        body = self.execute(query, variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data
