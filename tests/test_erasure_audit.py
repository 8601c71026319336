"""The erasure audit trail: statuses, overdue erasures, retention, and the counts for /metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from crmsync.core.keys import ERASURE_AUDIT_KEY
from crmsync.core.settings import Settings, SettingsError
from crmsync.erasure.audit import ErasureAudit, erasure_summary, list_erasures

NOW = datetime.now(UTC)


def test_an_erasure_is_pending_until_completed(redis: Redis) -> None:
    audit = ErasureAudit(redis, retention_days=400)
    audit.received("msg_1", "crm-1", [11, 12])
    audit.purchase("msg_1", "crm-1", 11, "erased")
    assert [(r.status, r.purchases) for r in list_erasures(redis, 30)] == [("pending", {11: "erased"})]

    audit.purchase("msg_1", "crm-1", 12, "erased")
    audit.completed("msg_1", "crm-1")

    (record,) = list_erasures(redis, 30)
    assert (record.status, record.purchase_ids, record.external_id) == ("completed", [11, 12], "crm-1")
    assert record.completed_at is not None and record.completed_at >= record.received_at


def test_a_failed_erasure_replayed_to_completion_counts_as_completed(redis: Redis) -> None:
    audit = ErasureAudit(redis, retention_days=400)
    audit.received("msg_1", "crm-1", [11])
    audit.failed("msg_1", "crm-1", "graphql_error", "Purchase 11 not found")
    assert list_erasures(redis, 30)[0].failure == "graphql_error: Purchase 11 not found"

    audit.completed("msg_1", "crm-1")

    assert (list_erasures(redis, 30)[0].status, list_erasures(redis, 30)[0].failure) == ("completed", "")


def old_entry(redis: Redis, days_ago: int, webhook_id: str, step: str = "received") -> None:
    """Write an entry dated `days_ago` (stream ids only grow: write the oldest first)."""
    millis = int((NOW - timedelta(days=days_ago)).timestamp() * 1000)
    redis.xadd(
        ERASURE_AUDIT_KEY, {"erasure": webhook_id, "external_id": "crm-1", "step": step}, id=f"{millis}-0"
    )


def test_an_erasure_not_completed_by_its_deadline_is_overdue(redis: Redis) -> None:
    old_entry(redis, 40, "msg_done")
    old_entry(redis, 35, "msg_done", step="completed")
    old_entry(redis, 31, "msg_late")
    old_entry(redis, 29, "msg_in_time")

    overdue = {record.webhook_id: record.overdue(NOW) for record in list_erasures(redis, 30)}

    assert overdue == {"msg_late": True, "msg_in_time": False, "msg_done": False}


def test_the_summary_counts_each_status_and_the_overdue_ones(redis: Redis) -> None:
    old_entry(redis, 31, "msg_late")
    old_entry(redis, 5, "msg_failed")
    old_entry(redis, 4, "msg_done")
    old_entry(redis, 3, "msg_done", step="completed")
    old_entry(redis, 2, "msg_failed", step="failed")

    assert erasure_summary(redis, 30, NOW) == {"pending": 1, "completed": 1, "failed": 1, "overdue": 1}


def test_entries_older_than_the_retention_are_trimmed_on_the_next_write(redis: Redis) -> None:
    old_entry(redis, 401, "msg_ancient")
    old_entry(redis, 399, "msg_kept")

    ErasureAudit(redis, retention_days=400).received("msg_new", "crm-1", [1])

    assert {record.webhook_id for record in list_erasures(redis, 30)} == {"msg_kept", "msg_new"}


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"ERASURE_CUSTOMER_ACTION": "purge"},
            "ERASURE_CUSTOMER_ACTION must be one of none, anonymize, delete",
        ),
        ({"ERASURE_DEADLINE_DAYS": "0"}, "ERASURE_DEADLINE_DAYS must be positive"),
        ({"ERASURE_AUDIT_RETENTION_DAYS": "20"}, "ERASURE_AUDIT_RETENTION_DAYS must be longer"),
    ],
    ids=["unknown-action", "zero-deadline", "retention-shorter-than-deadline"],
)
def test_a_malformed_erasure_setting_is_named(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        Settings.from_env(env)


def test_erasure_settings_defaults_and_values() -> None:
    assert (Settings.from_env({}).erasure_customer_action, Settings.from_env({}).erasure_deadline_days) == (
        "none",
        30,
    )
    settings = Settings.from_env({"ERASURE_CUSTOMER_ACTION": "Delete", "ERASURE_AUDIT_RETENTION_DAYS": "90"})
    assert (settings.erasure_customer_action, settings.erasure_audit_retention_days) == ("delete", 90)


def test_the_erasures_command_lists_each_erasure_and_flags_the_overdue_ones(
    redis: Redis, redis_url: str
) -> None:
    from click.testing import CliRunner

    from crmsync.cli import main

    old_entry(redis, 31, "msg_late")
    ErasureAudit(redis, retention_days=400).received("msg_new", "crm-2", [7])

    everything = CliRunner().invoke(main, ["erasures"], env={"REDIS_URL": redis_url})
    overdue = CliRunner().invoke(
        main, ["erasures", "--status", "overdue", "--json"], env={"REDIS_URL": redis_url}
    )

    assert everything.exit_code == 0, everything.output
    lines = everything.output.splitlines()
    assert [("msg_new" in lines[0], "PENDING OVERDUE" in lines[1])] == [(True, True)]
    assert [json.loads(line)["webhook_id"] for line in overdue.output.splitlines()] == ["msg_late"]
