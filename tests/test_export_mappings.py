"""CRM exports read through the same mappings as the CRMs' webhooks (defaults, or CRMSYNC_MAPPINGS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crmsync.operations.export_mappings import MappingUnavailable, mapping_for
from crmsync.operations.records import CustomerRecord, RecordSkipped
from tests.support import SALESFORCE_MAPPINGS

# The shared Salesforce mappings, with a prefix on each source's ids.
MAPPINGS_FILE = (
    """
[hubspot]
external_id_prefix = "hs-"
[hubspot.fields]
name = "name"
labels = "industry"

[salesforce]
external_id_prefix = "sf-"
"""
    + SALESFORCE_MAPPINGS
)


def record(
    source: str, raw: dict[str, Any], object_type: str = "", env: dict[str, str] | None = None
) -> CustomerRecord:
    return mapping_for(source, object_type, env or {}).customer_record(2, raw)


def test_salesforce_data_loader_row_maps_like_its_outbound_message() -> None:
    row = {
        "Id": "0015g00000QmNoPAAV",
        "Name": "Orbital Freight",
        "Description": "Cargo",
        "IsDeleted": "false",
        "LastModifiedDate": "2026-11-20T09:30:00.000+0000",
        "BillingCity": "Valletta",
    }
    assert record("salesforce", row) == CustomerRecord(
        2,
        "0015g00000QmNoPAAV",
        {"name": "Orbital Freight", "description": "Cargo"},
        "2026-11-20T09:30:00.000000+00:00",
    )


def test_salesforce_deleted_record_is_left_out_as_if_missing_from_the_export() -> None:
    with pytest.raises(RecordSkipped, match="deleted in the CRM") as raised:
        record("salesforce", {"Id": "001", "Name": "Gone", "IsDeleted": "true", "LastModifiedDate": ""})
    assert raised.value.external_id == ""


def test_pipedrive_organization_uses_the_entity_mapping_without_a_version() -> None:
    assert record("pipedrive", {"id": 42, "name": "Mars Missions", "owner_id": 7}) == CustomerRecord(
        2, "42", {"name": "Mars Missions"}
    )


def test_hubspot_export_takes_the_object_id_and_the_mapped_properties() -> None:
    row = {
        "hs_object_id": "5150",
        "name": "Orbital",
        "description": "",
        "hs_lastmodifieddate": "2026-11-20T09:30:00Z",
    }
    assert record("hubspot", row) == CustomerRecord(
        2, "5150", {"name": "Orbital", "description": ""}, "2026-11-20T09:30:00.000000+00:00"
    )
    assert record("hubspot", {"Record ID": "77", "name": "From the UI export"}).external_id == "77"


def test_the_mappings_file_applies_to_exports_too(tmp_path: Path) -> None:
    path = tmp_path / "mappings.toml"
    path.write_text(MAPPINGS_FILE)
    env = {"CRMSYNC_MAPPINGS": str(path)}
    account = {
        "Id": "001",
        "Name": "Acme",
        "Industry": "Energy",
        "Type": "Partner;VIP",
        "LastModifiedDate": "",
    }
    assert record("salesforce", account, "Account", env) == CustomerRecord(
        2, "sf-001", {"name": "Acme", "labels": ["energy", "partner", "vip"]}
    )
    assert record("hubspot", {"id": 9, "name": "Globex", "industry": "Retail"}, env=env) == CustomerRecord(
        2, "hs-9", {"name": "Globex", "labels": ["retail"]}
    )


@pytest.mark.parametrize(
    ("source", "object_type", "message"),
    [
        ("standard", "Account", "the standard source has no object types"),
        ("salesforce", "Contact", r"no salesforce mapping for .Contact. \(mapped: Account\)"),
        ("hubspot", "contact", "the HubSpot mapping syncs 'company' records, not 'contact'"),
    ],
)
def test_an_object_type_without_a_mapping_is_refused(source: str, object_type: str, message: str) -> None:
    with pytest.raises(MappingUnavailable, match=message):
        mapping_for(source, object_type, {})


def test_erasure_request_records_are_not_customers(tmp_path: Path) -> None:
    path = tmp_path / "mappings.toml"
    path.write_text(MAPPINGS_FILE)
    with pytest.raises(MappingUnavailable, match="erasure requests, not customers"):
        mapping_for("salesforce", "Privacy_Request__c", {"CRMSYNC_MAPPINGS": str(path)})


def test_an_invalid_mappings_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mappings.toml"
    path.write_text("[hubspot.fields]\nlabels = ['a', 'b']\n")
    with pytest.raises(MappingUnavailable, match="hubspot.fields.labels"):
        mapping_for("hubspot", "", {"CRMSYNC_MAPPINGS": str(path)})


@pytest.mark.parametrize("object_type", ["company", "0-2"])
def test_a_hubspot_export_of_the_mapped_object_is_taken_by_its_name_or_its_type_id(object_type: str) -> None:
    assert record("hubspot", {"hs_object_id": "5150", "name": "Orbital"}, object_type).external_id == "5150"
