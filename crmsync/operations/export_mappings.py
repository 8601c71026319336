"""Which mapping reads a source's export: `standard`, or a CRM's through the mapping engine.

The CRM sources reuse the mappings their webhooks use (`webhooks/mappings.py`: per-source defaults,
or the CRMSYNC_MAPPINGS file), so an export and a webhook of the same record map to the same
customer — same external id (prefix included), same fields, same version field:

- salesforce: `--object` is an sObject type of the mapping (default `Account`): its `external_id`
  (`Id`, a 15-character id taken in its 18-character form, as the webhooks do), `version`
  (`LastModifiedDate`) and `fields`; a record whose `deleted` checkbox (`IsDeleted`) is true is
  left out, as if it were not in the export;
- pipedrive: an entity of the mapping (default `organization`): its `external_id` (`id`) and
  `fields`; no version field (so `--as-of`);
- hubspot: the mapping's object (`company`): the id in `hs_object_id`, else `id`, else `Record ID`;
  the version in `hs_lastmodifieddate`; the `fields` are property names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crmsync.core.salesforce_ids import salesforce_id_18
from webhooks.mappings import MappingError, mappings_from_env
from webhooks.sources import hubspot, salesforce
from webhooks.sources.hubspot import HubSpotMapping, same_object
from webhooks.sources.record_mapping import SYNC, RecordMapping
from webhooks.sources.registry import NAMES, STANDARD, kind_named

from .records import (
    CustomerRecord,
    ExportMapping,
    RecordSkipped,
    StandardMapping,
    check_columns,
    customer_value,
    external_id_of,
    parse_time,
)

__all__ = ["SOURCES", "MappingUnavailable", "CrmExportMapping", "mapping_for"]

# Every source of the registry: crmsync's own contract reads the standard export format.
SOURCES = NAMES
HUBSPOT_ID_KEYS = ("hs_object_id", "id", "Record ID")
HUBSPOT_VERSION_KEY = "hs_lastmodifieddate"


class MappingUnavailable(ValueError):
    """No mapping reads this source's exports of this object type (or the mappings file is invalid)."""


@dataclass(frozen=True)
class CrmExportMapping:
    """A CRM's export record → customer record, after that CRM's webhook mapping."""

    source: str
    external_id_keys: tuple[str, ...]
    fields_of: Callable[[Mapping[str, Any]], dict[str, Any]]
    external_id_prefix: str = ""
    version_key: str = ""
    deleted_key: str = ""
    # Salesforce ids arrive in both forms (15 and 18 characters): keep the one the webhooks use.
    salesforce_ids: bool = False

    def customer_record(self, line: int, record: Mapping[str, Any]) -> CustomerRecord:
        key = next(
            (k for k in self.external_id_keys if record.get(k) not in (None, "")), self.external_id_keys[0]
        )
        if self.deleted_key and str(record.get(self.deleted_key) or "").strip().lower() == "true":
            # Deleted in the CRM: no external id, so reconcile sees it as missing from the export.
            raise RecordSkipped(f"deleted in the CRM ({self.deleted_key!r} is true)")
        value = record.get(key)
        if self.salesforce_ids and isinstance(value, str):
            value = salesforce_id_18(value.strip())
        external_id = external_id_of(value, key, self.external_id_prefix)
        fields = {
            name: customer_value(name, value, name, external_id)
            for name, value in self.fields_of(record).items()
        }
        version = None
        if self.version_key and record.get(self.version_key) not in (None, ""):
            version = parse_time(record[self.version_key], self.version_key, external_id)
        return CustomerRecord(line, external_id, fields, version)

    def check_columns(self, columns: Sequence[str]) -> None:
        # A CRM's export carries many columns crmsync does not sync: only its id column must be there.
        expected = [*self.external_id_keys, *filter(None, (self.version_key, self.deleted_key))]
        check_columns(self.source, columns, expected, self.external_id_keys, unknown_allowed=True)


def mapping_for(
    source: str, object_type: str = "", environ: Mapping[str, str] | None = None
) -> ExportMapping:
    """The mapping of `source`'s exports (of `object_type` where the source has several)."""
    if source == STANDARD:
        if object_type:
            raise MappingUnavailable("the standard source has no object types: leave --object out")
        return StandardMapping()
    try:
        kind = kind_named(source)
        mapping = mappings_from_env(environ).of(source)
    except (ValueError, MappingError) as exc:
        raise MappingUnavailable(str(exc)) from None
    if isinstance(mapping, HubSpotMapping):
        return _hubspot(mapping, object_type)
    # A record-style source: its first default record type unless --object names another.
    return _record_type(source, mapping, object_type or next(iter(kind.default_mapping)))


def _hubspot(mapping: HubSpotMapping, object_type: str) -> CrmExportMapping:
    if object_type and not same_object(object_type, mapping.object):
        raise MappingUnavailable(f"the HubSpot mapping syncs {mapping.object!r} records, not {object_type!r}")

    def fields_of(record: Mapping[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for prop in dict.fromkeys(mapping.fields.values()):
            if prop in record:
                found.update(mapping.customer_data(prop, record[prop]))
        return found

    return CrmExportMapping(
        hubspot.NAME, HUBSPOT_ID_KEYS, fields_of, mapping.external_id_prefix, version_key=HUBSPOT_VERSION_KEY
    )


def _record_type(source: str, table: Mapping[str, RecordMapping], object_type: str) -> CrmExportMapping:
    mapping = table.get(object_type)
    if mapping is None:
        known = ", ".join(name for name, m in table.items() if m.action == SYNC) or "none"
        raise MappingUnavailable(
            f"no {source} mapping for {object_type!r} (mapped: {known}); see CRMSYNC_MAPPINGS"
        )
    if mapping.action != SYNC:
        raise MappingUnavailable(f"{source} {object_type!r} records are erasure requests, not customers")
    return CrmExportMapping(
        source,
        (mapping.external_id,),
        mapping.customer_data,
        mapping.external_id_prefix,
        version_key=mapping.version,
        deleted_key=mapping.deleted,
        salesforce_ids=source == salesforce.NAME,
    )
