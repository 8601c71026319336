"""The configurable source as data: its declaration's validation, each way it authenticates, how it
reads items; then end to end over HTTP with the presets (below)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis

from crmsync.cli import main
from crmsync.core.settings import Settings, SettingsError
from crmsync.erasure.audit import list_erasures
from crmsync.operations.source_items import ignored_counts, rejected_items
from crmsync.web import create_app
from jobs.worker import SyncWorker
from sandbox import RunningSandbox
from tests.support import P1, P2, Platform, customers, run, seed_purchases, served, stats
from webhooks.declarations import SourceDeclaration
from webhooks.mappings import MappingError, mappings_from_document
from webhooks.sources.configured import read_items, secrets_from_env, signed_content, verify_request
from webhooks.sources.items import (
    MAX_ITEMS_PER_REQUEST,
    AuthenticationFailed,
    InboundRequest,
    TooManyItems,
    UnparseableBody,
)
from webhooks.sources.registry import NAMES

BASE = """
[sources.acme.auth]
type = "hmac"
secret_env = "ACME_SECRETS"
header = "X-Acme-Signature"
[sources.acme.items]
id = "id"
type = "type"
version = "updated_at"
[sources.acme.types]
"account.updated" = "customer.updated"
"account.deleted" = "customer.deleted"
"privacy.requested" = "erasure"
[sources.acme.fields]
name = "name"
"""


def declared(toml: str = BASE, **overrides: Any) -> SourceDeclaration:
    """The `acme` declaration of `toml`, with `overrides` merged into its tables."""
    document = tomllib.loads(toml)
    table = document["sources"]["acme"]
    table.setdefault("items", {}).setdefault("purchase_ids", "purchase_ids")
    for key, value in overrides.items():
        if isinstance(value, dict):
            table.setdefault(key, {}).update(value)
        else:
            table[key] = value
    return mappings_from_document(document).sources["acme"]


def error_lines(**overrides: Any) -> list[str]:
    document = tomllib.loads(BASE)
    table = document["sources"]["acme"]
    for key, value in overrides.items():
        if isinstance(value, dict):
            table.setdefault(key, {}).update(value)
        else:
            table[key] = value
    with pytest.raises(MappingError) as raised:
        mappings_from_document(document)
    return [line.removeprefix("CRMSYNC_MAPPINGS: ") for line in str(raised.value).splitlines()]


# --- the declaration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"auth": {"type": "digest"}},
         "sources.acme.auth.type: Must be one of: hmac, basic, bearer, query_token."),
        ({"auth": {"encoding": "base32"}}, "sources.acme.auth.encoding: Must be one of: hex, base64."),
        ({"auth": {"algorithm": "md5"}}, "sources.acme.auth.algorithm: Must be one of: sha256, sha1."),
        ({"auth": {"secret_env": "my secret"}}, "sources.acme.auth.secret_env: must name an environment "
                                                "variable (A-Z, 0-9, _)"),
        ({"auth": {"signed_content": "{timestamp}.{body}"}},
         "sources.acme.auth.timestamp_header: {timestamp} in signed_content and timestamp_header "
         "go together"),
        ({"auth": {"signed_content": "{id}.{body}"}},
         "sources.acme.auth.signed_content: may only use {body}, {timestamp}, {url}, {method}"),
        ({"auth": {"signed_content": "{timestamp}"}, "timestamp_header": "x"},
         "sources.acme.auth.signed_content: must sign the body: include {body}"),
        ({"auth": {"type": "bearer", "prefix": "sha256="}},
         'sources.acme.auth.prefix: only used when type = "hmac"'),
        ({"auth": {"tolerance_seconds": "300"}}, "sources.acme.auth.tolerance_seconds: Not a valid integer."),
        ({"items": {"version_format": "rfc2822"}},
         "sources.acme.items.version_format: Must be one of: iso8601, unix_s, unix_ms."),
        ({"items": {"colour": "id"}}, "sources.acme.items.colour: unknown key"),
        ({"types": {"account.created": "upsert"}},
         "sources.acme.types.account.created.value: Must be one of: customer.updated, customer.deleted, "
         "erasure, ignored."),
        ({"fields": {"email": "email"}}, "sources.acme.fields.email: unknown key"),
        ({"preset": "attio"}, "sources.acme.preset: Must be one of: close, twenty."),
        ({"items": {"purchase_ids": ""}}, "sources.acme.items: required when a type maps to \"erasure\""),
    ],
    ids=["auth-type", "encoding", "algorithm", "secret-env", "timestamp-alone", "unknown-placeholder",
         "body-unsigned", "hmac-key-on-bearer", "tolerance-text", "version-format", "unknown-item-key",
         "unknown-action", "unknown-field", "unknown-preset", "erasure-without-purchase-ids"],
)  # fmt: skip
def test_every_mistake_in_a_declaration_is_one_line_naming_its_key(
    overrides: dict[str, Any], line: str
) -> None:
    if overrides.get("timestamp_header"):
        overrides = {"auth": {**overrides["auth"], "timestamp_header": overrides.pop("timestamp_header")}}
    assert line in error_lines(**{"items": {"purchase_ids": "purchase_ids"}} | overrides)


@pytest.mark.parametrize("name", ["hubspot", "crm", "Acme", "1crm", "a" * 33, "with space"])
def test_a_source_name_that_is_built_in_or_not_a_slug_is_refused(name: str) -> None:
    document = tomllib.loads(BASE.replace("sources.acme", f'sources."{name}"'))
    with pytest.raises(MappingError, match=f"sources.{name}: a source name is 1-32 of"):
        mappings_from_document(document)


def test_a_preset_is_a_declaration_whose_keys_the_table_overrides() -> None:
    document = {"sources": {"close": {"preset": "close", "fields": {"name": "data.name"}}}}
    close = mappings_from_document(document).sources["close"]
    assert (close.auth.header, close.auth.key, close.auth.signed_content) == (
        "close-sig-hash", "hex", "{timestamp}{body}",
    )  # fmt: skip
    assert close.fields == {"name": ("data.name",), "description": ("data.description",)}


def test_secrets_come_from_the_variable_the_declaration_names() -> None:
    declaration = declared()
    assert secrets_from_env(declaration, {"ACME_SECRETS": " one, two ,"}) == (b"one", b"two")
    with pytest.raises(
        MappingError, match=r"^ACME_SECRETS \(named by sources.acme.auth.secret_env\): missing"
    ):
        secrets_from_env(declaration, {})
    hex_key = declared(auth={"key": "hex"})
    with pytest.raises(MappingError, match="a secret is not hex") as raised:
        secrets_from_env(hex_key, {"ACME_SECRETS": "not-hex-value"})
    assert "not-hex-value" not in str(raised.value)
    basic = declared(auth={"type": "basic", "header": "Authorization"})
    with pytest.raises(MappingError, match="each credential is user:password"):
        secrets_from_env(basic, {"ACME_SECRETS": "no-colon"})


# --- authentication ---------------------------------------------------------------------------------


def request(
    headers: dict[str, str], body: bytes = b"{}", query: dict[str, str] | None = None
) -> InboundRequest:
    return InboundRequest("POST", "https", "crm.example.com", "/webhooks/acme?x=1",
                          {k.lower(): v for k, v in headers.items()}, body, query or {})  # fmt: skip


def test_an_hmac_over_a_template_with_prefix_sha1_and_base64_verifies() -> None:
    declaration = declared(auth={"algorithm": "sha1", "encoding": "base64", "prefix": "sha1=",
                                 "signed_content": "{method} {url}\n{timestamp}.{body}",
                                 "timestamp_header": "X-Acme-Time"})  # fmt: skip
    stamp, body = str(int(time.time())), b'{"id": 1}'
    content = f"POST https://crm.example.com/webhooks/acme?x=1\n{stamp}.".encode() + body
    signature = base64.b64encode(hmac.new(b"second", content, hashlib.sha1).digest()).decode()
    headers = {"X-Acme-Signature": f"sha1={signature}", "X-Acme-Time": stamp}
    verify_request(declaration.auth, (b"first", b"second"), request(headers, body))
    with pytest.raises(AuthenticationFailed) as raised:
        verify_request(declaration.auth, (b"first",), request(headers, body))
    assert raised.value.reason == "invalid_signature"
    with pytest.raises(AuthenticationFailed, match="does not start with 'sha1='"):
        verify_request(
            declaration.auth, (b"second",), request({**headers, "X-Acme-Signature": signature}, body)
        )


# Stands for the time the test runs, in a parameter list built when the tests are collected.
NOW = "now"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_header"),
        ({"X-Acme-Signature": "00"}, "missing_header"),
        ({"X-Acme-Signature": "00", "X-Acme-Time": "17e8"}, "malformed_timestamp"),
        ({"X-Acme-Signature": "00", "X-Acme-Time": "-1"}, "malformed_timestamp"),
        ({"X-Acme-Signature": "00", "X-Acme-Time": "1000"}, "timestamp_out_of_tolerance"),
        ({"X-Acme-Signature": "zz", "X-Acme-Time": NOW}, "invalid_signature"),
    ],
    ids=["no-signature", "no-timestamp", "exponent", "negative", "1970", "not-hex"],
)
def test_each_hmac_failure_has_its_reason(headers: dict[str, str], reason: str) -> None:
    declaration = declared(auth={"signed_content": "{timestamp}.{body}", "timestamp_header": "X-Acme-Time"})
    # The current time is read when the test runs: a long suite outlasts the tolerance.
    now = {name: str(int(time.time())) if value is NOW else value for name, value in headers.items()}
    with pytest.raises(AuthenticationFailed) as raised:
        verify_request(declaration.auth, (b"secret",), request(now))
    assert raised.value.reason == reason


def test_a_bearer_token_is_one_of_the_secrets() -> None:
    auth = declared(auth={"type": "bearer", "header": "Authorization"}).auth
    verify_request(auth, (b"old-token", b"new-token"), request({"Authorization": "Bearer new-token"}))
    failures = [({}, "missing_credentials"), ({"Authorization": "Basic new-token"}, "missing_credentials"),
                ({"Authorization": "Bearer new-tokeN"}, "invalid_credentials")]  # fmt: skip
    for headers, reason in failures:
        with pytest.raises(AuthenticationFailed) as raised:
            verify_request(auth, (b"old-token", b"new-token"), request(headers))
        assert raised.value.reason == reason


def test_a_bearer_token_in_another_header_is_the_whole_value() -> None:
    auth = declared(auth={"type": "bearer", "header": "X-Api-Key"}).auth
    verify_request(auth, (b"token-1",), request({"X-Api-Key": "token-1"}))
    with pytest.raises(AuthenticationFailed):
        verify_request(auth, (b"token-1",), request({"X-Api-Key": "Bearer token-1"}))


def test_a_token_in_the_query_is_one_of_the_secrets() -> None:
    auth = declared(auth={"type": "query_token", "parameter": "key"}).auth
    verify_request(auth, (b"k-1", b"k-2"), request({}, query={"key": "k-1"}))
    with pytest.raises(AuthenticationFailed, match="query parameter key does not match"):
        verify_request(auth, (b"k-1", b"k-2"), request({}, query={"key": "k-3"}))
    with pytest.raises(AuthenticationFailed, match="query parameter key is required"):
        verify_request(auth, (b"k-1",), request({}, query={"token": "k-1"}))


def test_basic_credentials_are_one_of_the_pairs() -> None:
    auth = declared(auth={"type": "basic", "header": "Authorization"}).auth
    pairs = (b"crmsync:old-password", b"crmsync:new-password")

    def basic(credentials: str) -> InboundRequest:
        return request({"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()})

    verify_request(auth, pairs, basic("crmsync:new-password"))
    for credentials in ("crmsync:guess", "crmsync", "other:new-password"):
        with pytest.raises(AuthenticationFailed):
            verify_request(auth, pairs, basic(credentials))


@given(
    body=st.binary(max_size=300),
    secrets=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4, unique=True),
    signer=st.integers(0, 3),
)
def test_a_signature_by_any_secret_of_the_rotation_verifies_and_none_other(
    body: bytes, secrets: list[bytes], signer: int
) -> None:
    auth = declared().auth
    key = secrets[signer % len(secrets)]
    headers = {"X-Acme-Signature": hmac.new(key, body, hashlib.sha256).hexdigest()}
    verify_request(auth, tuple(secrets), request(headers, body))
    others = tuple(secret for secret in secrets if secret != key) or (key + b"x",)
    with pytest.raises(AuthenticationFailed):
        verify_request(auth, others, request(headers, body))


def test_the_signed_content_takes_placeholders_only_once_each_as_given() -> None:
    # A body holding "{timestamp}" is signed as it is: placeholders are filled in the template only.
    inbound = request({}, body=b'{"a": "{timestamp}"}')
    assert signed_content("{timestamp}:{body}", inbound, "17") == b'17:{"a": "{timestamp}"}'


# --- reading items ----------------------------------------------------------------------------------


def item(**overrides: Any) -> dict[str, Any]:
    return {"id": 7, "type": "account.updated", "updated_at": "2026-11-20T09:30:00Z", "name": "Orbital",
            **overrides}  # fmt: skip


def test_the_body_may_be_one_item_or_a_list_or_a_list_at_a_path() -> None:
    assert len(read_items(json.dumps(item()).encode(), declared()).events) == 1
    assert len(read_items(json.dumps([item(), item(id=8)]).encode(), declared()).events) == 2
    nested = declared(items={"path": "payload.changes"})
    assert len(read_items(json.dumps({"payload": {"changes": [item()]}}).encode(), nested).events) == 1
    with pytest.raises(UnparseableBody, match="payload.changes is neither a list of items nor one item"):
        read_items(json.dumps({"payload": {"changes": "none"}}).encode(), nested)
    with pytest.raises(TooManyItems):
        read_items(json.dumps([item()] * (MAX_ITEMS_PER_REQUEST + 1)).encode(), declared())


@pytest.mark.parametrize(
    ("version_format", "value", "timestamp"),
    [
        ("iso8601", "2026-11-20T09:30:00Z", "2026-11-20T09:30:00.000000+00:00"),
        ("iso8601", "2026-11-20T10:30:00.5+01:00", "2026-11-20T09:30:00.500000+00:00"),
        ("iso8601", "2026-11-20T09:30:00", "2026-11-20T09:30:00.000000+00:00"),
        ("unix_s", 1795599000, "2026-11-25T09:30:00.000000+00:00"),
        ("unix_s", "1795599000", "2026-11-25T09:30:00.000000+00:00"),
        ("unix_ms", 1795599000123, "2026-11-25T09:30:00.123000+00:00"),
    ],
)
def test_each_version_format_orders_by_the_same_utc_time(
    version_format: str, value: Any, timestamp: str
) -> None:
    declaration = declared(items={"version_format": version_format})
    [mapped] = read_items(json.dumps(item(updated_at=value)).encode(), declaration).events
    assert mapped.event["timestamp"] == timestamp


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (item(updated_at="yesterday"), "missing or invalid version field updated_at (iso8601)"),
        (item(updated_at=True), "missing or invalid version field updated_at (iso8601)"),
        (item(id=None), "missing external id field id"),
        (item(id={"nested": 1}), "missing external id field id"),
        ({"id": 7, "updated_at": "2026-11-20T09:30:00Z"}, "missing type field type"),
        ("not an object", "the item is not a JSON object"),
        (item(type="privacy.requested", purchase_ids="12, x"), "purchase_ids: purchase ids must be whole "
                                                                "numbers separated by ',' or ';'"),
    ],
    ids=["bad-version", "bool-version", "no-id", "object-id", "no-type", "not-object", "bad-purchases"],
)  # fmt: skip
def test_an_item_that_cannot_be_mapped_is_rejected_alone_with_ids_only(bad: Any, reason: str) -> None:
    batch = read_items(json.dumps([item(), bad]).encode(), declared())
    assert len(batch.events) == 1
    [rejected] = batch.rejected
    assert rejected.reason == reason
    assert rejected.identifiers["index"] == "1"
    assert "Orbital" not in json.dumps(rejected.identifiers)


def test_each_action_maps_to_its_event_and_other_types_are_ignored() -> None:
    items = [item(), item(type="account.deleted"), item(type="privacy.requested", purchase_ids="12; 13"),
             item(type="account.merged")]  # fmt: skip
    batch = read_items(json.dumps(items).encode(), declared())
    assert [(m.event["type"], m.event["data"]) for m in batch.events] == [
        ("customer.updated", {"external_id": "7", "name": "Orbital"}),
        ("customer.deleted", {"external_id": "7"}),
        ("customer.erasure_requested", {"external_id": "7", "purchase_ids": [12, 13]}),
    ]
    assert batch.ignored_by_type() == {"account.merged": 1}


def test_the_delivery_id_is_the_declared_field_or_header_else_a_hash_of_the_item() -> None:
    body = json.dumps([item(event_id="ev-1"), item(event_id="ev-2")]).encode()
    by_field = read_items(body, declared(items={"delivery_id": "event_id"}))
    assert [m.delivery_id for m in by_field.events] == ["acme:ev-1", "acme:ev-2"]
    by_header = declared(items={"delivery_id": "header:Idempotency-Key"})
    inbound = request({"Idempotency-Key": "d-9"}, body)
    assert [m.delivery_id for m in read_items(body, by_header, inbound).events] == [
        "acme:d-9:0",
        "acme:d-9:1",
    ]
    assert read_items(body, by_header, request({}, body)).rejected[0].reason == (
        "missing delivery id header Idempotency-Key"
    )
    hashed = [m.delivery_id for m in read_items(body, declared()).events]
    assert hashed == [m.delivery_id for m in read_items(body, declared()).events]
    assert len(set(hashed)) == 2 and all(d.startswith("acme:sha256:") for d in hashed)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["id", "type", "updated_at", "name", "x"]), inner, max_size=5),
                    max_leaves=20))  # fmt: skip
def test_any_json_body_is_read_item_by_item_or_refused_as_a_whole(payload: Any) -> None:
    try:
        batch = read_items(json.dumps(payload).encode(), declared())
    except UnparseableBody:
        assert not isinstance(payload, list | dict)
        return
    count = len(payload) if isinstance(payload, list) else 1
    assert len(batch.events) + len(batch.ignored) + len(batch.rejected) == count
    assert batch.unexpected_error is None


# --- start-up and the CLI ---------------------------------------------------------------------------


def write_mappings(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mappings.toml"
    path.write_text(text)
    return str(path)


def test_the_web_starts_with_declared_sources_only_and_not_without_their_secret(tmp_path: Path) -> None:
    mappings = write_mappings(tmp_path, '[sources.close]\npreset = "close"\n')
    settings = Settings.from_env({"CRMSYNC_MAPPINGS": mappings}, role="web")
    app = create_app(settings, environ={"CLOSE_WEBHOOK_SIGNATURE_KEYS": "ab" * 32})
    assert list(app.extensions["crmsync_sources"]) == ["close"]
    with pytest.raises(MappingError, match=r"CLOSE_WEBHOOK_SIGNATURE_KEYS \(named by sources.close.auth"):
        create_app(settings, environ={})


def test_the_web_refuses_a_mappings_file_that_declares_no_source_when_none_is_built_in(
    tmp_path: Path,
) -> None:
    mappings = write_mappings(tmp_path, '[pipedrive.organization.fields]\nname = "name"\n')
    settings = Settings.from_env({"CRMSYNC_MAPPINGS": mappings}, role="web")
    with pytest.raises(SettingsError, match="no webhook source is enabled: .* declares no"):
        create_app(settings, environ={})


def test_mappings_show_and_preview_know_a_declared_source(tmp_path: Path) -> None:
    mappings = write_mappings(tmp_path, BASE.replace('"privacy.requested" = "erasure"\n', ""))
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps([item(), item(type="account.merged")]))
    env = {"CRMSYNC_MAPPINGS": mappings}
    shown = CliRunner().invoke(main, ["mappings", "show"], env=env, catch_exceptions=False)
    assert "acme: POST /webhooks/acme, hmac auth, external id = id" in shown.output
    assert "account.deleted" in shown.output
    previewed = CliRunner().invoke(main, ["mappings", "preview", "acme", str(payload)], env=env)
    assert previewed.output.splitlines()[0] == "1 event(s), 1 ignored, 0 rejected"
    unknown = CliRunner().invoke(main, ["mappings", "preview", "no-such-crm", str(payload)], env=env)
    assert unknown.exit_code == 2
    known = ", ".join((*NAMES, "acme"))
    assert f"unknown source 'no-such-crm': expected one of {known}" in unknown.output


def test_the_documented_declaration_is_valid_as_written() -> None:
    """docs/crm-sources.md's example of the configurable source loads as it stands."""
    docs = (Path(__file__).parents[2] / "docs" / "crm-sources.md").read_text()
    section = docs[docs.index("## A CRM crmsync does not know: the configurable source") :]
    example = section[
        section.index("```toml\n") + len("```toml\n") : section.index("\n```", section.index("```toml"))
    ]
    sources = mappings_from_document(tomllib.loads(example)).sources
    assert sorted(sources) == ["acme", "close"]
    assert sources["acme"].types["privacy.requested"] == "erasure"


# -- end to end over HTTP with the presets ---------------------------------------------------------
#
# The presets are tested against what their vendors document (docs/crm-sources.md cites each page):
# - Close: `close-sig-hash` = hex HMAC-SHA256, keyed by the bytes of the hex signature key, of
#   `close-sig-timestamp` + body; the body `{"subscription_id", "event": {...}}` as in the example of
#   developer.close.com/api/resources/webhooks (an event with `id`, `object_type`, `action`,
#   `object_id`, `date_updated`, `data`, `previous_data`).
# - Twenty: `X-Twenty-Webhook-Signature` = hex HMAC-SHA256 of `{X-Twenty-Webhook-Timestamp}:{body}`
#   (milliseconds), the body `{"event", "data", "timestamp"}` as in twentyhq/twenty's webhooks page.
# A third source, `acme`, is declared from scratch: a list of items, HTTP Basic, a header delivery id,
# unix-millisecond versions and an erasure type.

# Close shows a subscription's `signature_key` as 64 hex digits; a rotation holds two.
CLOSE_KEY = "4b1e5c0a9f3d2e7b6a8c1d0e9f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
CLOSE_NEW_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
TWENTY_SECRET = "twenty-webhook-secret-0123456789"
ACME_USER, ACME_PASSWORD = "crmsync", "acme-password-0123456789"

MAPPINGS = """
[sources.close]
preset = "close"
external_id_prefix = "close-"

[sources.twenty]
preset = "twenty"

[sources.acme]
external_id_prefix = "acme-"
[sources.acme.auth]
type = "basic"
secret_env = "ACME_CREDENTIALS"
[sources.acme.items]
path = "changes"
id = "record.id"
type = "kind"
version = "record.modified_ms"
version_format = "unix_ms"
delivery_id = "header:X-Acme-Delivery"
purchase_ids = "record.purchases"
[sources.acme.types]
"account.saved" = "customer.updated"
"account.removed" = "customer.deleted"
"privacy.requested" = "erasure"
[sources.acme.fields]
name = "record.title"
labels = ["record.tags", "record.segment"]

[sources.beacon]
[sources.beacon.auth]
type = "bearer"
secret_env = "BEACON_TOKENS"
[sources.beacon.items]
id = "id"
type = "type"
version = "at"
version_format = "unix_s"
[sources.beacon.types]
"org.changed" = "customer.updated"
[sources.beacon.fields]
name = "name"

[sources.quill]
preset = "twenty"
[sources.quill.auth]
type = "query_token"
secret_env = "QUILL_TOKENS"
"""


@pytest.fixture(scope="module")
def configured_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app serving the three declared sources only (no built-in CRM source), over real HTTP;
    their secrets come from the environment given to create_app (two Close keys: a rotation)."""
    mappings = tmp_path_factory.mktemp("configured") / "mappings.toml"
    mappings.write_text(MAPPINGS)
    environ = {
        "CLOSE_WEBHOOK_SIGNATURE_KEYS": f"{CLOSE_KEY}, {CLOSE_NEW_KEY}",
        "TWENTY_WEBHOOK_SECRETS": TWENTY_SECRET,
        "ACME_CREDENTIALS": f"{ACME_USER}:{ACME_PASSWORD}",
        "BEACON_TOKENS": "beacon-old-token,beacon-new-token",
        "QUILL_TOKENS": "quill-token-0123456789",
    }
    app = create_app(replace(settings, mappings_file=str(mappings)), environ=environ)
    with served(app) as base_url:
        yield base_url


@pytest.fixture
def configured(configured_server: str, redis: Redis, sandbox: RunningSandbox) -> str:
    """The base URL of the app with the declared sources, with Redis emptied and the sandbox reset."""
    return configured_server


# --- Close ------------------------------------------------------------------------------------------


def close_body(action: str, event_id: str, updated: str, **data: Any) -> bytes:
    """A Close webhook body as developer.close.com shows it (a lead instead of an opportunity)."""
    lead = "lead_IIDHIStmFcFQZZP0BRe99V1MCoXWz2PGCm6EDmR9v2O"
    return json.dumps({
        "subscription_id": "whsub_2ZKYBHfCqIyEsKJL8AKIUZ",
        "event": {
            "id": event_id,
            "date_created": updated,
            "date_updated": updated,
            "organization_id": "orga_XbVPx5fFbKlYTz9PW5Ih1XDhViV10YihIaEgMEb6fVW",
            "user_id": "user_N6KhMpzHRCYQHdn4gRNIFNN5JExnsrprKA6ekxM63XA",
            "request_id": "req_4S2L8JTBAA1OUS74SSmAWC",
            "api_key_id": None,
            "object_type": "lead",
            "object_id": lead,
            "lead_id": lead,
            "action": action,
            "changed_fields": sorted(data) if action == "updated" else [],
            "meta": {"request_method": "PUT", "request_path": f"/api/v1/lead/{lead}/"},
            "data": {"id": lead, **data} if action != "deleted" else {},
            "previous_data": {},
        },
    }).encode()  # fmt: skip


LEAD = "close-lead_IIDHIStmFcFQZZP0BRe99V1MCoXWz2PGCm6EDmR9v2O"


def close_post(base: str, body: bytes, key: str = CLOSE_KEY, timestamp: int | None = None,
               signature: str | None = None) -> requests.Response:  # fmt: skip
    """POST `body` signed as Close signs: the key is the bytes of the hex signature key."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(bytes.fromhex(key), stamp.encode() + body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "close-sig-hash": signature or digest,
               "close-sig-timestamp": stamp}  # fmt: skip
    return requests.post(f"{base}/webhooks/close", data=body, headers=headers, timeout=10)


def test_close_a_lead_created_then_updated_is_the_customer_and_other_objects_are_ignored(
    configured: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    created = close_body("created", "ev_1", "2026-11-20T09:30:00.100000", display_name="Orbital Freight")
    assert close_post(configured, created).json() == {
        "status": "accepted", "queued": 1, "duplicates": 0, "ignored": 0, "rejected": 0,
    }  # fmt: skip
    updated = close_body("updated", "ev_2", "2026-11-20T09:31:00.000000+00:00",
                         display_name="Orbital Freight Group", description="Cargo")  # fmt: skip
    assert close_post(configured, updated).json()["queued"] == 1
    task = json.loads(close_body("created", "ev_3", "2026-11-20T09:32:00"))
    task["event"]["object_type"] = "task.lead"
    assert close_post(configured, json.dumps(task).encode()).json()["ignored"] == 1
    run(worker)
    [customer] = customers(platform, LEAD)
    assert (customer["name"], customer["description"]) == ("Orbital Freight Group", "Cargo")
    assert ignored_counts(redis) == {("close", "task.lead.created"): 1}


def test_close_an_older_update_arriving_late_does_not_win_and_a_redelivery_is_a_duplicate(
    configured: str, worker: SyncWorker, platform: Platform
) -> None:
    newer = close_body("updated", "ev_2", "2026-11-25T10:00:00.000000", display_name="Orbital Freight Group")
    older = close_body("created", "ev_1", "2026-11-20T10:00:00.000000", display_name="Orbital Freight")
    assert close_post(configured, newer).json()["queued"] == 1
    assert close_post(configured, older).json()["queued"] == 1
    assert close_post(configured, newer).json()["duplicates"] == 1
    run(worker)
    assert [c["name"] for c in customers(platform, LEAD)] == ["Orbital Freight Group"]


def test_close_a_deleted_lead_deletes_the_customer(
    configured: str, worker: SyncWorker, platform: Platform
) -> None:
    close_post(
        configured, close_body("created", "ev_1", "2026-11-20T09:30:00", display_name="Orbital Freight")
    )
    run(worker)
    assert close_post(configured, close_body("deleted", "ev_2", "2026-11-20T10:00:00")).json()["queued"] == 1
    run(worker)
    assert customers(platform, LEAD) == []


def test_close_either_key_of_a_rotation_is_accepted(configured: str) -> None:
    body = close_body("created", "ev_1", "2026-11-20T09:30:00", display_name="Orbital Freight")
    assert close_post(configured, body, key=CLOSE_KEY).status_code == 200
    assert close_post(configured, body, key=CLOSE_NEW_KEY).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"key": "00" * 32}, "invalid_signature"),
        ({"signature": "not hex at all"}, "invalid_signature"),
        ({"timestamp": int(time.time()) - 3600}, "timestamp_out_of_tolerance"),
        ({"timestamp": int(time.time()) + 3600}, "timestamp_out_of_tolerance"),
    ],
    ids=["unknown-key", "not-hex", "stale", "from-the-future"],
)
def test_close_every_authentication_failure_is_401_and_records_nothing(
    configured: str, redis: Redis, overrides: dict[str, Any], reason: str
) -> None:
    body = close_body("created", "ev_1", "2026-11-20T09:30:00", display_name="Orbital Freight")
    response = close_post(configured, body, **overrides)
    assert (response.status_code, response.json()["error"]) == (401, reason)
    assert redis.dbsize() == 0


def test_close_a_body_changed_after_signing_is_401(configured: str, redis: Redis) -> None:
    stamp = str(int(time.time()))
    signed = close_body("created", "ev_1", "2026-11-20T09:30:00", display_name="Orbital Freight")
    signature = hmac.new(bytes.fromhex(CLOSE_KEY), stamp.encode() + signed, hashlib.sha256).hexdigest()
    tampered = signed.replace(b"Orbital", b"Orbitax")
    response = close_post(configured, tampered, timestamp=int(stamp), signature=signature)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_signature")
    assert redis.dbsize() == 0


# --- Twenty -----------------------------------------------------------------------------------------


def twenty_body(event: str, at: str, **record: Any) -> bytes:
    """A Twenty webhook body as its webhooks page shows it (a company instead of a person)."""
    data = {"id": "20202020-0fd4-4f52-b2cd-6b8f2ac4e7c1", "createdAt": "2026-11-20T09:00:00Z", **record}
    return json.dumps({"event": event, "data": data, "timestamp": at}).encode()


COMPANY = "20202020-0fd4-4f52-b2cd-6b8f2ac4e7c1"


def twenty_post(
    base: str, body: bytes, secret: str = TWENTY_SECRET, millis: int | None = None
) -> requests.Response:
    stamp = str(int(time.time() * 1000) if millis is None else millis)
    signature = hmac.new(secret.encode(), f"{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "X-Twenty-Webhook-Signature": signature,
               "X-Twenty-Webhook-Timestamp": stamp}  # fmt: skip
    return requests.post(f"{base}/webhooks/twenty", data=body, headers=headers, timeout=10)


def test_twenty_a_company_is_created_updated_and_deleted(
    configured: str, worker: SyncWorker, platform: Platform
) -> None:
    assert (
        twenty_post(
            configured, twenty_body("company.created", "2026-11-20T09:30:00Z", name="Orbital")
        ).json()["queued"]
        == 1
    )
    updated = twenty_body("company.updated", "2026-11-20T09:31:00Z", name="Orbital Freight")
    assert twenty_post(configured, updated).json()["queued"] == 1
    # Twenty documents no delivery id: the same body again is the same delivery.
    assert twenty_post(configured, updated).json()["duplicates"] == 1
    assert (
        twenty_post(configured, twenty_body("person.created", "2026-11-20T09:31:00Z")).json()["ignored"] == 1
    )
    run(worker)
    assert [c["name"] for c in customers(platform, COMPANY)] == ["Orbital Freight"]
    assert (
        twenty_post(configured, twenty_body("company.deleted", "2026-11-20T09:40:00Z")).json()["queued"] == 1
    )
    run(worker)
    assert customers(platform, COMPANY) == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"secret": "another-secret"}, "invalid_signature"),
        ({"millis": int(time.time() * 1000) - 600_000}, "timestamp_out_of_tolerance"),
        # Seconds where Twenty sends milliseconds: 1970, far outside the tolerance.
        ({"millis": int(time.time())}, "timestamp_out_of_tolerance"),
    ],
    ids=["wrong-secret", "stale", "seconds-not-milliseconds"],
)
def test_twenty_every_authentication_failure_is_401_and_records_nothing(
    configured: str, redis: Redis, overrides: dict[str, Any], reason: str
) -> None:
    response = twenty_post(
        configured, twenty_body("company.created", "2026-11-20T09:30:00Z", name="O"), **overrides
    )
    assert (response.status_code, response.json()["error"]) == (401, reason)
    assert redis.dbsize() == 0


# --- a source declared from scratch -----------------------------------------------------------------


def acme_post(base: str, changes: list[dict[str, Any]], delivery: str = "dlv-1",
              password: str = ACME_PASSWORD) -> requests.Response:  # fmt: skip
    token = base64.b64encode(f"{ACME_USER}:{password}".encode()).decode()
    headers = {"authorization": f"Basic {token}", "X-Acme-Delivery": delivery}
    return requests.post(f"{base}/webhooks/acme", json={"changes": changes}, headers=headers, timeout=10)


def saved(record_id: str, title: str, modified_ms: int, **record: Any) -> dict[str, Any]:
    return {"kind": "account.saved", "record": {"id": record_id, "title": title, "modified_ms": modified_ms,
                                                  **record}}  # fmt: skip


def test_a_declared_batch_maps_each_item_and_rejects_a_bad_one_alone(
    configured: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    changes = [
        saved("1", "Orbital Freight", 1795599000000, tags=["cargo", "space"], segment="enterprise"),
        saved("2", "Venus Ventures", 1795599000000),
        {"kind": "account.saved", "record": {"title": "Secret Person Ltd", "modified_ms": 1795599000000}},
        {"kind": "note.added", "record": {"id": "9"}},
    ]
    assert acme_post(configured, changes).json() == {
        "status": "accepted", "queued": 2, "duplicates": 0, "ignored": 1, "rejected": 1,
    }  # fmt: skip
    [rejected] = rejected_items(redis)
    assert (rejected.source, rejected.reason, rejected.identifiers) == (
        "acme", "missing external id field record.id", {"index": "2", "type": "account.saved"},
    )  # fmt: skip
    assert acme_post(configured, changes).json()["duplicates"] == 2
    run(worker)
    [orbital] = customers(platform, "acme-1")
    assert (orbital["name"], sorted(orbital["labels"])) == (
        "Orbital Freight",
        ["cargo", "enterprise", "space"],
    )
    assert [c["name"] for c in customers(platform, "acme-2")] == ["Venus Ventures"]


def test_a_declared_erasure_type_erases_through_the_erasure_path(
    configured: str, worker: SyncWorker, sandbox: RunningSandbox, platform: Platform, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, P1, P2)
    acme_post(configured, [saved("1", "Orbital Freight", 1795599000000)], delivery="dlv-1")
    run(worker)
    request = {"kind": "privacy.requested",
               "record": {"id": "1", "modified_ms": 1795599100000, "purchases": f"{P1};{P2}"}}  # fmt: skip
    assert acme_post(configured, [request], delivery="dlv-2").json()["queued"] == 1
    run(worker)
    (record,) = list_erasures(redis, 30)
    assert (record.webhook_id, record.external_id, record.status) == ("acme:dlv-2:0", "acme-1", "completed")
    assert stats(sandbox)["deletePersonalCustomerData"] == {str(P1): 1, str(P2): 1}


def test_a_declared_basic_source_refuses_a_wrong_password(configured: str, redis: Redis) -> None:
    response = acme_post(configured, [saved("1", "Orbital Freight", 1795599000000)], password="guess")
    assert (response.status_code, response.json()["error"]) == (401, "invalid_credentials")
    assert redis.dbsize() == 0


def test_a_name_neither_built_in_nor_declared_is_404(configured: str) -> None:
    response = requests.post(f"{configured}/webhooks/attio", json={}, timeout=10)
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    # The built-in sources are not enabled in this app: they answer 404 as before.
    assert requests.post(f"{configured}/webhooks/pipedrive", json={}, timeout=10).status_code == 404


def test_a_declared_bearer_source_takes_either_token_of_its_rotation(
    configured: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    body = {"id": 77, "type": "org.changed", "at": 1795599000, "name": "Beacon Labs"}
    for token, status in (("beacon-new-token", 200), ("beacon-old-token", 200), ("beacon-guess", 401)):
        headers = {"authorization": f"Bearer {token}"}
        response = requests.post(f"{configured}/webhooks/beacon", json=body, headers=headers, timeout=10)
        assert response.status_code == status
    run(worker)
    assert [c["name"] for c in customers(platform, "77")] == ["Beacon Labs"]


def test_a_declared_query_token_source_checks_the_token_in_the_query(configured: str, redis: Redis) -> None:
    """A preset's auth replaced by a table of the operator (`quill` reads Twenty's bodies)."""
    body = twenty_body("company.created", "2026-11-20T09:30:00Z", name="Quill")
    url = f"{configured}/webhooks/quill"
    assert requests.post(f"{url}?token=quill-token-0123456789", data=body, timeout=10).json()["queued"] == 1
    response = requests.post(f"{url}?token=quill-guess", data=body, timeout=10)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_credentials")
    assert requests.post(url, data=body, timeout=10).json()["error"] == "missing_credentials"
