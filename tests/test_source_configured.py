"""The configurable source as data: its declaration's validation, each way it authenticates, how it
reads items. End to end over HTTP with the presets: tests/test_configured_e2e.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from crmsync.cli import main
from crmsync.core.settings import Settings, SettingsError
from crmsync.web import create_app
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


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_header"),
        ({"X-Acme-Signature": "00"}, "missing_header"),
        ({"X-Acme-Signature": "00", "X-Acme-Time": "17e8"}, "malformed_timestamp"),
        ({"X-Acme-Signature": "00", "X-Acme-Time": "-1"}, "malformed_timestamp"),
        ({"X-Acme-Signature": "00", "X-Acme-Time": "1000"}, "timestamp_out_of_tolerance"),
        ({"X-Acme-Signature": "zz", "X-Acme-Time": str(int(time.time()))}, "invalid_signature"),
    ],
    ids=["no-signature", "no-timestamp", "exponent", "negative", "1970", "not-hex"],
)
def test_each_hmac_failure_has_its_reason(headers: dict[str, str], reason: str) -> None:
    declaration = declared(auth={"signed_content": "{timestamp}.{body}", "timestamp_header": "X-Acme-Time"})
    with pytest.raises(AuthenticationFailed) as raised:
        verify_request(declaration.auth, (b"secret",), request(headers))
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
    unknown = CliRunner().invoke(main, ["mappings", "preview", "zoho", str(payload)], env=env)
    assert unknown.exit_code == 2
    assert "unknown source 'zoho': expected one of hubspot, salesforce, pipedrive, acme" in unknown.output


def test_the_documented_declaration_is_valid_as_written() -> None:
    """docs/crm-sources.md's example of the configurable source loads as it stands."""
    docs = (Path(__file__).parent.parent / "docs" / "crm-sources.md").read_text()
    section = docs[docs.index("## A CRM crmsync does not know: the configurable source") :]
    example = section[
        section.index("```toml\n") + len("```toml\n") : section.index("\n```", section.index("```toml"))
    ]
    sources = mappings_from_document(tomllib.loads(example)).sources
    assert sorted(sources) == ["acme", "close"]
    assert sources["acme"].types["privacy.requested"] == "erasure"
