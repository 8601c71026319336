"""Why applying an event failed, classified so the retry policy can act on it.

Retryable failures (the API or Redis is briefly unable) are tried again with backoff; permanent ones
(the API refused the request) go straight to the failed registry, since retrying cannot help.
"""

from __future__ import annotations


class SyncError(Exception):
    """Applying an event to the platform failed."""

    retryable = False
    failure_class = "error"
    retry_after: float | None = None
    # False when the request may still be applied by the API after we gave up on it (see ordering).
    outcome_known = True


class RetryableError(SyncError):
    """A failure that may pass: retry with backoff."""

    retryable = True
    failure_class = "retryable"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # The API's Retry-After, in seconds: a floor for the next delay.


class ApiUnavailable(RetryableError):
    """Connection error, timeout, HTTP 5xx: the request may or may not have been applied."""

    failure_class = "api_unavailable"
    outcome_known = False


class RateLimited(RetryableError):
    """HTTP 429: the API asks us to slow down, possibly saying for how long (Retry-After)."""

    failure_class = "rate_limited"


class CustomerLocked(RetryableError):
    """Another worker is applying an event for the same customer."""

    failure_class = "lock_contention"


class CustomerNotYetCreated(RetryableError):
    """A partial update arrived before the customer exists; wait for its create event."""

    failure_class = "customer_not_found"


class CustomerGone(RetryableError):
    """The platform knows no customer by the id a write used (deleted out of band since it was
    cached or looked up); a retry looks the customer up afresh."""

    failure_class = "customer_gone"


class PermanentError(SyncError):
    """The API refused the request; retrying the same request cannot succeed."""

    failure_class = "permanent"


class ApiRejected(PermanentError):
    """HTTP 4xx other than 429: malformed request, authentication or permission failure."""

    failure_class = "api_rejected"


class GraphQLErrors(PermanentError):
    """Top-level GraphQL `errors` (validation, unknown purchase, ...)."""

    failure_class = "graphql_error"


class PayloadErrors(PermanentError):
    """A mutation's payload `errors` list was not empty (duplicate name, ...)."""

    failure_class = "payload_error"


class NameConflict(PayloadErrors):
    """The platform refused the name: another customer holds it (names are unique on the platform).
    The message names that customer by external id, never the name (personal data)."""

    failure_class = "name_conflict"
