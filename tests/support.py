"""The one module of shared test builders: the test secrets and tokens, events, signed deliveries
helpers, workers run to completion, sandbox seeding and faults, free ports, and reading everything a
Redis database holds as text (to prove what it does not hold).

Test modules import from here (and get fixtures from conftest.py), never from one another.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import signal
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import requests
from flask import Flask
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from standardwebhooks.webhooks import Webhook
from werkzeug.serving import make_server

# crmsync's own builders of signed and sample deliveries (the `send-sample` and `dev` commands): the
# tests import them from here only, so that their module can move with a change to these lines. Its
# signed deliveries only to check them against the independent signer (tests/sources/test_standard.py).
from crmsync.cli.sender import basic_auth as sample_basic_auth
from crmsync.cli.sender import pipedrive_body as sample_pipedrive_body
from crmsync.cli.sender import sandbox_purchase_ids as sandbox_purchase_ids
from crmsync.cli.sender import signed_request as sample_signed_request  # noqa: F401 (re-exported)
from crmsync.core.events import Event
from crmsync.core.keys import ERASURE_AUDIT_KEY
from crmsync.core.queue import EventJob
from crmsync.core.redis_conn import as_text
from crmsync.core.settings import ApiSettings, Settings
from crmsync.erasure.audit import ErasureAudit
from jobs.worker import SyncWorker, build_worker
from sandbox import RunningSandbox
from webhooks.intake import Intake
from webhooks.schemas import load_event

# -- secrets, tokens, credentials ------------------------------------------------------------

SECRET = b"test-secret-0123456789abcdef0123"

# A second secret, as during a rotation: deliveries signed with either are accepted.
PREVIOUS_SECRET = b"previous-secret-0123456789abcdef"

WEBHOOK_SECRET = " ".join("whsec_" + base64.b64encode(key).decode() for key in (SECRET, PREVIOUS_SECRET))

CUSTOMERS_TOKEN = "customers-test-token"

PERSONAL_DATA_TOKEN = "personal-data-test-token"

DASHBOARD_USER = "operator"

DASHBOARD_PASSWORD = "dashboard-test-password"

AUTH = (DASHBOARD_USER, DASHBOARD_PASSWORD)

ADMIN = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}

Deliver = Callable[..., requests.Response]

Platform = Callable[..., dict[str, Any]]

# -- deliveries to crmsync's own contract (/webhooks/crm), signed independently ---------------


def signature_headers(secret: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of a delivery of raw `body`, signed by the specification authors'
    own library (an independent signer: crmsync's `sign` is checked against it, never used for it).
    The bytes are signed as they are, UTF-8 or not: the library takes bytes since 1.3 (before, it
    formatted `data` into a str, so bytes would have been signed as their repr)."""
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def signed_request(
    secret: bytes, event: dict[str, Any], webhook_id: str | None = None, timestamp: int | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and UTF-8 JSON body of a delivery of `event` to /webhooks/crm, independently signed."""
    webhook_id = webhook_id or f"msg_{os.urandom(12).hex()}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {"content-type": "application/json", **signature_headers(secret, webhook_id, timestamp, body)}
    return headers, body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """Serve `app` over real HTTP on a free loopback port in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def event(
    kind: str, external_id: str = "crm-1", at: str = "2026-11-22T10:00:00Z", **data: Any
) -> dict[str, Any]:
    return {"type": f"customer.{kind}", "timestamp": at, "data": {"external_id": external_id, **data}}


FIND = """query ($externalId: String!) {
  customers(externalId: $externalId, isSystem: false) { nodes { id name description externalId labels } }
}"""


def customers(platform: Platform, external_id: str = "crm-1") -> list[dict[str, Any]]:
    return list(platform(FIND, {"externalId": external_id})["data"]["customers"]["nodes"])


def run(worker: SyncWorker) -> None:
    worker.work(burst=True, with_scheduler=False)


def job_of(response: requests.Response, redis: Redis) -> Job:
    return EventJob.fetch(response.json()["job_id"], connection=redis, serializer=JSONSerializer)


def work(settings: Settings, redis: Redis) -> None:
    """Drain the queue with a worker built from `settings` (its own runtime, closed afterwards)."""
    worker = build_worker(settings, redis)
    worker.work(burst=True, with_scheduler=False)
    worker.runtime.close()


def with_wrong_token(settings: Settings) -> Settings:
    """Settings whose customers API token the sandbox refuses: every customer event fails permanently."""
    assert settings.customers_api is not None
    return replace(settings, customers_api=ApiSettings(settings.customers_api.url, "wrong-token"))


def fail(deliver: Deliver, settings: Settings, redis: Redis, *events: dict[str, Any]) -> list[str]:
    """Deliver `events` and let them fail (API rejected); return their job ids."""
    job_ids = [deliver(item).json()["job_id"] for item in events]
    work(with_wrong_token(settings), redis)
    return job_ids


PURCHASE_QUERY = """query ($id: Int!) {
  purchase(id: $id) {
    id customerCountry { id }
    billingContact { firstName lastName email addressLine1 addressLine2 city country { id } }
  }
}"""


def seed_purchases(base_url: str, *purchase_ids: int) -> None:
    purchases = [
        {
            "id": purchase_id,
            "customer": {"id": 131355826},
            "customerCountry": {"id": "MT"},
            "billingContact": {
                "id": purchase_id + 1, "company": None, "firstName": "Han", "lastName": "Solo",
                "email": "han@example.com", "addressLine1": "123 Test Ave", "addressLine2": None,
                "postalCode": "1234", "city": "Tatooine", "country": {"id": "MT", "name": "Malta"},
                "state": None,
            },
            "deliveryContact": None,
            "licenseeContact": None,
        }
        for purchase_id in purchase_ids
    ]  # fmt: skip
    response = requests.post(
        f"{base_url}/admin/purchases",
        json=purchases,
        headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()


def set_faults(sandbox: RunningSandbox, **faults: Any) -> None:
    requests.put(f"{sandbox.base_url}/admin/faults", json=faults, headers=ADMIN, timeout=5).raise_for_status()


def stats(sandbox: RunningSandbox) -> dict[str, Any]:
    return dict(requests.get(f"{sandbox.base_url}/admin/stats", headers=ADMIN, timeout=5).json())


def names(platform: Platform) -> list[str]:
    nodes = platform("{ customers(isSystem: false) { nodes { name } } }")["data"]["customers"]["nodes"]
    return [node["name"] for node in nodes]


def release_scheduled(redis: Redis) -> None:
    """Let the retry delays pass: move every scheduled job back onto the queue now."""
    queue = Queue("crmsync", connection=redis, serializer=JSONSerializer)
    registry = queue.scheduled_job_registry
    for job_id in registry.get_job_ids():
        job = EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
        registry.remove(job)
        queue.enqueue_job(job)


P1, P2, P3, P4 = 356018965, 356018966, 356018967, 356018968

NAME, DESCRIPTION, LABEL = "Zaphod Beeblebrox", "Two heads, Heart of Gold", "Galaxy-President"

# The customer's own fields, and the billing contact seed_purchases gives every purchase.
PERSONAL = (NAME, DESCRIPTION, LABEL, LABEL.lower(), "Solo", "han@example.com", "123 Test Ave", "Tatooine")


def received_days_ago(
    redis: Redis, days: int, webhook_id: str, external_id: str, purchase_ids: list[int]
) -> None:
    """The `received` step of an erasure, dated `days` ago (stream ids only grow: write it first)."""
    millis = int((datetime.now(UTC) - timedelta(days=days)).timestamp() * 1000)
    fields = {"erasure": webhook_id, "external_id": external_id, "step": "received",
              "purchase_ids": ",".join(map(str, purchase_ids))}  # fmt: skip
    redis.xadd(ERASURE_AUDIT_KEY, fields, id=f"{millis}-0")  # type: ignore[arg-type]


def make_erasures_of_every_kind(
    deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, redis: Redis
) -> None:
    """An erasure received 31 days ago and never completed (overdue, the deadline being 30 days); one
    completed and one failed (an unknown purchase) through the web and a worker against the sandbox,
    for a customer holding personal data; and one received just now (pending, in time)."""
    received_days_ago(redis, 31, "msg_overdue", "crm-3", [P2])
    seed_purchases(sandbox.base_url, P1, P3)
    deliver(event("created", "crm-1", name=NAME, description=DESCRIPTION, labels=[LABEL]))
    run(worker)
    later = "2026-11-22T10:05:00Z"
    deliver(event("erasure_requested", "crm-1", at=later, purchase_ids=[P1]), webhook_id="msg_completed")
    deliver(event("erasure_requested", "crm-2", at=later, purchase_ids=[P3, 999]), webhook_id="msg_failed")
    run(worker)
    ErasureAudit(redis, retention_days=400).received("msg_pending", "crm-4", [P4])


# -- Redis scan: every text Redis holds -------------------------------------------------------


def every_text(redis: Redis) -> Iterator[tuple[str, str]]:
    """(key, text) for every key and value, whatever the type, with RQ's encodings undone:
    zlib (job `data`, `exc_info`) and base64 + zlib (result streams' `exc_string`)."""
    for raw_key in redis.scan_iter(count=1000):
        key = as_text(raw_key, errors="replace")
        for value in [raw_key, *_values(redis, raw_key)]:
            for text in _decodings(value):
                yield key, text


def personal_values_found(redis: Redis, values: Iterable[str]) -> list[tuple[str, str]]:
    """(key, value) for each personal value found anywhere in Redis, case ignored."""
    wanted = [value.lower() for value in values]
    return [(key, value) for key, text in every_text(redis) for value in wanted if value in text.lower()]


def _values(redis: Redis, key: bytes) -> list[Any]:
    kind = as_text(redis.type(key), errors="replace")
    if kind == "string":
        return [redis.get(key) or b""]
    if kind == "hash":
        return [item for pair in redis.hgetall(key).items() for item in pair]
    if kind == "list":
        return list(redis.lrange(key, 0, -1))
    if kind == "set":
        return list(redis.smembers(key))
    if kind == "zset":
        return list(redis.zrange(key, 0, -1))
    if kind == "stream":
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(key))
        return [item for _, fields in entries for pair in fields.items() for item in pair]
    raise AssertionError(f"unexpected Redis type {kind} at {key!r}")


def _decodings(value: bytes) -> Iterator[str]:
    yield value.decode(errors="replace")
    for candidate in (value, _unbase64(value)):
        if candidate:
            try:
                yield zlib.decompress(candidate).decode(errors="replace")
            except zlib.error:
                pass
    unbased = _unbase64(value)
    if unbased:
        yield unbased.decode(errors="replace")


def _unbase64(value: bytes) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


# -- the CRMs' own formats, shaped as each vendor documents them (webhooks/sources) ------------

HUBSPOT_SECRET = "hubspot-client-secret-0123456789"

SALESFORCE_ORG = "00D5g000004ABCDEAU"

SALESFORCE_TOKEN = "salesforce-token-0123456789abcdef"

PIPEDRIVE_USER, PIPEDRIVE_PASSWORD = "crmsync", "pipedrive-password-0123456789"

# What the web reads its sources' settings from (create_app's `environ`): crmsync's own contract only,
# or every source of the registry (the organization in its 15-character form, as operators copy it).
STANDARD_ENV = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
SOURCES_ENV = {
    **STANDARD_ENV,
    "HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
    "SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG[:15],
    "SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN,
    "PIPEDRIVE_WEBHOOK_USER": PIPEDRIVE_USER,
    "PIPEDRIVE_WEBHOOK_PASSWORD": PIPEDRIVE_PASSWORD,
}


# The Salesforce mappings the tests run with (issue 9's contract): an Account's labels from two fields,
# and Privacy_Request__c, a custom object an org creates for erasure requests. Defined once; a test that
# needs a variant builds it from this text where the reader sees it.
SALESFORCE_MAPPINGS = """
[salesforce.Account]
external_id = "Id"
version = "LastModifiedDate"
deleted = "IsDeleted"
[salesforce.Account.fields]
name = "Name"
description = "Description"
labels = ["Industry", "Type"]

[salesforce.Privacy_Request__c]
action = "erasure"
external_id = "Account_External_Id__c"
purchase_ids = "Purchase_Ids__c"
version = "CreatedDate"
"""


def hubspot_event(**overrides: Any) -> dict[str, Any]:
    """A `company.propertyChange` event exactly as HubSpot documents it."""
    base = {
        "eventId": 4417, "subscriptionId": 88, "portalId": 7001, "appId": 9002, "occurredAt": 1763630400000,
        "subscriptionType": "company.propertyChange", "attemptNumber": 0, "objectId": 5150,
        "changeSource": "CRM", "propertyName": "name", "propertyValue": "Orbital Freight",
    }  # fmt: skip
    return {**base, **overrides}


def hubspot_object_event(subscription: str = "company.creation", **overrides: Any) -> dict[str, Any]:
    """An event without a property (creation, deletion, merge, ...); a creation has `changeFlag`."""
    base = hubspot_event(subscriptionType=subscription, **overrides)
    del base["propertyName"], base["propertyValue"]
    if subscription.endswith(".creation"):
        base["changeFlag"] = "NEW"
    return base


def hubspot_signed_headers(
    url: str, body: bytes, version: str = "v3", timestamp_ms: int | None = None, secret: str = HUBSPOT_SECRET
) -> dict[str, str]:
    """Headers signed by HubSpot's own SDK (an independent signer) for a POST of `body` to `url`."""
    from hubspot.utils.signature import Signature

    timestamp = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
    signature = Signature.get_signature(secret, body.decode(), version, http_uri=url, timestamp=timestamp)
    if version == "v3":
        return {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": timestamp,
                "content-type": "application/json"}  # fmt: skip
    return {"x-hubspot-signature": signature, "x-hubspot-signature-version": version,
            "content-type": "application/json"}  # fmt: skip


def salesforce_sobject(sobject_type: str, values: dict[str, str]) -> str:
    """An `sObject` element; a value "nil" is sent as `xsi:nil`."""
    elements = "".join(
        f'<sf:{name} xsi:nil="true"/>' if value == "nil" else f"<sf:{name}>{value}</sf:{name}>"
        for name, value in values.items()
    )
    namespace = 'xmlns:sf="urn:sobject.enterprise.soap.sforce.com"'
    return f'<sObject xsi:type="sf:{sobject_type}" {namespace}>{elements}</sObject>'


def salesforce_account(
    record_id: str = "0015g00000QmNoPAAV", modified: str = "2026-11-20T09:30:00.000Z", **fields: str
) -> str:
    values = {"Id": record_id, "LastModifiedDate": modified, "Name": "Orbital Freight Ltd", **fields}
    return salesforce_sobject("Account", values)


def salesforce_message(*notifications: tuple[str, str], organization: str = SALESFORCE_ORG) -> bytes:
    """An Outbound Message with (notification id, sObject XML) pairs, as in Salesforce's WSDL. Not
    crmsync's sample builder: that one escapes every value and sends a minimal envelope, where tests
    need raw sObjects (`xsi:nil`, hostile XML) and the envelope's every element (EnterpriseUrl, ...)."""
    items = "".join(f"<Notification><Id>{nid}</Id>{body}</Notification>" for nid, body in notifications)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <soapenv:Body>
    <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
      <OrganizationId>{organization}</OrganizationId>
      <ActionId>04k5g0000008XYZAA2</ActionId>
      <SessionId xsi:nil="true"/>
      <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/60.0/00D5g000004ABCD</EnterpriseUrl>
      <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/60.0/00D5g000004ABCD</PartnerUrl>
      {items}
    </notifications>
  </soapenv:Body>
</soapenv:Envelope>""".encode()


# One delivery's `meta` as Pipedrive documents it, fixed so that a test's body is the same on every run
# (its delivery id, its time); `pipedrive_body`'s keyword arguments override any field.
PIPEDRIVE_META = {
    "id": "8e3b3ad0-5bde-4c0c-a8b7-2f6a4ac5a2f1", "company_id": "9001",
    "correlation_id": "1bc0a8c4-6f8c-4b7b-9b4e-0f7c1a7b4e11", "timestamp": "2026-11-20T09:30:00.123Z",
    "user_id": "123", "webhook_id": "77", "webhook_owner_id": "123", "permitted_user_ids": ["123"],
    "host": "example.pipedrive.com",
}  # fmt: skip


def pipedrive_body(
    action: str = "change", entity: str = "organization", data: Any = None, previous: Any = None, **meta: Any
) -> bytes:
    """A webhooks v2 body, built by crmsync's own sample builder: `meta` (PIPEDRIVE_META, overridden by
    `meta`), `data` (the record now; an organization by default), `previous` (changed fields; all on
    delete)."""
    if data is None and action != "delete":
        data = {"id": 42, "name": "Orbital Freight", "owner_id": 7, "label_ids": [3], "custom_fields": {}}
    return sample_pipedrive_body(action, data, previous, entity, **{**PIPEDRIVE_META, **meta})


def basic_auth(user: str = PIPEDRIVE_USER, password: str = PIPEDRIVE_PASSWORD) -> str:
    """An `Authorization` header value for HTTP Basic (Pipedrive's test credentials by default)."""
    return sample_basic_auth(user, password)


_END_OF_WATCH = "crmsync-tests-end-of-watch"


@contextmanager
def redis_round_trips(redis: Redis) -> Iterator[list[str]]:
    """The commands clients send to Redis during the block, as MONITOR sees them: each is one round
    trip (the commands a Lua script runs are left out: they run inside the script's round trip)."""
    commands: list[str] = []
    seen: list[tuple[str, str]] = []
    watching = threading.Event()

    def watch() -> None:
        with redis.monitor() as monitor:
            watching.set()
            for entry in monitor.listen():
                if _END_OF_WATCH in entry["command"]:
                    # The test's own connection (its echo below) is not the app's.
                    ours = entry["client_port"]
                    commands.extend(command for port, command in seen if port != ours)
                    return
                if entry["client_type"] != "lua":
                    seen.append((entry["client_port"], entry["command"]))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    watching.wait(timeout=10)
    yield commands
    redis.echo(_END_OF_WATCH)  # MONITOR reports in order: once this is seen, the block's are too
    watcher.join(timeout=10)


# -- worker dynos (the `dyno` fixture starts them) ---------------------------------------------------

Dyno = Callable[..., subprocess.Popen[bytes]]


def enqueue(settings: Settings, redis: Redis, webhook_id: str, body: dict[str, Any], **overrides: Any) -> str:
    """Accept `body` as the web side would (validated, `overrides` on the settings); its job id."""
    intake = Intake(redis, replace(settings, **overrides))
    return intake.accept(Event(webhook_id=webhook_id, **load_event(body))).job_id


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll `condition` until it holds (no fixed sleeps), or fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def kill_worker_groups(processes: Iterable[subprocess.Popen[bytes]], redis: Redis) -> None:
    """SIGKILL workers started in process groups of their own, and wait until Redis has dropped their
    blocked dequeues: a dead worker's `BLMOVE` that Redis still holds takes the next test's first job
    into RQ's intermediate queue, where RQ leaves it for a minute before failing it as stuck (a test
    waiting 60 s for that job to start failed so, after the dyno tests)."""
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group has exited already
        process.wait()
    wait_until(lambda: not redis.info("clients")["blocked_clients"], "killed workers' dequeues dropped", 30)


def status(redis: Redis, job_id: str) -> JobStatus | None:
    """The job's status as stored now."""
    return EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status()


CORPUS = Path(__file__).parent / "corpus"


def corpus(vendor: str, name: str) -> bytes:
    """A real-shaped body of `vendor` from tests/corpus (its origin is in tests/corpus/README.md)."""
    return (CORPUS / vendor / name).read_bytes()
