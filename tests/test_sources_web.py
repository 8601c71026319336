"""The CRM sources in the web app and the tools: settings, which endpoints answer, Redis down, the
dashboard's and the CLI's views of ignored and rejected items, `crmsync mappings`."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from redis import Redis

from crmsync.cli import main
from crmsync.core.settings import Settings, SettingsError
from crmsync.operations.activity import read_snapshot
from crmsync.web import create_app
from tests.support import (
    AUTH,
    DASHBOARD_PASSWORD,
    DASHBOARD_USER,
    HUBSPOT_SECRET,
    PIPEDRIVE_PASSWORD,
    PIPEDRIVE_USER,
    SALESFORCE_ORG,
    SALESFORCE_TOKEN,
    SOURCES_ENV,
    STANDARD_ENV,
    basic_auth,
    corpus,
    free_port,
    hubspot_event,
    hubspot_object_event,
    hubspot_signed_headers,
    pipedrive_body,
    salesforce_account,
    salesforce_message,
    served,
)
from tests.test_heroku import start_gunicorn, wait_until_serving, web_environment
from webhooks.mappings import DEFAULT_MAPPINGS, mappings_from_document
from webhooks.sources.registry import NAMES, from_env, sources_sharing_ids

ONLY_PIPEDRIVE = {"PIPEDRIVE_WEBHOOK_USER": PIPEDRIVE_USER, "PIPEDRIVE_WEBHOOK_PASSWORD": PIPEDRIVE_PASSWORD}


def test_the_web_starts_with_any_one_source(settings: Settings) -> None:
    for env in (
        {"HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET},
        {"SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG, "SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN},
        ONLY_PIPEDRIVE,
    ):
        assert len(create_app(settings, environ=env).extensions["crmsync_sources"]) == 1


def test_the_web_refuses_to_start_without_any_source(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="no webhook source is enabled"):
        create_app(settings, environ={})


ONLY_HUBSPOT = {"HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET}
ONLY_SALESFORCE = {
    "SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG,
    "SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN,
}
PREFIXES = '[hubspot]\nexternal_id_prefix = "hs-"\n[hubspot.fields]\nname = "name"\n'


@pytest.mark.parametrize(
    ("enabled", "mappings", "sharing"),
    [
        ({**ONLY_HUBSPOT, **ONLY_PIPEDRIVE}, "", ["hubspot", "pipedrive"]),
        ({**ONLY_HUBSPOT, **ONLY_SALESFORCE, **ONLY_PIPEDRIVE}, PREFIXES, ["salesforce", "pipedrive"]),
        ({**ONLY_HUBSPOT, **ONLY_PIPEDRIVE}, PREFIXES, []),
        (ONLY_PIPEDRIVE, "", []),
    ],
    ids=["two-without-prefix", "three-one-prefixed", "two-one-prefixed", "one-source"],
)
def test_sources_sharing_ids_are_those_enabled_with_the_same_prefix(
    enabled: dict[str, str], mappings: str, sharing: list[str]
) -> None:
    loaded = mappings_from_document(tomllib.loads(mappings)) if mappings else DEFAULT_MAPPINGS
    assert sources_sharing_ids(from_env(enabled), loaded) == sharing


@pytest.mark.parametrize(("mappings", "warnings"), [("", 1), (PREFIXES, 0)], ids=["shared", "prefixed"])
def test_gunicorn_warns_once_at_start_when_two_crm_sources_share_ids(
    redis_url: str, tmp_path: Path, mappings: str, warnings: int
) -> None:
    env = web_environment(redis_url, free_port(), **ONLY_HUBSPOT, **ONLY_PIPEDRIVE, WEB_CONCURRENCY="2")
    if mappings:
        (tmp_path / "mappings.toml").write_text(mappings)
        env["CRMSYNC_MAPPINGS"] = str(tmp_path / "mappings.toml")
    process = start_gunicorn(env)
    try:
        wait_until_serving(f"http://127.0.0.1:{env['PORT']}/healthz", process)
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=30)
    output = (stdout + stderr).splitlines()
    lines = [json.loads(line) for line in output if "external_ids_may_collide" in line]
    assert len(lines) == warnings
    if warnings:
        assert (lines[0]["level"], lines[0]["sources"]) == ("warning", ["hubspot", "pipedrive"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG}, "SALESFORCE_WEBHOOK_TOKEN is required"),
        ({"PIPEDRIVE_WEBHOOK_PASSWORD": PIPEDRIVE_PASSWORD}, "PIPEDRIVE_WEBHOOK_USER is required"),
        (
            {"SALESFORCE_ORGANIZATION_IDS": "00D-not-an-id", "SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN},
            "SALESFORCE_ORGANIZATION_IDS",
        ),
        ({"SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG, "SALESFORCE_WEBHOOK_TOKEN": "short"}, "at least 24"),
        (
            {"HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET, "HUBSPOT_WEBHOOK_URL": "crmsync.example"},
            "HUBSPOT_WEBHOOK_URL",
        ),
        (
            {"HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET, "HUBSPOT_ALLOW_LEGACY_SIGNATURES": "maybe"},
            "HUBSPOT_ALLOW_LEGACY_SIGNATURES",
        ),
    ],
    ids=["org-without-token", "password-without-user", "bad-org-id", "short-token", "bad-url", "bad-flag"],
)
def test_a_half_set_or_malformed_source_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        from_env(env)


def test_a_source_that_is_not_enabled_answers_404(settings: Settings, redis: Redis) -> None:
    with served(create_app(settings, environ=ONLY_PIPEDRIVE)) as base:
        for name in ("standard", "crm", "hubspot", "salesforce"):
            response = requests.post(f"{base}/webhooks/{name}", data=b"[]", timeout=10)
            assert (response.status_code, response.json()["error"]) == (404, "not_found")
        # The answer says what enables it.
        enabling = "SALESFORCE_ORGANIZATION_IDS and SALESFORCE_WEBHOOK_TOKEN"
        assert response.json()["message"] == f"The salesforce source is not enabled (set {enabling})."
        headers = {"authorization": basic_auth()}
        answer = requests.post(
            f"{base}/webhooks/pipedrive", data=pipedrive_body(), headers=headers, timeout=10
        )
        assert answer.status_code == 200


def test_the_dashboard_lists_every_source_served_or_what_enables_it(dashboard: str) -> None:
    page = requests.get(f"{dashboard}/sources", auth=AUTH, timeout=5).text
    table = page.split('<table id="sources">', 1)[1].split("</table>", 1)[0]
    rows = table.split("<tr>")[2:]
    names = [row.split("<td>", 2)[1].split("<")[0] for row in rows]
    assert names == list(NAMES)
    assert "<td>yes</td>" in rows[0] and "no (set HUBSPOT_CLIENT_SECRET)" in rows[1]


def test_a_mistake_in_the_mappings_file_stops_the_app(settings: Settings, tmp_path: Path) -> None:
    from webhooks.mappings import MappingError

    path = tmp_path / "mappings.toml"
    path.write_text('[hubspot.fields]\nlabels = ["industry", "type"]\n')
    with pytest.raises(MappingError, match="hubspot.fields.labels: HubSpot sends one property per event"):
        create_app(replace(settings, mappings_file=str(path)), environ=STANDARD_ENV)


@pytest.mark.parametrize("name", ["hubspot", "salesforce", "pipedrive"])
def test_while_redis_is_unreachable_a_crm_gets_503_and_nothing_is_queued(
    sources_settings: Settings, name: str
) -> None:
    down = replace(sources_settings, redis_url="redis://127.0.0.1:1/0")
    with served(create_app(down, environ=SOURCES_ENV)) as base:
        url = f"{base}/webhooks/{name}"
        if name == "hubspot":
            body = json.dumps([hubspot_event()]).encode()
            response = requests.post(url, data=body, headers=hubspot_signed_headers(url, body), timeout=10)
        elif name == "salesforce":
            body = salesforce_message(("04l000000000001AAA", salesforce_account()))
            response = requests.post(f"{url}?token={SALESFORCE_TOKEN}", data=body, timeout=10)
        else:
            response = requests.post(
                url, data=pipedrive_body(), headers={"authorization": basic_auth()}, timeout=10
            )
    assert response.status_code == 503


def test_the_dashboard_shows_ignored_types_and_rejected_items_without_values(
    crm: str, sources_settings: Settings, redis: Redis
) -> None:
    url = f"{crm}/webhooks/hubspot"
    body = json.dumps(
        [hubspot_object_event("contact.creation"), hubspot_event(objectId=None, propertyValue="Secret Co")]
    )
    requests.post(url, data=body, headers=hubspot_signed_headers(url, body.encode()), timeout=10)
    # The overview's last hour counts the rejected item too (the ignored one is no rejection).
    last_hour = read_snapshot(redis, sources_settings.queue_name).webhooks_last_hour
    assert (last_hour["accepted"], last_hour["rejected"]) == (0, 1)
    app = create_app(
        replace(sources_settings, dashboard_user=DASHBOARD_USER, dashboard_password=DASHBOARD_PASSWORD),
        environ=SOURCES_ENV,
    )
    with served(app) as base:
        page = requests.get(f"{base}/dashboard/sources", auth=AUTH, timeout=5).text
        api = requests.get(f"{base}/dashboard/api/sources", auth=AUTH, timeout=5).json()
    assert "contact.creation" in page and "missing or invalid objectId" in page
    assert "Secret Co" not in page
    assert api["ignored"] == [{"source": "hubspot", "type": "contact.creation", "count": 1}]
    assert api["rejected"][0]["identifiers"]["eventId"] == "4417"


def test_the_cli_lists_ignored_and_rejected_items(crm: str, redis_url: str) -> None:
    url = f"{crm}/webhooks/hubspot"
    body = json.dumps([hubspot_object_event("deal.deletion"), hubspot_event(occurredAt="soon")]).encode()
    requests.post(url, data=body, headers=hubspot_signed_headers(url, body), timeout=10)
    ignored = CliRunner().invoke(main, ["sources", "ignored"], env={"REDIS_URL": redis_url})
    rejected = CliRunner().invoke(main, ["sources", "rejected", "--json"], env={"REDIS_URL": redis_url})
    assert "deal.deletion" in ignored.stdout and "rejected" in ignored.stdout
    assert json.loads(rejected.stdout)["reason"] == "missing or invalid occurredAt"
    assert rejected.stderr == "1 rejected item(s) shown (at most 50)\n"


def test_version_fallbacks_and_rejected_types_show_in_the_cli_and_on_the_dashboard_with_the_fix(
    crm: str, sources_settings: Settings, redis_url: str
) -> None:
    salesforce = f"{crm}/webhooks/salesforce?token={SALESFORCE_TOKEN}"
    requests.post(salesforce, data=corpus("salesforce", "account-no-version.xml"), timeout=10)
    hubspot = f"{crm}/webhooks/hubspot"
    body = json.dumps([hubspot_event(subscriptionType="object.propertyChange")]).encode()
    requests.post(hubspot, data=body, headers=hubspot_signed_headers(hubspot, body), timeout=10)
    listed = CliRunner().invoke(main, ["sources", "ignored"], env={"REDIS_URL": redis_url}).stdout
    assert "fix: add LastModifiedDate to the outbound message's fields" in listed
    assert "Account by received_at" in listed and "object.propertyChange" in listed
    app = create_app(
        replace(sources_settings, dashboard_user=DASHBOARD_USER, dashboard_password=DASHBOARD_PASSWORD),
        environ=SOURCES_ENV,
    )
    with served(app) as base:
        page = requests.get(f"{base}/dashboard/sources", auth=AUTH, timeout=5).text
        api = requests.get(f"{base}/dashboard/api/sources", auth=AUTH, timeout=5).json()
    assert "add LastModifiedDate to the outbound message&#39;s fields" in page
    # Once, in the page's body: not in its <title> as well.
    assert "<title>CRM sources · crmsync</title>" in page
    assert page.count('<table id="version-fallbacks">') == 1
    fix = "add LastModifiedDate to the outbound message's fields"
    assert api["version_fallbacks"] == [
        {"source": "salesforce", "record_type": "Account", "used": "received_at", "count": 1, "fix": fix}
    ]
    assert api["rejected_by_type"] == [{"source": "hubspot", "type": "object.propertyChange", "count": 1}]


def test_the_cli_says_when_nothing_was_ignored_or_rejected(redis_url: str, redis: Redis) -> None:
    ignored = CliRunner().invoke(main, ["sources", "ignored"], env={"REDIS_URL": redis_url})
    rejected = CliRunner().invoke(main, ["sources", "rejected"], env={"REDIS_URL": redis_url})
    assert (ignored.exit_code, ignored.stdout) == (0, "")
    assert ignored.stderr == "no CRM source has ignored or rejected anything yet\n"
    assert (rejected.exit_code, rejected.stdout, rejected.stderr) == (
        0,
        "",
        "0 rejected item(s) shown (at most 50)\n",
    )


MAPPINGS = '[hubspot]\nexternal_id_prefix = "hs-"\n[hubspot.fields]\nname = "name"\nlabels = "industry"\n'


def test_mappings_show_prints_the_file_and_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mappings.toml"
    path.write_text(MAPPINGS)
    result = CliRunner().invoke(main, ["mappings", "show"], env={"CRMSYNC_MAPPINGS": str(path)})
    assert result.exit_code == 0, result.output
    assert 'external id = objectId (prefixed "hs-")' in result.output
    assert "labels       <- property industry" in result.output
    assert "salesforce Account: sync, external id = Id" in result.output  # a default


def test_mappings_preview_prints_events_ignored_and_rejected_and_queues_nothing(
    tmp_path: Path, redis: Redis
) -> None:
    mappings, payload = tmp_path / "mappings.toml", tmp_path / "hubspot.json"
    mappings.write_text(MAPPINGS)
    payload.write_text(json.dumps([
        hubspot_event(propertyName="industry", propertyValue="Freight;Space"),
        hubspot_object_event("contact.creation", eventId=2),
        hubspot_event(eventId=3, objectId="x"),
    ]))  # fmt: skip
    result = CliRunner().invoke(main, ["mappings", "preview", "hubspot", str(payload)],
                                env={"CRMSYNC_MAPPINGS": str(mappings)})  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "1 event(s), 1 ignored, 1 rejected"
    assert '"external_id": "hs-5150", "labels": ["Freight", "Space"]' in lines[1]
    assert lines[2] == "ignored  contact.creation"
    assert lines[3].startswith("rejected missing or invalid objectId")
    assert redis.dbsize() == 0


def test_mappings_preview_reads_salesforce_and_pipedrive_payloads(tmp_path: Path) -> None:
    message, body = tmp_path / "message.xml", tmp_path / "pipedrive.json"
    message.write_bytes(salesforce_message(("04l000000000001AAA", salesforce_account())))
    body.write_bytes(pipedrive_body())
    for source, path in (("salesforce", message), ("pipedrive", body)):
        result = CliRunner().invoke(
            main, ["mappings", "preview", source, str(path)], env={"CRMSYNC_MAPPINGS": ""}
        )
        assert result.output.startswith("1 event(s), 0 ignored, 0 rejected"), result.output


def test_a_mistake_in_the_mappings_file_is_one_line_from_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "mappings.toml"
    path.write_text("[salesforce.Account]\n[salesforce.Account.fields]\nname = 'Name'\n")
    result = CliRunner().invoke(main, ["mappings", "show"], env={"CRMSYNC_MAPPINGS": str(path)})
    assert result.exit_code == 2
    assert "salesforce.Account.external_id: missing (required)" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--source", "hubspot"],
            "set HUBSPOT_CLIENT_SECRET to what the service verifies hubspot webhooks with",
        ),
        (["--source", "salesforce"], "set SALESFORCE_ORGANIZATION_IDS and SALESFORCE_WEBHOOK_TOKEN"),
        (["--source", "pipedrive", "--external-id", "acme"], "set PIPEDRIVE_WEBHOOK_USER and"),
    ],
    ids=["hubspot", "salesforce", "pipedrive"],
)
def test_send_sample_names_the_missing_credentials_and_sends_nothing(
    arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["send-sample", *arguments, "http://127.0.0.1:1/webhooks/x"], env={
        "HUBSPOT_CLIENT_SECRET": "", "SALESFORCE_ORGANIZATION_IDS": "", "SALESFORCE_WEBHOOK_TOKEN": "",
        "PIPEDRIVE_WEBHOOK_USER": "", "PIPEDRIVE_WEBHOOK_PASSWORD": "",
    })  # fmt: skip
    assert result.exit_code == 2
    assert message in result.output


def test_send_sample_sends_each_crm_format_that_the_service_accepts(crm: str) -> None:
    env = {"HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET, "SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG,
           "SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN, "PIPEDRIVE_WEBHOOK_USER": PIPEDRIVE_USER,
           "PIPEDRIVE_WEBHOOK_PASSWORD": PIPEDRIVE_PASSWORD}  # fmt: skip
    for source in ("hubspot", "salesforce", "pipedrive"):
        result = CliRunner().invoke(
            main, ["send-sample", "--source", source, f"{crm}/webhooks/{source}"], env=env
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith("HTTP 200")


def test_send_sample_salesforce_prints_the_whole_ack(crm: str) -> None:
    env = {"SALESFORCE_ORGANIZATION_IDS": SALESFORCE_ORG, "SALESFORCE_WEBHOOK_TOKEN": SALESFORCE_TOKEN}
    result = CliRunner().invoke(
        main, ["send-sample", "--source", "salesforce", f"{crm}/webhooks/salesforce"], env=env
    )
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert line.startswith("HTTP 200 <?xml") and "<Ack>true</Ack>" in line
    assert line.endswith("</soapenv:Envelope>")
