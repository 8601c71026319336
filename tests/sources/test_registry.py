"""The registry of sources (webhooks/sources/registry.py): the one list every consumer reads, each
source's settings read and validated by its own module, the docs' table kept to the list."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crmsync.cli import main
from crmsync.cli.sources import source_lines
from crmsync.core.settings import SettingsError
from tests.support import (
    HUBSPOT_SECRET,
    PIPEDRIVE_PASSWORD,
    PIPEDRIVE_USER,
    SALESFORCE_ORG,
    SALESFORCE_TOKEN,
    WEBHOOK_SECRET,
)
from webhooks.mappings import DEFAULT_MAPPINGS, MappingError, mappings_from_document
from webhooks.sources import hubspot, pipedrive, salesforce, standard
from webhooks.sources.registry import (
    NAMES,
    RESERVED_NAMES,
    SOURCES,
    build_sources,
    from_env,
    kind_named,
    sources_sharing_ids,
)

ROOT = Path(__file__).resolve().parents[2]
# What enables each source, as its tests set it.
ENABLING = {
    "standard": {"WEBHOOK_SECRET": WEBHOOK_SECRET},
    "hubspot": {"HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET},
    "salesforce": {
        "SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG,
        "SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN,
    },
    "pipedrive": {"PIPEDRIVE_WEBHOOK_USER": PIPEDRIVE_USER, "PIPEDRIVE_WEBHOOK_PASSWORD": PIPEDRIVE_PASSWORD},
}


def test_the_registry_lists_each_source_once_by_one_name() -> None:
    assert NAMES[:4] == ("standard", "hubspot", "salesforce", "pipedrive")
    assert len(set(NAMES)) == len(NAMES)
    assert [kind_named(name) for name in NAMES] == list(SOURCES)
    # The standard source's older path stays out of a declared source's reach.
    assert set(RESERVED_NAMES) == {*NAMES, "crm"}


def test_an_unknown_source_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown source 'nosuchcrm': expected one of standard, hubspot"):
        kind_named("nosuchcrm")


@pytest.mark.parametrize("name", NAMES)
def test_each_source_is_enabled_by_its_own_settings_alone(name: str) -> None:
    # What `crmsync dev` makes up for it, and what its tests set.
    kind = kind_named(name)
    assert list(from_env(kind.dev_env())) == [name]
    assert set(kind.dev_env()) == set(kind.enabled_by)
    if name in ENABLING:
        assert list(from_env(ENABLING[name])) == [name]


def test_with_no_settings_no_source_is_enabled() -> None:
    assert from_env({}) == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG}, "SALESFORCE_WEBHOOK_TOKEN is required when"),
        ({"SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN}, "SALESFORCE_ORGANIZATION_IDS is required when"),
        ({"PIPEDRIVE_WEBHOOK_USER": PIPEDRIVE_USER}, "PIPEDRIVE_WEBHOOK_PASSWORD is required when"),
        ({"WEBHOOK_SECRET": "not-whsec"}, "WEBHOOK_SECRET: each secret must start with 'whsec_'"),
        ({"HUBSPOT_CLIENT_SECRET": "short"}, "HUBSPOT_CLIENT_SECRET must be at least 12 characters"),
        ({**ENABLING["hubspot"], "HUBSPOT_WEBHOOK_URL": "ftp://x"}, "HUBSPOT_WEBHOOK_URL must be an http"),
        ({**ENABLING["salesforce"], "SALESFORCE_ORGANIZATION_IDS": "001"}, "each id must be a 15- or 18-"),
        ({**ENABLING["standard"], "WEBHOOK_TOLERANCE_SECONDS": "soon"}, "WEBHOOK_TOLERANCE_SECONDS must be"),
    ],
)
def test_a_source_refuses_a_half_set_or_malformed_setting_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        from_env(env)


def test_each_source_reads_its_settings_into_its_own_dataclass() -> None:
    env = {name: value for enabling in ENABLING.values() for name, value in enabling.items()}
    env["HUBSPOT_ALLOW_LEGACY_SIGNATURES"] = "true"
    enabled = from_env(env)
    assert enabled["standard"] == standard.StandardSettings(standard.parse_secrets(WEBHOOK_SECRET), 300)
    assert enabled["hubspot"] == hubspot.HubSpotSettings(HUBSPOT_SECRET, "", allow_legacy=True)
    assert enabled["salesforce"] == salesforce.SalesforceSettings((SALESFORCE_ORG,), SALESFORCE_TOKEN)
    assert enabled["pipedrive"] == pipedrive.PipedriveSettings(PIPEDRIVE_USER, PIPEDRIVE_PASSWORD)
    # Secrets stay out of a settings object's repr (it may be logged).
    assert not any(
        secret in repr(enabled) for secret in (HUBSPOT_SECRET, SALESFORCE_TOKEN, PIPEDRIVE_PASSWORD)
    )


def test_the_web_needs_one_source_and_says_what_enables_each() -> None:
    with pytest.raises(SettingsError) as raised:
        build_sources({}, DEFAULT_MAPPINGS, environ={})
    message = str(raised.value)
    assert message.startswith("no webhook source is enabled: set WEBHOOK_SECRET, HUBSPOT_CLIENT_SECRET,")
    for kind in SOURCES:
        assert " and ".join(kind.enabled_by) in message


def test_the_web_serves_exactly_the_enabled_sources() -> None:
    sources = build_sources(from_env({**ENABLING["hubspot"], **ENABLING["pipedrive"]}), DEFAULT_MAPPINGS, {})
    assert {name: source.name for name, source in sources.items()} == {
        "hubspot": "hubspot",
        "pipedrive": "pipedrive",
    }


def test_the_mappings_file_has_a_table_per_mapped_source_and_the_declared_ones() -> None:
    with pytest.raises(MappingError) as raised:
        mappings_from_document({"nosuchcrm": {}})
    tables = ", ".join([name for name in NAMES if name != "standard"] + ["sources"])
    assert f"nosuchcrm: unknown source (expected one of {tables})" in str(raised.value)
    assert set(DEFAULT_MAPPINGS.by_source) == set(NAMES) - {"standard"}


@pytest.mark.parametrize("name", ["standard", "crm", "hubspot"])
def test_a_declared_source_cannot_take_a_registry_path(name: str) -> None:
    declared: dict[str, Any] = {"auth": {"type": "bearer", "secret_env": "X"}}
    with pytest.raises(MappingError, match=f"sources.{name}: a source name is"):
        mappings_from_document({"sources": {name: declared}})


def test_sources_sharing_ids_leave_out_the_standard_contract() -> None:
    crms = ["hubspot", "salesforce", "pipedrive"]
    assert sources_sharing_ids(["standard", *crms], DEFAULT_MAPPINGS) == crms
    prefixed = mappings_from_document({"hubspot": {"external_id_prefix": "hs-", "fields": {"name": "name"}}})
    assert sources_sharing_ids(crms, prefixed) == ["salesforce", "pipedrive"]
    assert sources_sharing_ids(["standard", "hubspot"], DEFAULT_MAPPINGS) == []


def test_docs_source_table_lists_exactly_the_registry() -> None:
    docs = (ROOT / "docs" / "crm-sources.md").read_text()
    table = docs.split("| path | CRM | enabled when | authentication |", 1)[1].split("\n\n", 1)[0]
    paths = re.findall(r"^\| `POST /webhooks/([a-z0-9_-]+)", table, flags=re.MULTILINE)
    assert paths == list(NAMES)
    for kind in SOURCES:
        row = next(line for line in table.splitlines() if f"/webhooks/{kind.name}" in line)
        assert all(f"`{name}`" in row for name in kind.enabled_by), row


def test_crmsync_sources_lists_every_source_and_whether_the_environment_enables_it() -> None:
    env = {**ENABLING["pipedrive"], "SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN}
    declared = mappings_from_document({"sources": {"inhouse": {"preset": "twenty"}}}, "m.toml")
    lines = source_lines(env, declared)
    assert [line.split()[:3] for line in lines] == [[name, "POST", f"/webhooks/{name}"] for name in NAMES] + [
        ["inhouse", "POST", "/webhooks/inhouse"]
    ]
    status = {line.split()[0]: line for line in lines}
    assert status["pipedrive"].endswith(" enabled")
    assert status["hubspot"].endswith(" off (set HUBSPOT_CLIENT_SECRET)")
    assert status["salesforce"].endswith(
        " refused: SALESFORCE_ORGANIZATION_IDS is required when SALESFORCE_WEBHOOK_TOKEN is set"
    )
    assert status["inhouse"].endswith(" declared in the mappings file                 m.toml")


def test_crmsync_sources_alone_lists_them_from_the_environment() -> None:
    env: dict[str, str | None] = {var.name: None for kind in SOURCES for var in kind.env_vars}
    result = CliRunner().invoke(
        main, ["sources"], env={**env, "CRMSYNC_MAPPINGS": None, **ENABLING["hubspot"]}
    )
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == list(NAMES)
    assert "hubspot     POST /webhooks/hubspot     HubSpot" in result.output and " enabled\n" in result.output
