"""Personal values are removed from API error messages, however the API echoes them, and from every
message stored on a customer's jobs when they ask for erasure."""

from __future__ import annotations

import pytest
import requests
from redis import Redis
from rq.job import JobStatus
from rq.results import Result

from crmsync.core import rq_internals
from crmsync.core.keys import payload_key
from crmsync.core.redaction import REDACTED, redact
from jobs.worker import SyncWorker
from sandbox import RunningSandbox
from tests.support import (
    ADMIN,
    DESCRIPTION,
    LABEL,
    NAME,
    Deliver,
    Platform,
    event,
    job_of,
    personal_values_found,
    run,
)


@pytest.mark.parametrize(
    ("message", "values"),
    [
        ("Customer with name Zaphod Beeblebrox already exists", ["Zaphod Beeblebrox"]),
        ("label 'galaxy-president' is invalid", ["Galaxy-President"]),  # the platform lower-cases labels
        ('Variable "$input" got invalid value {"name": "Zo\\u00eb \\"Z\\" Q"}', ['Zoë "Z" Q']),
        ('invalid value {"description": "line one\\nline two"}', ["line one\nline two"]),
        ("got 'O\\'Brien & Sons'", ["O'Brien & Sons"]),
    ],
    ids=["verbatim", "other-case", "json-escaped", "json-newline", "repr-escaped"],
)
def test_an_echoed_personal_value_is_redacted(message: str, values: list[str]) -> None:
    redacted = redact(message, values)
    assert REDACTED in redacted
    for value in values:
        assert value.lower() not in redacted.lower()
    assert "Zo" not in redacted and "Brien" not in redacted and "line one" not in redacted


def test_a_longer_value_is_redacted_whole_before_a_shorter_one_inside_it() -> None:
    assert redact("name Mars Missions Corp taken", ["Mars", "Mars Missions Corp"]) == f"name {REDACTED} taken"


def test_text_without_personal_values_is_unchanged() -> None:
    assert redact("personal-data API failed with HTTP 503", ["Zaphod", ""]) == (
        "personal-data API failed with HTTP 503"
    )


# End to end: the sandbox echoes submitted values in its errors, as real GraphQL APIs do
# ('Invalid value: "Zaphod Beeblebrox".'); nothing of them may stay in Redis.

CREATE = """mutation ($input: CreateCustomerInput!) {
  createCustomer(input: $input) { errors { field messages } }
}"""


def refuse_next_mutation(sandbox: RunningSandbox) -> None:
    """The sandbox refuses the next customer mutation with errors quoting every submitted value."""
    url = f"{sandbox.base_url}/admin/faults/reject"
    requests.put(url, json={"next": 1}, headers=ADMIN, timeout=5).raise_for_status()


def test_an_api_error_echoing_the_events_values_is_stored_redacted(
    deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, redis: Redis
) -> None:
    refuse_next_mutation(sandbox)
    job = job_of(deliver(event("created", name=NAME, description=DESCRIPTION, labels=[LABEL])), redis)
    run(worker)
    assert job.get_status() == JobStatus.FAILED
    (attempt,) = job.get_meta()["attempts"]
    assert attempt["class"] == "payload_error"
    # The API quoted the name, the description and the labels; the external id is no personal data.
    assert attempt["message"].count(REDACTED) == 3 and '"crm-1"' in attempt["message"]
    # Stored with the failure: the exception (RQ's traceback, in the job's result), redacted alike.
    # The job keeps the event itself, to be replayed; an erasure removes it (below).
    result = job.latest_result()
    assert result is not None and result.exc_string is not None
    assert result.exc_string.count(REDACTED) == 3
    assert not any(value.lower() in result.exc_string.lower() for value in (NAME, DESCRIPTION, LABEL))


def test_an_erasure_redacts_every_message_stored_on_the_customers_jobs_whatever_wrote_it(
    deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, platform: Platform, redis: Redis
) -> None:
    refuse_next_mutation(sandbox)
    created = {"externalId": "crm-1", "name": NAME, "description": DESCRIPTION, "labels": [LABEL]}
    errors = platform(CREATE, {"input": created})["data"]["createCustomer"]["errors"]
    echo = "; ".join(f"{error['field']}: {' '.join(error['messages'])}" for error in errors)
    assert NAME in echo and DESCRIPTION in echo
    refuse_next_mutation(sandbox)
    job = job_of(deliver(event("created", name=NAME, description=DESCRIPTION, labels=[LABEL])), redis)
    run(worker)
    job.refresh()
    # What an error crmsync did not foresee (or a version of it before redaction) stores: the API's
    # words verbatim in the attempt, the traceback and the results stream.
    job.meta["attempts"][0]["message"] = echo
    job.save_meta()
    with redis.pipeline() as pipe:
        rq_internals.save_exc_info(pipe, job, f"Traceback (most recent call last):\nRuntimeError: {echo}")
        pipe.execute()
    Result.create_failure(job, ttl=600, exc_string=f"RuntimeError: {echo}")
    stored = {key for key, _ in personal_values_found(redis, [NAME, DESCRIPTION])}
    assert stored == {job.key, payload_key(job.id), Result.get_key(job.id)}

    deliver(event("erasure_requested", at="2026-11-22T10:05:00Z", purchase_ids=[1]), webhook_id="msg_erase")
    run(worker)
    assert personal_values_found(redis, [NAME, DESCRIPTION, LABEL]) == []
    assert REDACTED in job.get_meta()["attempts"][0]["message"]
