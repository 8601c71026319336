"""Field mappings: which CRM property feeds which customer field, per source.

Each source of the registry (webhooks/sources/registry.py) owns its table: its schema, its parser and
its defaults live in its module; this module only reads the file and hands each table to its source.
Each source has defaults that work without any file; `CRMSYNC_MAPPINGS` names a TOML file whose
tables replace a source's defaults (a source the file does not name keeps its defaults). The file is
validated once, at start-up, by the sources' marshmallow schemas: every mistake is one line naming the
key, e.g. `hubspot.fields.labels: HubSpot sends one property per event: name one property, not a list`.

```toml
[hubspot]
external_id_prefix = "hs-"        # optional, on every source; prefixes every external id it maps
object = "company"                # optional: the HubSpot object whose events are mapped, by name
                                  # or type id ("0-2" is company; a custom object "2-12345")
[hubspot.fields]                  # customer field = CRM property
name = "name"
labels = "industry"               # a value is split on ";" (HubSpot and Salesforce multi-selects)

[salesforce.Account]              # one table per sObject type
external_id = "Id"
version = "LastModifiedDate"      # default; the CRM's clock for ordering
deleted = "IsDeleted"             # default; a true checkbox deletes the customer
[salesforce.Account.fields]
name = "Name"
labels = ["Industry", "Type"]     # several fields: each non-empty value is one label

[salesforce.Privacy_Request__c]   # a GDPR erasure request
action = "erasure"
external_id = "Account_External_Id__c"
purchase_ids = "Purchase_Ids__c"  # ids separated by "," or ";"

[pipedrive.organization]          # one table per entity; external_id defaults to "id"
[pipedrive.organization.fields]
name = "name"                     # a dotted path reaches nested values: "custom_fields.<key>"
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .declarations import SourceDeclaration, load_declarations
from .sources.mapping_file import MappingError
from .sources.registry import DECLARED, RESERVED_NAMES, SOURCES

__all__ = [
    "MappingError",
    "Mappings",
    "DEFAULT_MAPPINGS",
    "load_mappings",
    "mappings_from_document",
    "mappings_from_env",
]

# The file's tables: each mapped source's, and [sources.NAME] for the declared ones.
_MAPPED = tuple(kind for kind in SOURCES if kind.default_mapping is not None)
_TABLES = (*(kind.name for kind in _MAPPED), DECLARED.table)


@dataclass(frozen=True)
class Mappings:
    """The mappings in force for every source."""

    # Each mapped source's mapping by its name: its table in the file, else its defaults.
    by_source: Mapping[str, Any]
    path: str = ""
    # CRMs declared under [sources.NAME] (webhooks/declarations.py), served at /webhooks/NAME.
    sources: Mapping[str, SourceDeclaration] = field(default_factory=dict)

    def of(self, source: str) -> Any:
        """Source `source`'s mapping (None for crmsync's own contract, which maps nothing)."""
        return self.by_source.get(source)

    def describe(self) -> dict[str, Any]:
        """The mappings as plain data, for `crmsync mappings show`."""
        return {
            "file": self.path or "(none: defaults)",
            **{kind.name: kind.describe_mapping(self.of(kind.name)) for kind in _MAPPED},
            DECLARED.table: {name: asdict(declaration) for name, declaration in self.sources.items()},
        }


DEFAULT_MAPPINGS = Mappings({kind.name: kind.default_mapping for kind in _MAPPED})


def load_mappings(path: str) -> Mappings:
    """Read and validate the mappings file at `path`; MappingError lists one line per bad key."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise MappingError(f"CRMSYNC_MAPPINGS: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"CRMSYNC_MAPPINGS: {path} is not valid TOML: {exc}") from exc
    return mappings_from_document(document, path)


def mappings_from_document(document: Mapping[str, Any], path: str = "") -> Mappings:
    """Validate a decoded TOML document; sources it leaves out keep their defaults."""
    errors: list[str] = [f"{key}: unknown source (expected one of {', '.join(_TABLES)})"
                         for key in document if key not in _TABLES]  # fmt: skip
    by_source = {
        kind.name: kind.load_mapping(document[kind.name], errors)
        if kind.name in document
        else kind.default_mapping
        for kind in _MAPPED
    }
    table = DECLARED.table
    declared = load_declarations(document[table], errors, RESERVED_NAMES) if table in document else {}
    if errors:
        where = f" ({path})" if path else ""
        raise MappingError("\n".join(f"CRMSYNC_MAPPINGS{where}: {line}" for line in errors))
    return Mappings(by_source, path=path, sources=declared)


def mappings_from_env(environ: Mapping[str, str] | None = None) -> Mappings:
    """The mappings in force: the file named by CRMSYNC_MAPPINGS, else the defaults."""
    env = os.environ if environ is None else environ
    path = env.get("CRMSYNC_MAPPINGS", "").strip()
    return load_mappings(path) if path else DEFAULT_MAPPINGS
