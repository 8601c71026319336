"""One GraphQL API of the customer platform, reached over a kept-alive HTTP session.

Every failure is turned into a classified SyncError here, the one boundary that knows gql's and
requests' exceptions. Transport-level retries stay off: a timed-out mutation may have been applied,
so it is retried at the job level, after a fresh lookup, never re-sent blindly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from gql import Client, GraphQLRequest
from gql.client import SyncClientSession
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.requests import RequestsHTTPTransport

from crmsync.core.errors import ApiRejected, ApiUnavailable, GraphQLErrors, RateLimited
from crmsync.core.parsing import ascii_int
from crmsync.core.settings import ApiSettings

from .rate_limit import RateLimit

__all__ = ["PlatformApi"]

# A delay in seconds beyond 10 digits (three centuries) is no delay a server means.
RETRY_AFTER_MAX_DIGITS = 10


class PlatformApi:
    """A GraphQL endpoint with Bearer auth; the HTTP session is opened once and reused across jobs."""

    def __init__(
        self, name: str, settings: ApiSettings, timeout_seconds: float, rate_limit: RateLimit | None = None
    ) -> None:
        self.name = name
        self._rate_limit = rate_limit
        self._transport = RequestsHTTPTransport(
            url=settings.url,
            headers={"Authorization": f"Bearer {settings.token}"},
            timeout=timeout_seconds,  # type: ignore[arg-type]  # requests accepts float seconds
            retries=0,
        )
        self._client = Client(transport=self._transport)
        self._session: SyncClientSession | None = None

    def execute(self, document: GraphQLRequest, variables: dict[str, Any]) -> dict[str, Any]:
        """Run `document` with `variables`; return `data` or raise a classified SyncError."""
        # The document's own class: a PreparedRequest keeps its query text printed once per process.
        request = type(document)(document, variable_values=variables)
        session = self._connected()
        if self._rate_limit is not None:
            self._rate_limit.wait_turn()
        try:
            return session.execute(request)
        except TransportQueryError as exc:
            messages = "; ".join(str(error.get("message", "")) for error in exc.errors or [])
            raise GraphQLErrors(f"{self.name} API returned errors: {messages}") from None
        except TransportServerError as exc:
            raise self._http_error(exc.code) from None
        except TransportConnectionFailed as exc:
            self.close()  # The connection is in an unknown state: start a fresh one next time.
            raise ApiUnavailable(f"{self.name} API unreachable: {type(exc.__cause__).__name__}") from None
        except TransportProtocolError:
            raise ApiUnavailable(f"{self.name} API answered without a GraphQL result") from None

    def close(self) -> None:
        """Close the HTTP session (the next call opens a new one)."""
        if self._session is not None:
            self._client.close_sync()
            self._session = None

    def _connected(self) -> SyncClientSession:
        if self._session is None:
            self._session = self._client.connect_sync()
            if self._transport.session is not None:
                _read_environment_once(self._transport.session, self._transport.url)
        return self._session

    def _http_error(self, status: int | None) -> Exception:
        if status == 429:
            retry_after = self._retry_after()
            if self._rate_limit is not None:
                self._rate_limit.pause(retry_after)  # every worker's calls, not only this job's retry
            return RateLimited(f"{self.name} API rate limit (HTTP 429)", retry_after=retry_after)
        if status is None or status >= 500:
            return ApiUnavailable(f"{self.name} API failed with HTTP {status}")
        return ApiRejected(f"{self.name} API rejected the request with HTTP {status}")

    def _retry_after(self) -> float | None:
        headers: Mapping[str, str] = self._transport.response_headers or {}
        value = headers.get("Retry-After")
        if not value:
            return None
        seconds = ascii_int(value.strip(), RETRY_AFTER_MAX_DIGITS)
        if seconds is not None:
            return float(seconds)
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def _read_environment_once(http: requests.Session, url: str) -> None:
    """Apply the environment's proxy and CA-bundle settings to the session once, then stop requests
    from re-reading them: it scans the whole environment for proxies on every request otherwise,
    ~0.2 ms of CPU per call (docs/benchmarks.md)."""
    found = http.merge_environment_settings(url, {}, None, None, None)
    http.proxies.update(found["proxies"])
    http.verify = found["verify"]
    http.trust_env = False
