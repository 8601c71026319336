"""`crmsync reconcile` end to end: a platform of several pages on the sandbox (over HTTP), the CLI,
real Redis and a real RQ worker applying the plan."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from redis import Redis
from rq import Queue

from crmsync.cli import main
from crmsync.cli.reconcile import EXIT_DRIFT, EXIT_FAILED, EXIT_REFUSED
from crmsync.core.keys import customer_ids_key
from crmsync.core.redis_conn import as_text
from crmsync.core.settings import Settings
from crmsync.operations.reconcile_reports import ReconcileReports
from jobs.worker import SyncWorker
from sandbox.server import RunningSandbox
from tests.support import CUSTOMERS_TOKEN, Deliver

AS_OF = "2026-11-20T09:00:00Z"
ON_PLATFORM = 280  # crm-000 ... crm-279: three pages of 100
WITHOUT_EXTERNAL_ID = 4
ORPHANS = [f"crm-{n:03}" for n in range(270, 280)]  # on the platform, not in the export
LIST = """query ($after: String) {
  customers(isSystem: false, first: 100, after: $after) {
    nodes { id externalId name description labels } pageInfo { hasNextPage endCursor }
  }
}"""


def customer(n: int) -> dict[str, Any]:
    return {
        "external_id": f"crm-{n:03}",
        "name": f"Customer {n}",
        "description": f"Account {n}",
        "labels": ["tier-1"],
    }


class Api:
    """The sandbox's customers and admin APIs, as a client of the platform would call them."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {CUSTOMERS_TOKEN}"

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = self.session.post(
            self.sandbox.customers_url, json={"query": query, "variables": variables}, timeout=10
        )
        data: dict[str, Any] = response.json()["data"]
        return data

    def customers(self) -> dict[str | None, dict[str, Any]]:
        found: dict[str | None, dict[str, Any]] = {}
        after = None
        while True:
            page = self.graphql(LIST, {"after": after})["customers"]
            found.update({node["externalId"]: node for node in page["nodes"]})
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    def customers_with_ids(self) -> dict[str | None, dict[str, Any]]:
        return {
            node["externalId"]: node
            for node in self.graphql(
                "{ customers(isSystem: false, first: 1000) { nodes { id externalId } } }", {}
            )["customers"]["nodes"]
        }

    def mutations(self) -> dict[str, int]:
        counts: dict[str, int] = self.session.get(f"{self.sandbox.base_url}/admin/stats", timeout=10).json()[
            "mutations"
        ]
        return counts


@pytest.fixture
def api(sandbox: RunningSandbox) -> Iterator[Api]:
    """The sandbox holding 280 customers with an external id, 4 without, and 3 of the platform's
    system customers (which listings with `isSystem: false` leave out), seeded in bulk."""
    client = Api(sandbox)
    on_platform = [customer(n) for n in range(ON_PLATFORM)]
    seeded = [
        *(
            {
                "externalId": c["external_id"],
                "name": c["name"],
                "description": c["description"],
                "labels": c["labels"],
            }
            for c in on_platform
        ),
        *({"name": f"Made by hand {n}"} for n in range(WITHOUT_EXTERNAL_ID)),
        *({"name": f"System {n}", "externalId": f"sys-{n}", "isSystem": True} for n in range(3)),
    ]
    response = client.session.post(
        f"{sandbox.base_url}/admin/customers", json={"customers": seeded}, timeout=10
    )
    assert response.status_code == 201, response.text
    yield client
    client.session.close()


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """The CRM's view: crm-000..269 (the orphans 270..279 left the CRM), three drifted, two new."""
    records = [customer(n) for n in range(270)]
    records[5]["name"] = "Renamed in the CRM"
    records[6]["labels"] = ["tier-2", "eu"]
    records[7]["description"] = "Moved"
    records += [customer(300), customer(301)]
    path = tmp_path / "export.ndjson"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def as_json(result: Result) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def drain(worker: SyncWorker) -> None:
    worker.work(burst=True, with_scheduler=False)


def in_format(ndjson: Path, suffix: str) -> Path:
    """The same records as a JSON array or a CSV file (labels `;`-separated)."""
    records = [json.loads(line) for line in ndjson.read_text().splitlines()]
    path = ndjson.with_suffix(suffix)
    if suffix == ".json":
        path.write_text(json.dumps(records, indent=1))
    elif suffix == ".csv":
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows({**record, "labels": ";".join(record["labels"])} for record in records)
    else:
        return ndjson
    return path


@pytest.mark.parametrize("suffix", [".ndjson", ".csv", ".json"])
def test_dry_run_plans_exactly_the_drift_and_sends_nothing(
    api: Api, export: Path, cli: Callable[..., Result], redis: Redis, suffix: str
) -> None:
    export = in_format(export, suffix)
    before = api.mutations()
    result = cli("reconcile", str(export), "--delete-missing", "--as-of", AS_OF, "--json")
    assert result.exit_code == 0, result.output
    plan = as_json(result)
    assert {kind: plan[kind] for kind in ("create", "update", "delete", "unchanged", "skipped")} == {
        "create": 2,
        "update": 3,
        "delete": 10,
        "unchanged": 267,
        "skipped": 0,
    }
    assert plan["external_ids"]["create"] == ["crm-300", "crm-301"]
    assert plan["updated_fields"] == {"crm-005": ["name"], "crm-006": ["labels"], "crm-007": ["description"]}
    assert plan["external_ids"]["delete"] == ORPHANS
    assert (plan["platform_customers"], plan["without_external_id"], plan["pages"]) == (284, 4, 3)
    assert (plan["outcome"], plan["queued"], plan["max_deletes"]) == ("planned", 0, 28)
    assert api.mutations() == before
    assert Queue("crmsync", connection=redis).count == 0


def test_report_names_fields_never_values(
    api: Api, export: Path, cli: Callable[..., Result], redis: Redis
) -> None:
    cli("reconcile", str(export), "--as-of", AS_OF)
    (key,) = redis.keys("crmsync:reconcile:report:*")
    stored = redis.get(key) or b""
    assert b"crm-005" in stored and b'"name"' in stored
    for value in (b"Renamed in the CRM", b"tier-2", b"Moved", b"Customer 300"):
        assert value not in stored


def test_apply_converges_and_a_second_dry_run_finds_no_drift(
    api: Api, export: Path, cli: Callable[..., Result], worker: SyncWorker
) -> None:
    before = api.mutations()
    applied = cli("reconcile", str(export), "--delete-missing", "--apply", "--as-of", AS_OF, "--json")
    assert applied.exit_code == 0, applied.output
    assert as_json(applied)["queued"] == 15
    assert len(set(as_json(applied)["job_ids"])) == 15
    drain(worker)
    after = api.mutations()
    assert {
        name: after[name] - before[name] for name in ("createCustomer", "updateCustomer", "deleteCustomer")
    } == {
        "createCustomer": 2,
        "updateCustomer": 3,
        "deleteCustomer": 10,
    }
    customers = api.customers()
    assert customers["crm-005"]["name"] == "Renamed in the CRM"
    assert customers["crm-006"]["labels"] == ["tier-2", "eu"]
    assert customers["crm-300"]["description"] == "Account 300"
    assert not set(ORPHANS) & set(customers)
    assert len(customers) == 272 + 1  # the four without an external id share the key None here
    again = cli("reconcile", str(export), "--delete-missing", "--check", "--as-of", AS_OF, "--json")
    assert again.exit_code == 0, again.output
    assert {kind: as_json(again)[kind] for kind in ("create", "update", "delete", "unchanged")} == {
        "create": 0,
        "update": 0,
        "delete": 0,
        "unchanged": 272,
    }
    assert as_json(again)["without_external_id"] == WITHOUT_EXTERNAL_ID


def test_more_deletions_than_max_deletes_are_refused_and_nothing_is_applied(
    api: Api, export: Path, cli: Callable[..., Result], redis: Redis
) -> None:
    before = api.mutations()
    result = cli(
        "reconcile", str(export), "--delete-missing", "--max-deletes", "9", "--apply", "--as-of", AS_OF
    )
    assert result.exit_code == EXIT_REFUSED
    assert (
        "REFUSED: 10 deletion(s) planned, more than the 9 allowed (--max-deletes); nothing was applied"
        in result.stderr
    )
    assert Queue("crmsync", connection=redis).count == 0
    assert api.mutations() == before
    (report,) = ReconcileReports(redis, 1).recent()
    assert (report.outcome, report.counts["delete"], report.queued) == ("refused", 10, 0)


def test_an_empty_export_never_wipes_the_platform(
    api: Api, tmp_path: Path, cli: Callable[..., Result], redis: Redis
) -> None:
    empty = tmp_path / "export.csv"
    empty.write_text("external_id,name\n")
    result = cli("reconcile", str(empty), "--delete-missing", "--apply", "--json")
    assert result.exit_code == EXIT_REFUSED
    assert (as_json(result)["delete"], as_json(result)["max_deletes"], as_json(result)["queued"]) == (
        280,
        28,
        0,
    )
    assert Queue("crmsync", connection=redis).count == 0


def test_without_delete_missing_orphans_are_only_counted(
    api: Api, export: Path, cli: Callable[..., Result]
) -> None:
    result = as_json(cli("reconcile", str(export), "--json"))
    assert (result["delete"], result["not_in_export"]) == (0, 10)
    assert result["external_ids"]["not_in_export"] == ORPHANS


def test_check_exits_1_when_there_is_drift(api: Api, export: Path, cli: Callable[..., Result]) -> None:
    result = cli("reconcile", str(export), "--check")
    assert result.exit_code == EXIT_DRIFT
    assert "plan: create 2, update 3, delete 0, unchanged 267, skipped 0" in result.stdout
    assert "update: crm-005 (name) crm-006 (labels) crm-007 (description)" in result.stdout


def test_a_webhook_newer_than_the_export_wins_over_its_repair(
    api: Api, export: Path, cli: Callable[..., Result], worker: SyncWorker, deliver: Deliver
) -> None:
    deliver(
        {
            "type": "customer.updated",
            "timestamp": "2026-11-21T10:00:00Z",
            "data": {"external_id": "crm-005", "name": "Renamed again, later"},
        }
    )
    drain(worker)
    assert as_json(cli("reconcile", str(export), "--apply", "--as-of", AS_OF, "--json"))["updated_fields"][
        "crm-005"
    ] == ["name"]
    drain(worker)
    assert api.customers()["crm-005"]["name"] == "Renamed again, later"


def test_a_repair_outranks_an_earlier_import_of_the_same_export(
    api: Api, export: Path, cli: Callable[..., Result], worker: SyncWorker
) -> None:
    assert cli("import", str(export), "--as-of", AS_OF).exit_code == 0
    drain(worker)
    api.graphql(
        "mutation ($input: UpdateCustomerInput!) { updateCustomer(input: $input) { errors { field } } }",
        {"input": {"id": _id(api, "crm-010"), "name": "Edited by hand"}},
    )
    plan = as_json(cli("reconcile", str(export), "--apply", "--as-of", AS_OF, "--json"))
    assert plan["updated_fields"] == {"crm-010": ["name"]}
    drain(worker)
    assert api.customers()["crm-010"]["name"] == "Customer 10"


def _id(api: Api, external_id: str) -> str:
    query = "query ($x: String) { customers(externalId: $x, isSystem: false) { nodes { id } } }"
    found: str = api.graphql(query, {"x": external_id})["customers"]["nodes"][0]["id"]
    return found


def test_history_lists_the_runs_newest_first(api: Api, export: Path, cli: Callable[..., Result]) -> None:
    cli("reconcile", str(export))
    cli("reconcile", str(export), "--delete-missing", "--max-deletes", "0")
    lines = cli("reconcile", "--history").stdout.splitlines()
    assert len(lines) == 2
    assert " refused " in lines[0] and " planned " in lines[1]
    assert "create=2 update=3 delete=10" in lines[0] and "export.ndjson" in lines[0]
    rows = [json.loads(line) for line in cli("reconcile", "--history", "--json").stdout.splitlines()]
    assert [row["outcome"] for row in rows] == ["refused", "planned"]


def test_reports_expire_after_the_retention_period(
    api: Api, export: Path, cli: Callable[..., Result], redis: Redis
) -> None:
    cli("reconcile", str(export))
    (key,) = [key for key in redis.keys("crmsync:reconcile:report:*")]
    assert 29 * 86_400 < redis.ttl(key) <= 30 * 86_400
    assert 29 * 86_400 < redis.ttl("crmsync:reconcile:reports") <= 30 * 86_400


def test_an_unreadable_line_is_reported_and_makes_deletions_unsafe(
    api: Api, export: Path, cli: Callable[..., Result], redis: Redis
) -> None:
    lines = export.read_text().splitlines()
    lines[20] = lines[20][:-3]  # crm-020's line, cut short: which customer it was is unknown
    export.write_text("\n".join(lines) + "\n")
    result = cli("reconcile", str(export), "--delete-missing", "--apply", "--as-of", AS_OF, "--json")
    assert result.exit_code == EXIT_REFUSED
    plan = as_json(result)
    assert plan["skipped_records"][0]["line"] == 21
    assert plan["skipped_records"][0]["reason"].startswith("not valid JSON")
    assert "crm-020" in plan["external_ids"]["delete"]
    assert plan["refused"] == "1 line(s) of the export could not be read; deletions are not safe"
    assert Queue("crmsync", connection=redis).count == 0
    without_deletes = as_json(cli("reconcile", str(export), "--as-of", AS_OF, "--json"))
    assert (without_deletes["skipped"], without_deletes["refused"], without_deletes["update"]) == (1, "", 3)


def test_a_listing_the_platform_refuses_ends_the_run_with_status_4_and_no_plan(
    api: Api, export: Path, settings: Settings, sandbox: RunningSandbox, redis: Redis
) -> None:
    env = {
        "REDIS_URL": settings.redis_url,
        "CUSTOMERS_API_URL": sandbox.customers_url,
        "CUSTOMERS_API_TOKEN": "not-the-token",
    }
    result = CliRunner().invoke(main, ["reconcile", str(export), "--apply"], env=env)
    assert result.exit_code == EXIT_FAILED
    assert result.stderr == (
        "crmsync: listing the platform's customers failed: customers API rejected the request with HTTP 401;"
        " nothing was planned or applied\n"
    )
    assert ReconcileReports(redis, 1).recent() == []


def test_check_with_a_csv_whose_header_does_not_fit_stops_before_listing_the_platform(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    export = tmp_path / "export.csv"
    export.write_text("external_id,name,lables\ncrm-000,Customer 0,eu\n")
    result = cli("reconcile", str(export), "--check")
    assert result.exit_code == 2
    assert (
        "the CSV header does not fit the standard source: unknown column(s) lables; expected" in result.stderr
    )
    assert cli("reconcile", "--history").stdout == ""  # no run: the platform was not even listed


def test_check_of_an_export_whose_every_record_was_skipped_is_no_all_clear(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    export = tmp_path / "export.ndjson"
    export.write_text('{"external_id": "crm-000", "nmae": "Customer 0"}\n{"name": "No id"}\n')
    result = cli("reconcile", str(export), "--check")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "crmsync: cannot read the export: all 2 records were skipped; nothing was compared\n"
    )
    assert "skipped line 1: unknown key(s) nmae; expected external_id" in result.stdout


def test_the_refused_example_in_the_operators_doc_is_what_reconcile_prints(
    api: Api, export: Path, cli: Callable[..., Result]
) -> None:
    documented = (Path(__file__).resolve().parent.parent / "docs" / "operators.md").read_text()
    example = re.search(r"#   (REFUSED: (\d+) deletion.*)", documented)
    assert example is not None
    deletions = int(example.group(2))  # the doc's run refuses 1 deletion with 0 allowed
    # Its figures hold when the crm sample was the only one sent: each other one is one more orphan.
    assert "after only the crm sample" in documented[: example.start()].rsplit("```sh", 1)[1]
    result = cli("reconcile", str(export), "--delete-missing", "--max-deletes", str(deletions - 1))
    assert result.exit_code == EXIT_REFUSED
    printed = result.stderr.strip().replace(f"{len(ORPHANS)} deletion", f"{deletions} deletion")
    assert printed == example.group(1)


def test_the_listing_fills_the_id_cache_so_repairs_need_no_lookup(
    api: Api, export: Path, cli: Callable[..., Result], redis: Redis, worker: SyncWorker
) -> None:
    platform_ids = {external_id: node["id"] for external_id, node in api.customers().items() if external_id}
    assert cli("reconcile", str(export), "--as-of", AS_OF, "--json").exit_code == 0
    cached = {name: redis.hget(customer_ids_key(name), name) for name in platform_ids}
    assert {external_id: as_text(found) for external_id, found in cached.items() if found} == platform_ids
    # The three repairs of drifted customers are then one update each (and the two creates one each).
    api.session.delete(f"{api.sandbox.base_url}/admin/rates", timeout=10)
    assert cli("reconcile", str(export), "--as-of", AS_OF, "--apply", "--json").exit_code == 0
    listing = api.session.get(f"{api.sandbox.base_url}/admin/rates", timeout=10).json()["customers"]["total"]
    api.session.delete(f"{api.sandbox.base_url}/admin/rates", timeout=10)
    drain(worker)
    assert (
        api.session.get(f"{api.sandbox.base_url}/admin/rates", timeout=10).json()["customers"]["total"] == 5
    )
    assert listing == 3  # its three pages


def test_a_salesforce_export_with_15_character_ids_matches_the_customers_keyed_by_18(
    sandbox: RunningSandbox, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    seeded = [
        {"externalId": "001d000001XD5XKAA1", "name": "Orbital Freight", "description": "", "labels": []}
    ]
    response = Api(sandbox).session.post(
        f"{sandbox.base_url}/admin/customers", json={"customers": seeded}, timeout=10
    )
    assert response.status_code == 201, response.text
    export = tmp_path / "accounts.csv"
    export.write_text("Id,Name,Description\n001d000001XD5XK,Orbital Freight,\n")
    arguments = ("--source", "salesforce", "--delete-missing", "--as-of", AS_OF, "--json")
    plan = as_json(cli("reconcile", str(export), *arguments))
    assert {kind: plan[kind] for kind in ("create", "update", "delete", "unchanged")} == {
        "create": 0, "update": 0, "delete": 0, "unchanged": 1,
    }  # fmt: skip
