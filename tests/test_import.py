"""`crmsync import` end to end: the CLI, real Redis, a real RQ worker and the sandbox over HTTP."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import Result
from redis import Redis

from jobs.worker import SyncWorker
from sandbox.server import RunningSandbox
from tests.support import CUSTOMERS_TOKEN, Deliver

AS_OF = "2026-11-20T09:00:00Z"
LIST = """query ($after: String) {
  customers(isSystem: false, first: 100, after: $after) {
    nodes { externalId name description labels } pageInfo { hasNextPage endCursor }
  }
}"""
RECORDS = [
    {
        "external_id": f"crm-{n:03}",
        "name": f"Customer {n}",
        "description": f"Account {n}",
        "labels": ["Tier-1", "EU"],
    }
    for n in range(12)
]


def write_export(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write `records` in the format the file's extension names."""
    if path.suffix == ".json":
        path.write_text(json.dumps(records, indent=2))
    elif path.suffix == ".ndjson":
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    else:
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(records[0]))
            writer.writeheader()
            for record in records:
                labels = record.get("labels")
                writer.writerow({**record, "labels": ";".join(labels)} if labels is not None else record)
    return path


def platform_customers(sandbox: RunningSandbox) -> dict[str, dict[str, Any]]:
    """Every customer on the sandbox, by external id (None for those without one)."""
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        response = requests.post(
            sandbox.customers_url,
            json={"query": LIST, "variables": {"after": after}},
            headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"},
            timeout=10,
        )
        page = response.json()["data"]["customers"]
        found.update({node["externalId"]: node for node in page["nodes"]})
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def mutations(sandbox: RunningSandbox) -> dict[str, int]:
    response = requests.get(
        f"{sandbox.base_url}/admin/stats", headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}, timeout=10
    )
    counts: dict[str, int] = response.json()["mutations"]
    return counts


def drain(worker: SyncWorker) -> None:
    worker.work(burst=True, with_scheduler=False)


def summary(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.mark.parametrize("name", ["export.csv", "export.json", "export.ndjson"])
def test_import_creates_every_record_from_each_format(
    tmp_path: Path, name: str, cli: Callable[..., Result], worker: SyncWorker, sandbox: RunningSandbox
) -> None:
    export = write_export(tmp_path / name, RECORDS)
    assert summary(cli("import", str(export), "--as-of", AS_OF, "--json")) | {"skipped_records": []} == {
        "source": "standard",
        "object": "",
        "as_of": "2026-11-20T09:00:00.000000+00:00",
        "read": 12,
        "queued": 12,
        "up_to_date": 0,
        "already_queued": 0,
        "skipped": 0,
        "skipped_records": [],
    }
    drain(worker)
    customers = platform_customers(sandbox)
    assert len(customers) == 12
    assert customers["crm-007"] == {
        "externalId": "crm-007",
        "name": "Customer 7",
        "description": "Account 7",
        "labels": ["tier-1", "eu"],
    }


def test_import_run_twice_sends_no_mutation_the_second_time(
    tmp_path: Path, cli: Callable[..., Result], worker: SyncWorker, sandbox: RunningSandbox
) -> None:
    export = write_export(tmp_path / "export.csv", RECORDS)
    summary(cli("import", str(export), "--json"))  # versioned by the file's modification time
    drain(worker)
    after_first = mutations(sandbox)
    assert after_first["createCustomer"] == 12
    again = summary(cli("import", str(export), "--json"))
    assert (again["read"], again["queued"], again["up_to_date"]) == (12, 0, 12)
    drain(worker)
    assert mutations(sandbox) == after_first


def test_import_queued_twice_before_the_worker_runs_is_queued_once(
    tmp_path: Path, cli: Callable[..., Result], worker: SyncWorker, sandbox: RunningSandbox
) -> None:
    export = write_export(tmp_path / "export.ndjson", RECORDS)
    summary(cli("import", str(export), "--json"))
    again = summary(cli("import", str(export), "--json"))
    assert (again["queued"], again["already_queued"]) == (0, 12)
    drain(worker)
    assert mutations(sandbox)["createCustomer"] == 12


def test_a_webhook_newer_than_the_export_is_not_overwritten(
    tmp_path: Path, cli: Callable[..., Result], worker: SyncWorker, sandbox: RunningSandbox, deliver: Deliver
) -> None:
    newer = {"external_id": "crm-001", "name": "Renamed in the CRM", "labels": ["new"]}
    deliver({"type": "customer.created", "timestamp": "2026-11-21T10:00:00Z", "data": newer})
    drain(worker)
    export = write_export(tmp_path / "export.json", RECORDS[:3])
    result = summary(cli("import", str(export), "--as-of", AS_OF, "--json"))
    assert (result["queued"], result["up_to_date"]) == (2, 1)
    drain(worker)
    customers = platform_customers(sandbox)
    assert (customers["crm-001"]["name"], customers["crm-001"]["labels"]) == ("Renamed in the CRM", ["new"])
    assert customers["crm-001"]["description"] == ""  # a create sets every field: the export's is older
    assert customers["crm-002"]["name"] == "Customer 2"


def test_an_export_record_versioned_after_the_webhook_wins(
    tmp_path: Path, cli: Callable[..., Result], worker: SyncWorker, sandbox: RunningSandbox, deliver: Deliver
) -> None:
    deliver(
        {
            "type": "customer.created",
            "timestamp": "2026-11-21T10:00:00Z",
            "data": {"external_id": "crm-001", "name": "Old name"},
        }
    )
    drain(worker)
    record = {**RECORDS[1], "labels": None, "updated_at": "2026-11-22T08:00:00+01:00"}
    export = write_export(tmp_path / "export.ndjson", [record])
    assert summary(cli("import", str(export), "--as-of", AS_OF, "--json"))["queued"] == 1
    drain(worker)
    assert platform_customers(sandbox)["crm-001"]["name"] == "Customer 1"


def test_malformed_lines_are_reported_with_their_line_and_skipped(
    tmp_path: Path, cli: Callable[..., Result], worker: SyncWorker, sandbox: RunningSandbox
) -> None:
    export = tmp_path / "export.ndjson"
    lines = [json.dumps(record) for record in RECORDS[:3]]
    lines[1] = lines[1][:-5]  # cut short
    lines.append(json.dumps({"name": "No id"}))
    export.write_text("\n".join(lines) + "\n")
    result = summary(cli("import", str(export), "--as-of", AS_OF, "--json"))
    assert (result["read"], result["queued"], result["skipped"]) == (4, 2, 2)
    assert result["skipped_records"][0]["line"] == 2
    assert result["skipped_records"][0]["reason"].startswith("not valid JSON")
    assert result["skipped_records"][1] == {"line": 4, "reason": "no usable external id in 'external_id'"}
    drain(worker)
    assert sorted(platform_customers(sandbox)) == ["crm-000", "crm-002"]


@pytest.mark.parametrize("name", ["export.json", "export.ndjson"])
def test_a_json_record_with_a_misspelled_key_is_skipped_naming_the_expected_and_unknown_keys(
    tmp_path: Path, cli: Callable[..., Result], redis: Redis, name: str
) -> None:
    export = write_export(tmp_path / name, [{"external_id": "crm-1001", "nmae": "x"}])
    result = summary(cli("import", str(export), "--as-of", AS_OF, "--json"))
    assert (result["read"], result["queued"], result["skipped"]) == (1, 0, 1)
    assert result["skipped_records"][0]["reason"] == (
        "unknown key(s) nmae; expected external_id, name, description, labels, updated_at"
    )
    assert redis.keys("rq:job:*") == []  # nothing was queued


def test_import_prints_a_summary_for_people(tmp_path: Path, cli: Callable[..., Result]) -> None:
    export = write_export(tmp_path / "export.csv", [*RECORDS[:2], {**RECORDS[2], "external_id": ""}])
    result = cli("import", str(export))
    assert result.exit_code == 0
    assert result.stdout == (
        "3 records read: 2 queued, 0 already up to date, 0 already queued, 1 skipped\n"
        "  skipped line 4: no usable external id in 'external_id'\n"
    )


def test_import_of_an_unreadable_file_fails_with_one_line(tmp_path: Path, cli: Callable[..., Result]) -> None:
    export = tmp_path / "export.csv"
    export.write_bytes(b"external_id,name\ncrm-1,\xff\xfe\n")
    result = cli("import", str(export))
    assert result.exit_code == 2
    assert result.stderr == "crmsync: cannot read the export: export.csv is not UTF-8 text\n"


def test_a_salesforce_data_loader_export_imports_through_its_mapping(
    tmp_path: Path, cli: Callable[..., Result], worker: SyncWorker, sandbox: RunningSandbox
) -> None:
    export = tmp_path / "accounts.csv"
    export.write_text(
        "Id,Name,Description,IsDeleted,LastModifiedDate\n"
        "0015g00000QmNoPAAV,Orbital Freight,Cargo,false,2026-11-20T09:30:00.000+0000\n"
        "0015g00000QmNoQAAV,Gone Ltd,,true,2026-11-20T09:31:00.000+0000\n"
    )
    result = summary(cli("import", str(export), "--source", "salesforce", "--object", "Account", "--json"))
    assert (result["queued"], result["skipped_records"]) == (
        1,
        [{"line": 3, "reason": "deleted in the CRM ('IsDeleted' is true)"}],
    )
    drain(worker)
    assert platform_customers(sandbox)["0015g00000QmNoPAAV"]["name"] == "Orbital Freight"


def test_a_version_in_the_future_is_refused(tmp_path: Path, cli: Callable[..., Result]) -> None:
    export = write_export(tmp_path / "export.csv", RECORDS[:1])
    given = cli("import", str(export), "--as-of", "2062-11-20T09:00:00Z")
    assert given.exit_code == 2
    assert "must not be in the future: newer webhooks would be ignored" in given.stderr
    os.utime(export, (4_000_000_000, 4_000_000_000))  # 2096
    modified = cli("import", str(export))
    assert modified.exit_code == 2
    assert "export.csv was modified in the future (2096-10-02 07:06 UTC): give --as-of" in modified.stderr


@pytest.mark.parametrize(
    ("header", "message"),
    [
        # A misspelled column: its field would silently never sync.
        (
            "external_id,nmae,labels",
            "unknown column(s) nmae; expected external_id, name, description, labels, updated_at",
        ),  # fmt: skip
        # Another system's header: every row would be skipped.
        (
            "Id,Name",
            "no external_id column; found Id, Name; expected external_id, name, description, labels, "
            "updated_at",
        ),  # fmt: skip
    ],
)
def test_a_csv_whose_header_does_not_fit_stops_naming_the_expected_and_unknown_columns(
    tmp_path: Path, cli: Callable[..., Result], redis: Redis, header: str, message: str
) -> None:
    export = tmp_path / "export.csv"
    export.write_text(f"{header}\ncrm-1,Mars Missions,space\n")
    result = cli("import", str(export))
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"crmsync: cannot read the export: the CSV header does not fit the standard source: {message}\n"
    )
    assert redis.keys("rq:job:*") == []  # nothing was queued


def test_a_crm_csv_without_its_id_column_stops_naming_it(tmp_path: Path, cli: Callable[..., Result]) -> None:
    # A Salesforce Data Loader export carries many columns crmsync does not sync: only Id must be there.
    export = tmp_path / "accounts.csv"
    export.write_text(
        "AccountId,Name,LastModifiedDate\n0015g00000QmNoPAAV,Orbital Freight,2026-11-20T09:30:00Z\n"
    )
    result = cli("import", str(export), "--source", "salesforce")
    assert result.exit_code == 2
    assert (
        "does not fit the salesforce source: no Id column; found AccountId, Name; expected Id"
        in result.stderr
    )


def test_a_salesforce_export_with_15_character_ids_updates_the_customers_its_webhooks_keyed_by_18(
    tmp_path: Path, cli: Callable[..., Result], worker: SyncWorker, sandbox: RunningSandbox
) -> None:
    # Reports and formula fields give the 15-character id; the webhooks key the customer by the 18.
    first = tmp_path / "accounts-18.csv"
    first.write_text(
        "Id,Name,LastModifiedDate\n001d000001XD5XKAA1,Orbital Freight,2026-11-20T09:30:00.000+0000\n"
    )
    summary(cli("import", str(first), "--source", "salesforce", "--json"))
    drain(worker)
    report = tmp_path / "accounts-15.csv"
    report.write_text(
        "Id,Name,LastModifiedDate\n001d000001XD5XK,Orbital Freight Group,2026-11-20T10:00:00.000+0000\n"
    )
    assert summary(cli("import", str(report), "--source", "salesforce", "--json"))["queued"] == 1
    drain(worker)
    on_platform = platform_customers(sandbox)
    assert on_platform["001d000001XD5XKAA1"]["name"] == "Orbital Freight Group"
    assert "001d000001XD5XK" not in on_platform
