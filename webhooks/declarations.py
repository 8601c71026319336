"""Configured sources: a CRM crmsync has no module for, declared in the mappings file (no code).

`[sources.NAME]` in `CRMSYNC_MAPPINGS` declares how a CRM authenticates and where the items, their
id, type, version, delivery id and fields are in its JSON; crmsync then serves `POST /webhooks/NAME`
(webhooks/sources/configured.py). `preset = "close"` starts from a shipped declaration
(webhooks/presets/*.toml) whose keys the table overrides. The full key reference is in
docs/crm-sources.md ("A CRM crmsync does not know"). Secrets are never in the file: `auth.secret_env`
names the environment variable that holds them (read when the web app is built).

This module only validates the declaration, once at start-up: every mistake is one line naming the
key, e.g. `sources.close.auth.encoding: must be one of: hex, base64`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

__all__ = [
    "AuthDeclaration",
    "ItemsDeclaration",
    "SourceDeclaration",
    "load_declarations",
    "PRESETS",
    "ACTIONS",
    "UPDATE",
    "DELETE",
    "ERASURE_ACTION",
    "IGNORE",
]

UPDATE, DELETE, ERASURE_ACTION, IGNORE = "customer.updated", "customer.deleted", "erasure", "ignored"
ACTIONS = (UPDATE, DELETE, ERASURE_ACTION, IGNORE)
AUTH_TYPES = ("hmac", "basic", "bearer", "query_token")
VERSION_FORMATS = ("iso8601", "unix_s", "unix_ms")
PRESETS = ("close", "twenty")
# The names crmsync already serves under /webhooks/ (a configured source cannot take one of them).
# What a signed-content template may hold besides literal text.
PLACEHOLDERS = ("{body}", "{timestamp}", "{url}", "{method}")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class AuthDeclaration:
    """How a request proves it comes from the CRM; `secret_env` names the variable with the secrets."""

    type: str
    secret_env: str
    header: str = ""
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str = ""
    key: str = "text"
    signed_content: str = "{body}"
    timestamp_header: str = ""
    timestamp_unit: str = "s"
    tolerance_seconds: int = 300
    parameter: str = "token"


@dataclass(frozen=True)
class ItemsDeclaration:
    """Where things are in the body: dotted paths (`""` for `path`: the body itself)."""

    id: str
    type: tuple[str, ...]
    version: str
    path: str = ""
    version_format: str = "iso8601"
    delivery_id: str = ""
    purchase_ids: str = ""


@dataclass(frozen=True)
class SourceDeclaration:
    """One `[sources.NAME]` table, validated, its preset merged in."""

    name: str
    auth: AuthDeclaration
    items: ItemsDeclaration
    types: Mapping[str, str]
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    external_id_prefix: str = ""
    preset: str = ""


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _Paths(fields.Field):
    """One dotted path, or a list of them."""

    default_error_messages = {"invalid": "must be a dotted path or a list of dotted paths"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        paths = [value] if isinstance(value, str) else value
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
            raise self.make_error("invalid")
        return tuple(paths)


class _AuthSchema(_Strict):
    type = fields.String(required=True, validate=validate.OneOf(AUTH_TYPES))
    secret_env = fields.String(required=True, validate=validate.Regexp(r"^[A-Z_][A-Z0-9_]*$",
                               error="must name an environment variable (A-Z, 0-9, _)"))  # fmt: skip
    header = fields.String(validate=validate.Length(min=1))
    algorithm = fields.String(load_default="sha256", validate=validate.OneOf(("sha256", "sha1")))
    encoding = fields.String(load_default="hex", validate=validate.OneOf(("hex", "base64")))
    prefix = fields.String(load_default="")
    key = fields.String(load_default="text", validate=validate.OneOf(("text", "hex", "base64")))
    signed_content = fields.String(load_default="{body}", validate=validate.Length(min=1))
    timestamp_header = fields.String(load_default="")
    timestamp_unit = fields.String(load_default="s", validate=validate.OneOf(("s", "ms")))
    tolerance_seconds = fields.Integer(load_default=300, strict=True, validate=validate.Range(min=1))
    parameter = fields.String(load_default="token", validate=validate.Length(min=1))

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] != "hmac":
            return
        if "header" not in data:
            raise ValidationError(
                'required when type = "hmac": the header that carries the signature', "header"
            )
        template = data["signed_content"]
        leftover = template
        for placeholder in PLACEHOLDERS:
            leftover = leftover.replace(placeholder, "")
        if "{" in leftover or "}" in leftover:
            raise ValidationError(f"may only use {', '.join(PLACEHOLDERS)}", "signed_content")
        if "{body}" not in template:
            raise ValidationError("must sign the body: include {body}", "signed_content")
        if ("{timestamp}" in template) != bool(data["timestamp_header"]):
            raise ValidationError("{timestamp} in signed_content and timestamp_header go together",
                                  "timestamp_header")  # fmt: skip


class _ItemsSchema(_Strict):
    path = fields.String(load_default="")
    id = fields.String(required=True, validate=validate.Length(min=1))
    type = _Paths(required=True)
    version = fields.String(required=True, validate=validate.Length(min=1))
    version_format = fields.String(load_default="iso8601", validate=validate.OneOf(VERSION_FORMATS))
    delivery_id = fields.String(load_default="")
    purchase_ids = fields.String(load_default="")


class _FieldsSchema(_Strict):
    name = fields.String(validate=validate.Length(min=1))
    description = fields.String(validate=validate.Length(min=1))
    labels = _Paths()


class _SourceSchema(_Strict):
    preset = fields.String(validate=validate.OneOf(PRESETS))
    external_id_prefix = fields.String(load_default="")
    auth = fields.Nested(_AuthSchema, required=True)
    items = fields.Nested(_ItemsSchema, required=True)
    types = fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                        values=fields.String(validate=validate.OneOf(ACTIONS)), required=True,
                        validate=validate.Length(min=1))  # fmt: skip
    customer_fields = fields.Nested(_FieldsSchema, data_key="fields", load_default=dict)

    @validates_schema
    def _actions_need(self, data: dict[str, Any], **kwargs: Any) -> None:
        actions = set(data["types"].values())
        if ERASURE_ACTION in actions and not data["items"]["purchase_ids"]:
            raise ValidationError('required when a type maps to "erasure"', "items")
        if UPDATE in actions and not data["customer_fields"]:
            raise ValidationError(f'required when a type maps to "{UPDATE}"', "fields")


_SOURCE = _SourceSchema()
_HMAC_ONLY = (
    "algorithm",
    "encoding",
    "prefix",
    "key",
    "signed_content",
    "timestamp_header",
    "timestamp_unit",
)


def load_declarations(
    table: Any, errors: list[str], reserved: Collection[str]
) -> dict[str, SourceDeclaration]:
    """Validate the `[sources]` table: each mistake appends one line to `errors`, naming its key.
    `reserved` are the names a declared source may not take (the registry's sources' paths)."""
    if not isinstance(table, dict):
        errors.append("sources: must be a table of sources, [sources.NAME]")
        return {}
    declarations = {}
    for name, entry in table.items():
        where = f"sources.{name}"
        if not _NAME.match(name) or name in reserved:
            errors.append(f"{where}: a source name is 1-32 of a-z, 0-9, _ and -, starts with a letter, "
                          f"and is none of {', '.join(reserved)}")  # fmt: skip
            continue
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be a table")
            continue
        declaration = _declaration(name, entry, where, errors)
        if declaration is not None:
            declarations[name] = declaration
    return declarations


def _declaration(name: str, entry: dict[str, Any], where: str, errors: list[str]) -> SourceDeclaration | None:
    preset = entry.get("preset")
    merged = _merged(_preset(preset), entry) if isinstance(preset, str) and preset in PRESETS else entry
    auth_table = merged.get("auth")
    unused = []
    if isinstance(auth_table, dict) and auth_table.get("type") != "hmac":
        unused = [
            f'{where}.auth.{key}: only used when type = "hmac"' for key in _HMAC_ONLY if key in auth_table
        ]
    try:
        loaded = _SOURCE.load(merged)
    except ValidationError as err:
        errors.extend([*unused, *_lines(err.messages, where)])
        return None
    if unused:
        errors.extend(unused)
        return None
    auth = loaded["auth"]
    return SourceDeclaration(
        name=name,
        auth=AuthDeclaration(**{"header": _default_header(auth["type"]), **auth}),
        items=ItemsDeclaration(**loaded["items"]),
        types=dict(loaded["types"]),
        fields={
            key: (value,) if isinstance(value, str) else value
            for key, value in loaded["customer_fields"].items()
        },  # fmt: skip
        external_id_prefix=loaded["external_id_prefix"],
        preset=loaded.get("preset", ""),
    )


def _default_header(auth_type: str) -> str:
    return "Authorization" if auth_type in ("basic", "bearer") else ""


def _preset(name: str) -> dict[str, Any]:
    """A shipped declaration (webhooks/presets/NAME.toml): its one `[sources.NAME]` table."""
    text = resources.files("webhooks").joinpath("presets", f"{name}.toml").read_text(encoding="utf-8")
    return dict(tomllib.loads(text)["sources"][name])


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, table by table (a key the operator sets replaces the preset's). An
    `auth` table of another `type` replaces the preset's whole: its HMAC keys would not apply."""
    merged = dict(base)
    for key, value in override.items():
        if (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and not _other_auth(key, merged[key], value)
        ):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _other_auth(key: str, preset: dict[str, Any], table: dict[str, Any]) -> bool:
    return key == "auth" and table.get("type", preset.get("type")) != preset.get("type")


def _lines(messages: Any, path: str) -> list[str]:
    if isinstance(messages, dict):
        return [line for key, value in messages.items()
                for line in _lines(value, path if key == "_schema" else f"{path}.{key}")]  # fmt: skip
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{path}: {' '.join(_READABLE.get(str(m), str(m)) for m in messages)}"]
    return [f"{path}: {messages}"]


_READABLE = {"Unknown field.": "unknown key", "Missing data for required field.": "missing (required)"}
