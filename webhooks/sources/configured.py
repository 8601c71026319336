"""A CRM declared in the mappings file (`[sources.NAME]`, webhooks/declarations.py), served at
`POST /webhooks/NAME` with the guarantees of the built-in sources: authenticate (401, nothing
recorded), read every item into one batch (an item that cannot be mapped is rejected alone), order by
the declared version, de-duplicate by the declared delivery id.

Authentication, as declared: an HMAC of a signed-content template (`{timestamp}`, `{body}`, `{url}`,
`{method}`) in a header, with an optional prefix and a timestamp header within a tolerance; HTTP Basic;
a bearer token; or a token in the query. Every secret of the rotation is compared, in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from crmsync.core.events import CUSTOMER_DELETED
from crmsync.core.parsing import ascii_int, from_unix_milliseconds, utc_isoformat

from ..declarations import DELETE, ERASURE_ACTION, IGNORE, AuthDeclaration, SourceDeclaration
from .items import (
    MAX_IDENTIFIER_CHARS,
    AuthenticationFailed,
    IgnoredItem,
    InboundRequest,
    InvalidItem,
    MappedEvent,
    SourceBatch,
    UnparseableBody,
    check_item_count,
    item_isolation,
    json_body,
    record_event,
    validated_event,
)
from .kind import JsonReplies
from .mapping_file import MappingError
from .record_mapping import ERASURE, SYNC, RecordMapping, field_value

__all__ = ["KIND", "DeclaredKind", "ConfiguredSource", "secrets_from_env", "read_items"]

# A timestamp header is unix seconds or milliseconds in plain digits: at most 16 of them.
_TIMESTAMP_DIGITS = 16
HEADER_DELIVERY_ID = "header:"


class ConfiguredSource(JsonReplies):
    """Verifies and maps the requests of one declared CRM (the registry's `declared` kind: one source
    per [sources.NAME], with no code of its own)."""

    def __init__(self, declaration: SourceDeclaration, secrets: tuple[bytes, ...]) -> None:
        self.name = declaration.name
        self._declaration = declaration
        self._secrets = secrets

    def authenticate(self, request: InboundRequest) -> None:
        verify_request(self._declaration.auth, self._secrets, request)

    def read(self, body: bytes) -> SourceBatch:
        return read_items(body, self._declaration)

    def read_request(self, request: InboundRequest) -> SourceBatch:
        """The batch of an authenticated request (a delivery id may be one of its headers)."""
        return read_items(request.body, self._declaration, request)

    def receive(self, request: InboundRequest) -> SourceBatch:
        self.authenticate(request)
        return self.read_request(request)


class DeclaredKind:
    """The registry's *declared* kind: one source per [sources.NAME] of the mappings file, each with
    the secrets of the variable its `auth.secret_env` names."""

    name = "declared"
    title = "declared in the mappings file"
    # The mappings file's table of declarations.
    table = "sources"

    def build_all(
        self, declarations: Mapping[str, SourceDeclaration], environ: Mapping[str, str]
    ) -> dict[str, ConfiguredSource]:
        """A source per declaration, by name; MappingError names a secret that is unset or malformed."""
        return {name: ConfiguredSource(declared, secrets_from_env(declared, environ))
                for name, declared in declarations.items()}  # fmt: skip

    def read_payload(self, body: bytes, declaration: SourceDeclaration) -> SourceBatch:
        """A saved body mapped without authenticating it (`crmsync mappings preview NAME`)."""
        return read_items(body, declaration)


KIND = DeclaredKind()


# --- secrets ----------------------------------------------------------------------------------------


def secrets_from_env(declaration: SourceDeclaration, environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The secrets of the variable `auth.secret_env` names, comma-separated (several: a rotation);
    MappingError names the variable and what is wrong (never a value)."""
    auth = declaration.auth
    where = f"{auth.secret_env} (named by sources.{declaration.name}.auth.secret_env)"
    values = [part.strip() for part in environ.get(auth.secret_env, "").split(",") if part.strip()]
    if not values:
        raise MappingError(f"{where}: missing; set it to the secret, or several separated by ','")
    if auth.type == "basic" and not all(":" in value for value in values):
        raise MappingError(f"{where}: each credential is user:password")
    if auth.type != "hmac" or auth.key == "text":
        return tuple(value.encode() for value in values)
    try:
        if auth.key == "hex":
            return tuple(bytes.fromhex(value) for value in values)
        return tuple(base64.b64decode(value, validate=True) for value in values)
    except (ValueError, binascii.Error):
        raise MappingError(f'{where}: a secret is not {auth.key} (auth.key = "{auth.key}")') from None


# --- authentication ---------------------------------------------------------------------------------


def verify_request(auth: AuthDeclaration, secrets: tuple[bytes, ...], request: InboundRequest) -> None:
    """AuthenticationFailed unless `request` carries a valid credential for one of `secrets`."""
    if auth.type == "hmac":
        _verify_hmac(auth, secrets, request)
    elif auth.type == "basic":
        _verify_basic(request.header(auth.header), secrets)
    elif auth.type == "bearer":
        given = request.header(auth.header)
        if auth.header.lower() == "authorization":
            scheme, _, given = given.partition(" ")
            given = given.strip() if scheme.lower() == "bearer" else ""
        _verify_token(given, secrets, "bearer token")
    else:
        _verify_token(request.query.get(auth.parameter, ""), secrets, f"query parameter {auth.parameter}")


def _verify_token(given: str, secrets: tuple[bytes, ...], what: str) -> None:
    if not given:
        raise AuthenticationFailed("missing_credentials", f"the {what} is required")
    # Every secret is compared, so the time taken does not tell which one came close.
    matches = [hmac.compare_digest(given.encode(), secret) for secret in secrets]
    if not any(matches):
        raise AuthenticationFailed("invalid_credentials", f"the {what} does not match")


def _verify_basic(authorization: str, secrets: tuple[bytes, ...]) -> None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise AuthenticationFailed("missing_credentials", "HTTP Basic credentials are required")
    try:
        credentials = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("malformed_credentials", "the Basic credentials are not base64") from None
    if b":" not in credentials:
        raise AuthenticationFailed("malformed_credentials", "the Basic credentials hold no ':'")
    matches = [hmac.compare_digest(credentials, secret) for secret in secrets]
    if not any(matches):
        raise AuthenticationFailed("invalid_credentials", "the Basic credentials do not match")


def _verify_hmac(auth: AuthDeclaration, secrets: tuple[bytes, ...], request: InboundRequest) -> None:
    header = request.header(auth.header)
    if not header:
        raise AuthenticationFailed("missing_header", f"missing required header {auth.header}")
    timestamp = _fresh_timestamp(auth, request) if auth.timestamp_header else ""
    if not header.startswith(auth.prefix):
        raise AuthenticationFailed("invalid_signature", f"{auth.header} does not start with {auth.prefix!r}")
    given = _decoded_signature(header[len(auth.prefix) :].strip(), auth)
    content = signed_content(auth.signed_content, request, timestamp)
    digest = getattr(hashlib, auth.algorithm)
    matches = [hmac.compare_digest(hmac.new(key, content, digest).digest(), given) for key in secrets]
    if not any(matches):
        raise AuthenticationFailed("invalid_signature", f"{auth.header} does not match the body")


def _fresh_timestamp(auth: AuthDeclaration, request: InboundRequest) -> str:
    text = request.header(auth.timestamp_header)
    if not text:
        raise AuthenticationFailed("missing_header", f"missing required header {auth.timestamp_header}")
    value = ascii_int(text, _TIMESTAMP_DIGITS)
    if value is None:
        raise AuthenticationFailed("malformed_timestamp", f"{auth.timestamp_header} must be plain digits")
    seconds = value / 1000 if auth.timestamp_unit == "ms" else value
    if abs(time.time() - seconds) > auth.tolerance_seconds:
        raise AuthenticationFailed(
            "timestamp_out_of_tolerance",
            f"{auth.timestamp_header} is more than {auth.tolerance_seconds} s from now",
        )
    return text


def _decoded_signature(text: str, auth: AuthDeclaration) -> bytes:
    try:
        if auth.encoding == "hex":
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise AuthenticationFailed("invalid_signature", f"{auth.header} is not {auth.encoding}") from None


def signed_content(template: str, request: InboundRequest, timestamp: str) -> bytes:
    """The bytes the CRM signs: `template` with its placeholders filled, the body as received."""
    values = {
        "{body}": request.body,
        "{timestamp}": timestamp.encode(),
        "{url}": f"{request.scheme}://{request.host}{request.target}".encode(),
        "{method}": request.method.encode(),
    }
    content, rest = b"", template
    while rest:
        start = rest.find("{")
        placeholder = next((p for p in values if rest.startswith(p, start)), None) if start >= 0 else None
        if placeholder is None:
            return content + rest.encode()
        content += rest[:start].encode() + values[placeholder]
        rest = rest[start + len(placeholder) :]
    return content


# --- reading ----------------------------------------------------------------------------------------


def read_items(
    body: bytes, declaration: SourceDeclaration, request: InboundRequest | None = None
) -> SourceBatch:
    """Map every item of a body to an event, an ignored or a rejected item."""
    items = declaration.items
    payload = json_body(body)
    found, value = field_value(payload, items.path) if items.path else (True, payload)
    if not found or not isinstance(value, list | dict):
        where = items.path or "the body"
        raise UnparseableBody(f"{where} is neither a list of items nor one item ({declaration.name})")
    listed = value if isinstance(value, list) else [value]
    check_item_count(len(listed))
    batch = SourceBatch(declaration.name)
    for index, item in enumerate(listed):
        with item_isolation(batch, partial(_identifiers, item, index, declaration)):
            _read_item(batch, index, item, declaration, request)
    return batch


def _read_item(
    batch: SourceBatch, index: int, item: Any, declaration: SourceDeclaration, request: InboundRequest | None
) -> None:
    if not isinstance(item, dict):
        raise InvalidItem("the item is not a JSON object")
    item_type = _item_type(item, declaration)
    action = declaration.types.get(item_type, IGNORE)
    if action == IGNORE:
        batch.ignored.append(IgnoredItem(item_type[:MAX_IDENTIFIER_CHARS]))
        return
    spec = declaration.items
    timestamp = _version(item, spec.version, spec.version_format)
    external_id = declaration.external_id_prefix + _text(item, spec.id, "missing external id field")
    if action == DELETE:
        event = validated_event(CUSTOMER_DELETED, timestamp, {"external_id": external_id})
    else:
        mapping = RecordMapping(
            declaration.name,
            external_id=spec.id,
            fields=declaration.fields,
            action=ERASURE if action == ERASURE_ACTION else SYNC,
            purchase_ids=spec.purchase_ids,
        )
        event = record_event(mapping, item, external_id, timestamp)
    batch.events.append(MappedEvent(_delivery_id(item, index, declaration, request), event))


def _item_type(item: dict[str, Any], declaration: SourceDeclaration) -> str:
    parts = []
    for path in declaration.items.type:
        found, value = field_value(item, path)
        if not found or value is None or isinstance(value, bool | dict | list):
            raise InvalidItem(f"missing type field {path}")
        parts.append(str(value))
    return ".".join(parts)


def _text(item: dict[str, Any], path: str, problem: str) -> str:
    found, value = field_value(item, path)
    if not found or value is None or isinstance(value, bool | dict | list) or str(value).strip() == "":
        raise InvalidItem(f"{problem} {path}")
    return str(value).strip()


def _version(item: dict[str, Any], path: str, version_format: str) -> str:
    """The item's version as a UTC ISO 8601 time (the queue orders a record's events by it)."""
    found, value = field_value(item, path)
    text = value.strip() if isinstance(value, str) else str(value) if type(value) is int else ""
    try:
        if version_format == "iso8601":
            moment = datetime.fromisoformat(text)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        else:
            number = ascii_int(text, _TIMESTAMP_DIGITS)
            if number is None:
                raise ValueError("not digits")
            moment = from_unix_milliseconds(number * 1000 if version_format == "unix_s" else number)
        return utc_isoformat(moment)
    except ValueError:
        raise InvalidItem(f"missing or invalid version field {path} ({version_format})") from None


def _delivery_id(
    item: dict[str, Any], index: int, declaration: SourceDeclaration, request: InboundRequest | None
) -> str:
    """What de-duplicates a redelivery: the declared field or header, else a hash of the item (the
    same body redelivered has the same hash; a new change of the record has a new version)."""
    source, declared = declaration.name, declaration.items.delivery_id
    if declared.startswith(HEADER_DELIVERY_ID):
        header = declared[len(HEADER_DELIVERY_ID) :]
        value = request.header(header) if request is not None else ""
        if not value:
            raise InvalidItem(f"missing delivery id header {header}")
        return f"{source}:{value}:{index}"
    if declared:
        return f"{source}:{_text(item, declared, 'missing delivery id field')}"
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"{source}:sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _identifiers(item: Any, index: int, declaration: SourceDeclaration) -> dict[str, str]:
    """Ids of a rejected item: its position, type and record id (never a value of its fields)."""
    ids = {"index": str(index)}
    if not isinstance(item, dict):
        return ids
    paths = {"type": declaration.items.type[0], "id": declaration.items.id}
    if declaration.items.delivery_id and not declaration.items.delivery_id.startswith(HEADER_DELIVERY_ID):
        paths["delivery_id"] = declaration.items.delivery_id
    for key, path in paths.items():
        found, value = field_value(item, path)
        if found and value is not None and not isinstance(value, dict | list):
            ids[key] = str(value)
    return ids
