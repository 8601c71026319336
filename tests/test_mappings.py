"""The mapping engine: defaults, the TOML contract of issue 9, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import SALESFORCE_MAPPINGS
from webhooks.mappings import DEFAULT_MAPPINGS, MappingError, load_mappings, mappings_from_env
from webhooks.sources.record_mapping import ERASURE, labels_from, purchase_ids_from

CONTRACT = (
    """
[hubspot]
external_id_prefix = "hs-"
[hubspot.fields]
name = "name"
description = "about_us"
labels = "industry"
"""
    + SALESFORCE_MAPPINGS
    + """
[pipedrive.organization]
[pipedrive.organization.fields]
name = "name"
"""
)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mappings.toml"
    path.write_text(text)
    return str(path)


def test_defaults_map_names_and_descriptions_of_each_source() -> None:
    assert DEFAULT_MAPPINGS.of("hubspot").customer_data("name", "Orbital") == {"name": "Orbital"}
    assert DEFAULT_MAPPINGS.of("hubspot").customer_data("description", "Freight") == {
        "description": "Freight"
    }
    assert DEFAULT_MAPPINGS.of("hubspot").customer_data("industry", "x") == {}
    account = DEFAULT_MAPPINGS.of("salesforce")["Account"]
    assert (account.external_id, account.version, account.deleted) == ("Id", "LastModifiedDate", "IsDeleted")
    assert account.customer_data({"Name": "Orbital", "Description": "d", "Phone": "1"}) == {
        "name": "Orbital",
        "description": "d",
    }
    organization = DEFAULT_MAPPINGS.of("pipedrive")["organization"]
    assert organization.external_id == "id"
    assert organization.customer_data({"id": 5, "name": "Orbital", "address": "x"}) == {"name": "Orbital"}


def test_the_issue_contract_loads_as_written(tmp_path: Path) -> None:
    mappings = load_mappings(write(tmp_path, CONTRACT))
    assert mappings.of("hubspot").external_id_prefix == "hs-"
    assert mappings.of("hubspot").customer_data("industry", "Freight;Logistics") == {
        "labels": ["Freight", "Logistics"]
    }
    assert mappings.of("hubspot").customer_data("about_us", "d") == {"description": "d"}
    account = mappings.of("salesforce")["Account"]
    record = {"Name": "O", "Industry": "Transport", "Type": "", "Description": None}
    assert account.customer_data(record) == {"name": "O", "description": "", "labels": ["Transport"]}
    privacy = mappings.of("salesforce")["Privacy_Request__c"]
    assert (privacy.action, privacy.external_id, privacy.purchase_ids, privacy.version) == (
        ERASURE,
        "Account_External_Id__c",
        "Purchase_Ids__c",
        "CreatedDate",
    )
    assert privacy.deleted == ""
    assert mappings.of("pipedrive")["organization"].external_id == "id"


def test_a_source_left_out_of_the_file_keeps_its_defaults(tmp_path: Path) -> None:
    mappings = load_mappings(write(tmp_path, '[hubspot.fields]\nname = "name"\n'))
    assert mappings.of("salesforce") == DEFAULT_MAPPINGS.of("salesforce")
    assert mappings.of("pipedrive") == DEFAULT_MAPPINGS.of("pipedrive")
    # A source the file names is replaced whole: no description any more.
    assert mappings.of("hubspot").customer_data("description", "d") == {}


def test_a_source_prefix_applies_to_each_of_its_record_types(tmp_path: Path) -> None:
    text = '[pipedrive]\nexternal_id_prefix = "pd-"\n[pipedrive.organization.fields]\nname = "name"\n'
    assert load_mappings(write(tmp_path, text)).of("pipedrive")["organization"].external_id_prefix == "pd-"


@pytest.mark.parametrize("object_type", ["company", "0-2", "2-12345"])
def test_the_hubspot_object_is_a_name_or_a_type_id(tmp_path: Path, object_type: str) -> None:
    path = write(tmp_path, f'[hubspot]\nobject = "{object_type}"\n[hubspot.fields]\nname = "name"\n')
    assert load_mappings(path).of("hubspot").object == object_type


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[hubspot]\ncolour = "red"\n[hubspot.fields]\nname = "name"\n', "hubspot.colour: unknown key"),
        ('[hubspot.fields]\nphone = "phone"\n', "hubspot.fields.phone: unknown key"),
        (
            '[hubspot.fields]\nlabels = ["industry", "type"]\n',
            "hubspot.fields.labels: HubSpot sends one property per event: name one property, not a list",
        ),
        ("[hubspot]\n", "hubspot.fields: missing (required)"),
        (
            '[salesforce.Account.fields]\nname = "Name"\n',
            "salesforce.Account.external_id: missing (required)",
        ),
        (
            '[salesforce.Account]\nexternal_id = "Id"\n[salesforce.Account.fields]\nname = ["A", "B"]\n',
            "salesforce.Account.fields.name: must be one field name (only labels may list several)",
        ),
        (
            '[salesforce.P]\naction = "erasure"\nexternal_id = "X"\n',
            'salesforce.P.purchase_ids: required when action = "erasure"',
        ),
        (
            '[salesforce.P]\naction = "erase"\nexternal_id = "X"\n',
            "salesforce.P.action: Must be one of: sync, erasure.",
        ),
        ("[pipedrive.organization]\n", "pipedrive.organization.fields: required"),
        ('[no-such-crm.fields]\nname = "n"\n', "no-such-crm: unknown source"),
        ("[salesforce]\n", "salesforce: names no record type to map"),
        (
            '[hubspot]\nobject = "Company"\n[hubspot.fields]\nname = "name"\n',
            "hubspot.object: an object name (company) or type id (0-2, 2-12345)",
        ),
    ],
    ids=[
        "unknown-key",
        "unknown-customer-field",
        "hubspot-list",
        "hubspot-no-fields",
        "missing-external-id",
        "list-for-name",
        "erasure-without-purchases",
        "unknown-action",
        "pipedrive-no-fields",
        "unknown-source",
        "empty-source",
        "hubspot-object",
    ],
)
def test_each_mistake_is_one_line_naming_the_key(tmp_path: Path, text: str, line: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        load_mappings(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"CRMSYNC_MAPPINGS ({path}): {line}")


def test_every_mistake_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = '[hubspot]\ncolour = 1\n[hubspot.fields]\nname = "n"\n[salesforce.Account.fields]\n'
    with pytest.raises(MappingError) as caught:
        load_mappings(write(tmp_path, text))
    assert len(str(caught.value).splitlines()) == 3


def test_a_file_that_is_not_toml_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="CRMSYNC_MAPPINGS: .* is not valid TOML"):
        load_mappings(write(tmp_path, "[hubspot\n"))


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="CRMSYNC_MAPPINGS: cannot read"):
        load_mappings(str(tmp_path / "absent.toml"))


def test_without_the_setting_the_defaults_are_in_force(tmp_path: Path) -> None:
    assert mappings_from_env({}) is DEFAULT_MAPPINGS
    path = write(tmp_path, CONTRACT)
    assert mappings_from_env({"CRMSYNC_MAPPINGS": path}).of("hubspot").external_id_prefix == "hs-"


def test_show_describes_every_source_with_defaults_included(tmp_path: Path) -> None:
    described = load_mappings(write(tmp_path, '[hubspot.fields]\nname = "name"\n')).describe()
    assert described["hubspot"]["fields"] == {"name": "name"}
    assert described["salesforce"]["Account"]["fields"]["name"] == ["Name"]
    assert described["pipedrive"]["organization"]["external_id"] == "id"


@pytest.mark.parametrize(
    ("values", "labels"),
    [
        (["Freight;Logistics"], ["Freight", "Logistics"]),
        (["Transport", "", None], ["Transport"]),
        ([["a", "b"], " c ; "], ["a", "b", "c"]),
        ([7], ["7"]),
    ],
)
def test_labels_come_from_every_non_empty_value(values: list[object], labels: list[str]) -> None:
    assert labels_from(values) == labels


@pytest.mark.parametrize(
    ("value", "ids"),
    [("101, 102;103", [101, 102, 103]), ("104", [104]), ("", []), (None, []), ([5, "6"], [5, 6])],
)
def test_purchase_ids_are_separated_by_commas_or_semicolons(value: object, ids: list[int]) -> None:
    assert purchase_ids_from(value) == ids


def test_purchase_ids_that_are_not_numbers_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError) as caught:
        purchase_ids_from("101, Jane Doe")
    assert "Jane" not in str(caught.value)


def test_a_dotted_name_reaches_nested_custom_fields() -> None:
    mapping = DEFAULT_MAPPINGS.of("pipedrive")["organization"]
    record = {"id": 5, "name": "O", "custom_fields": {"a1b2": "Freight"}}
    nested = type(mapping)("organization", "id", fields={"labels": ("custom_fields.a1b2",)})
    assert nested.customer_data(record) == {"labels": ["Freight"]}
    assert nested.customer_data({"id": 5}) == {}
