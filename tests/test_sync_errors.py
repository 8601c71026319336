"""The failure classes: the labels that metrics, logs and the failed-job registry show, and what
each class tells the retry policy (retry or not) and the ordering (is the outcome known?)."""

from __future__ import annotations

import pytest

from crmsync.core.errors import (
    ApiRejected,
    ApiUnavailable,
    CustomerLocked,
    CustomerNotYetCreated,
    GraphQLErrors,
    NameConflict,
    PayloadErrors,
    PermanentError,
    RateLimited,
    RetryableError,
    SyncError,
)

# class, failure_class label, retried, outcome known (False: the API may still apply the request)
CLASSES = [
    (SyncError, "error", False, True),
    (RetryableError, "retryable", True, True),
    (ApiUnavailable, "api_unavailable", True, False),
    (RateLimited, "rate_limited", True, True),
    (CustomerLocked, "lock_contention", True, True),
    (CustomerNotYetCreated, "customer_not_found", True, True),
    (PermanentError, "permanent", False, True),
    (ApiRejected, "api_rejected", False, True),
    (GraphQLErrors, "graphql_error", False, True),
    (PayloadErrors, "payload_error", False, True),
    (NameConflict, "name_conflict", False, True),
]


@pytest.mark.parametrize(("error", "label", "retried", "outcome_known"), CLASSES, ids=[c[1] for c in CLASSES])
def test_each_failure_class_has_its_label_and_retry_verdict(
    error: type[SyncError], label: str, retried: bool, outcome_known: bool
) -> None:
    raised = error("the API said no")
    assert (raised.failure_class, raised.retryable, raised.outcome_known) == (label, retried, outcome_known)
    assert str(raised) == "the API said no"
    assert isinstance(raised, RetryableError if retried else SyncError)
    assert isinstance(raised, PermanentError) == (not retried and error is not SyncError)


def test_labels_are_distinct() -> None:
    assert len({label for _, label, _, _ in CLASSES}) == len(CLASSES)


def test_a_retryable_failure_carries_the_apis_retry_after() -> None:
    assert RateLimited("slow down", retry_after=7.5).retry_after == 7.5
    given_in_order = RateLimited("slow down", 7.5)
    assert (str(given_in_order), given_in_order.retry_after) == ("slow down", 7.5)  # the message only
    assert ApiUnavailable("503").retry_after is None
    assert SyncError("x").retry_after is None
