"""The standard source's mapping and the reconcile plan, as pure functions (no Redis, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.operations.export_events import import_event, reconcile_event, utc_timestamp
from crmsync.operations.exports import ExportLine
from crmsync.operations.reconcile_plan import (
    PlatformIndex,
    ReconcilePlan,
    default_max_deletes,
    plan_reconcile,
    platform_fields,
    refusal,
)
from crmsync.operations.records import (
    DIGEST_BYTES,
    CustomerRecord,
    RecordSkipped,
    Skipped,
    SkippedLog,
    StandardMapping,
    field_digests,
    map_records,
    parse_time,
)

STANDARD = StandardMapping()


def mapped(*records: dict[str, Any] | str) -> list[CustomerRecord | Skipped]:
    """Map raw records (a string stands for an unreadable line with that error) from line 2 on."""
    lines = [
        ExportLine(n, error=r) if isinstance(r, str) else ExportLine(n, record=r)
        for n, r in enumerate(records, start=2)
    ]
    return list(map_records(lines, STANDARD))


def node(
    external_id: str | None, name: str, description: str = "", labels: list[str] | None = None
) -> dict[str, Any]:
    return {"externalId": external_id, "name": name, "description": description, "labels": labels}


def test_standard_record_maps_csv_text_to_customer_fields() -> None:
    (record,) = mapped(
        {
            "external_id": " crm-1 ",
            "name": "Acme",
            "description": "",
            "labels": "VIP; space ;;vip",
            "updated_at": "2026-11-20T09:30:00+01:00",
        }
    )
    assert record == CustomerRecord(
        2,
        "crm-1",
        {"name": "Acme", "description": "", "labels": ["vip", "space"]},
        "2026-11-20T08:30:00.000000+00:00",
    )


def test_standard_record_takes_json_lists_of_labels_and_leaves_absent_fields_out() -> None:
    (from_json,) = mapped({"external_id": 17, "labels": ["A", "b"]})
    (from_csv,) = mapped({"external_id": "crm-2", "labels": '["A", "b"]'})
    assert from_json == CustomerRecord(2, "17", {"labels": ["a", "b"]})
    assert from_csv.fields == {"labels": ["a", "b"]}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("record", "reason", "external_id"),
    [
        ({"name": "Acme"}, "no usable external id in 'external_id'", ""),
        ({"external_id": "  ", "name": "Acme"}, "no usable external id in 'external_id'", ""),
        ({"external_id": True}, "no usable external id in 'external_id'", ""),
        ({"external_id": "crm-1", "name": ""}, "'name' is empty", "crm-1"),
        ({"external_id": "crm-1", "name": 5}, "'name' must be text", "crm-1"),
        (
            {"external_id": "crm-1", "labels": "[oops"},
            "'labels' is neither a JSON list nor ';'-separated",
            "crm-1",
        ),
        ({"external_id": "crm-1", "labels": [1]}, "'labels' must be a list of text labels", "crm-1"),
        (
            {"external_id": "crm-1", "updated_at": "yesterday"},
            "'updated_at' is not an RFC 3339 time",
            "crm-1",
        ),
        (
            {"external_id": "crm-1", "updated_at": "2026-11-20T09:30:00"},
            "'updated_at' has no UTC offset",
            "crm-1",
        ),
    ],
)
def test_unusable_record_is_skipped_with_a_reason_naming_the_field_not_the_value(
    record: dict[str, Any], reason: str, external_id: str
) -> None:
    assert mapped(record) == [Skipped(2, reason, external_id)]


def test_unreadable_line_is_skipped_and_marked_unreadable() -> None:
    assert mapped("not valid JSON (Expecting value)") == [
        Skipped(2, "not valid JSON (Expecting value)", unreadable=True)
    ]


def platform() -> PlatformIndex:
    index = PlatformIndex()
    for customer in [
        node("crm-same", "Same", "desc", ["a", "b"]),
        node("crm-name", "Old name", "desc"),
        node("crm-labels", "Labels", "", ["Old"]),
        node("crm-orphan", "Orphan"),
        node("crm-skipped", "Skipped"),
        node(None, "Manual"),
        node("", "Manual too"),
    ]:
        index.add(customer)
    return index


def test_plan_creates_updates_deletes_and_counts_the_rest() -> None:
    records = mapped(
        {"external_id": "crm-same", "name": "Same", "description": "desc", "labels": "B;a;A"},
        {"external_id": "crm-name", "name": "New name", "description": "desc"},
        {"external_id": "crm-labels", "name": "Labels", "labels": "new"},
        {"external_id": "crm-new", "name": "New"},
        {"external_id": "crm-new-no-name", "description": "x"},
        {"external_id": "crm-skipped", "name": ""},
        {"external_id": "crm-same", "name": "Duplicate"},
        "not valid JSON",
    )
    plan = plan_reconcile(platform(), records, delete_missing=True)
    assert plan.create == ["crm-new"]
    assert plan.update == {"crm-name": ["name"], "crm-labels": ["labels"]}
    assert plan.delete == ["crm-orphan"]
    assert plan.unchanged == 1
    assert [(s.line, s.external_id) for s in plan.skipped.kept] == [
        (6, "crm-new-no-name"),
        (7, "crm-skipped"),
        (8, "crm-same"),
        (9, ""),
    ]
    assert plan.counts() == {
        "create": 1,
        "update": 2,
        "delete": 1,
        "unchanged": 1,
        "skipped": 4,
        "not_in_export": 0,
        "platform_customers": 7,
        "without_external_id": 2,
    }


def test_without_delete_missing_the_orphans_are_listed_not_deleted() -> None:
    plan = plan_reconcile(
        platform(), mapped({"external_id": "crm-same", "name": "Same"}), delete_missing=False
    )
    assert plan.delete == []
    assert sorted(plan.not_in_export) == ["crm-labels", "crm-name", "crm-orphan", "crm-skipped"]


def test_an_empty_export_plans_deleting_everything_and_is_refused() -> None:
    plan = plan_reconcile(platform(), [], delete_missing=True)
    assert len(plan.delete) == 5
    assert default_max_deletes(plan) == 0
    assert (
        refusal(plan, default_max_deletes(plan))
        == "5 deletion(s) planned, more than the 0 allowed (--max-deletes)"
    )
    assert refusal(plan, 5) == ""


def test_deletes_are_refused_while_some_lines_were_unreadable() -> None:
    plan = plan_reconcile(platform(), mapped("not valid JSON"), delete_missing=True)
    assert refusal(plan, 100) == "1 line(s) of the export could not be read; deletions are not safe"


def test_default_max_deletes_is_a_tenth_of_the_customers_with_an_external_id() -> None:
    index = PlatformIndex()
    for n in range(259):
        index.add(node(f"crm-{n}" if n < 250 else None, f"N{n}"))
    assert default_max_deletes(plan_reconcile(index, [], delete_missing=True)) == 25


def test_import_event_is_the_same_delivery_for_the_same_record_and_version() -> None:
    record = CustomerRecord(2, "crm-1", {"name": "Acme", "labels": ["vip"]})
    first = import_event(record, "2026-11-20T08:30:00.000000+00:00")
    assert first == import_event(record, "2026-11-20T08:30:00.000000+00:00")
    assert first.webhook_id.startswith("import:")
    assert (first.type, first.timestamp, first.data) == (
        "customer.updated",
        "2026-11-20T08:30:00.000000+00:00",
        {"external_id": "crm-1", "name": "Acme", "labels": ["vip"]},
    )
    assert first.webhook_id != import_event(record, "2026-11-20T08:30:01.000000+00:00").webhook_id
    versioned = CustomerRecord(2, "crm-1", {"name": "Acme"}, "2026-11-01T00:00:00.000000+00:00")
    assert import_event(versioned, "2026-11-20T08:30:00.000000+00:00").timestamp.startswith("2026-11-01")


def test_reconcile_update_carries_only_the_fields_that_differ() -> None:
    record = CustomerRecord(2, "crm-1", {"name": "Acme", "description": "d", "labels": []})
    event = reconcile_event("RUN", "update", "crm-1", "2026-11-20T08:30:00+00:00", record, ("labels",))
    assert event.webhook_id == "reconcile:RUN:update:crm-1"
    assert event.data == {"external_id": "crm-1", "labels": []}
    assert reconcile_event("RUN", "delete", "crm-9", "2026-11-20T08:30:00+00:00").type == "customer.deleted"


def test_skipped_records_are_all_counted_and_the_first_thousand_kept() -> None:
    plan = plan_reconcile(PlatformIndex(), mapped(*["not valid JSON"] * 1005), delete_missing=False)
    assert (plan.counts()["skipped"], plan.unreadable, len(plan.skipped.kept)) == (1005, 1005, 1000)


def test_a_record_versioned_in_the_future_is_skipped() -> None:
    (skipped,) = mapped({"external_id": "crm-1", "name": "Acme", "updated_at": "2099-01-01T00:00:00Z"})
    assert skipped == Skipped(2, "its version is in the future", "crm-1")


def test_platform_nodes_with_null_fields_compare_as_empty() -> None:
    assert platform_fields({"externalId": "crm-1", "name": None, "description": None, "labels": None}) == {
        "name": "",
        "description": "",
        "labels": [],
    }


def test_a_fresh_plan_counts_nothing_and_has_no_drift() -> None:
    plan = ReconcilePlan()
    assert set(plan.counts().values()) == {0}
    assert plan.drift == 0


def test_drift_is_the_creates_updates_and_deletes_and_the_index_is_consumed() -> None:
    index = platform()
    records = mapped(
        {"external_id": "crm-name", "name": "New name"}, {"external_id": "crm-new", "name": "New"}
    )
    plan = plan_reconcile(index, records, delete_missing=True)
    assert (len(plan.create), len(plan.update), len(plan.delete), plan.drift) == (1, 1, 4, 6)
    assert index.digests == {}  # its memory is given back as soon as the plan is made


def test_skip_reasons_for_a_duplicate_and_for_a_create_without_a_name() -> None:
    plan = plan_reconcile(
        platform(),
        mapped(
            {"external_id": "crm-skipped", "name": ""},
            {"external_id": "crm-skipped", "name": "Later, valid"},
            {"external_id": "crm-new", "description": "no name"},
        ),
        delete_missing=False,
    )
    assert [(s.line, s.reason) for s in plan.skipped.kept] == [
        (2, "'name' is empty"),
        (3, "duplicate external id: an earlier record has it"),
        (4, "not on the platform, and no name to create it with"),
    ]
    assert plan.unreadable == 0  # each was read: only what it held was wrong


def test_unreadable_lines_refuse_nothing_when_nothing_is_deleted() -> None:
    plan = plan_reconcile(PlatformIndex(), mapped("not valid JSON"), delete_missing=True)
    assert plan.unreadable == 1
    assert refusal(plan, 0) == ""


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"external_id": "crm-1", "updated_at": ""}, CustomerRecord(2, "crm-1", {})),
        (
            {"external_id": "crm-1", "description": None, "labels": None},
            CustomerRecord(2, "crm-1", {"description": "", "labels": []}),
        ),
        (
            {"external_id": "crm-1", "updated_at": "2026-11-20t09:30:00z"},
            CustomerRecord(2, "crm-1", {}, "2026-11-20T09:30:00.000000+00:00"),
        ),
    ],
)
def test_empty_and_null_values_map_as_the_platform_stores_them(
    record: dict[str, Any], expected: CustomerRecord
) -> None:
    assert mapped(record) == [expected]


def test_versions_up_to_five_minutes_ahead_are_clock_skew_later_ones_are_skipped() -> None:
    now = datetime.now(UTC)
    ahead = [utc_timestamp(now + timedelta(minutes=minutes)) for minutes in (1, 4.5, 5.5)]
    records = mapped(*({"external_id": f"crm-{n}", "updated_at": at} for n, at in enumerate(ahead)))
    assert [type(item).__name__ for item in records] == ["CustomerRecord", "CustomerRecord", "Skipped"]


def test_parse_time_names_the_setting_and_no_customer() -> None:
    with pytest.raises(RecordSkipped) as raised:
        parse_time("yesterday", "--as-of")
    assert (str(raised.value), raised.value.external_id) == ("'--as-of' is not an RFC 3339 time", "")


def test_skipped_records_as_json_carry_the_external_id_only_when_known() -> None:
    log = SkippedLog()
    log.add(Skipped(2, "no usable external id in 'external_id'", unreadable=False))
    log.add(Skipped(3, "'name' is empty", "crm-1"))
    assert log.to_json() == [
        {"line": 2, "reason": "no usable external id in 'external_id'"},
        {"line": 3, "reason": "'name' is empty", "external_id": "crm-1"},
    ]
    assert StandardMapping().source == "standard"


def test_field_digests_leave_absent_fields_zero() -> None:
    digests = field_digests({"name": "Acme"})
    assert len(digests) == 3 * DIGEST_BYTES
    assert digests[DIGEST_BYTES:] == bytes(2 * DIGEST_BYTES)
    assert digests[:DIGEST_BYTES] != bytes(DIGEST_BYTES)
