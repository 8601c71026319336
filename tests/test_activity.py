"""The overview's chart: webhooks accepted and job attempts applied, stale, retried and failed, counted
per minute in Redis by the intake and the workers, drawn as server-rendered SVG."""

from __future__ import annotations

import re
from dataclasses import replace

import requests
from redis import Redis

from crmsync.core.counters import current_minute
from crmsync.core.keys import MINUTE_COUNTER_TTL, job_minute_counter_key
from crmsync.core.settings import Settings
from crmsync.operations.activity import ACTIVITY_MINUTES
from crmsync.web.dashboard.chart import line_chart
from sandbox.server import RunningSandbox
from tests.support import AUTH, Deliver, event, fail, set_faults, work


def test_every_outcome_is_counted_per_minute_and_read_back_as_series(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    started = current_minute()
    deliver(event("created", "crm-1", "2026-11-22T10:00:00Z", name="A"))
    deliver(event("updated", "crm-1", "2026-11-22T11:00:00Z", labels=["gold"]))
    deliver(event("updated", "crm-1", "2026-11-22T09:00:00Z", description="late"))  # stale
    work(settings, redis)
    fail(deliver, settings, redis, event("created", "crm-2", name="B"))
    set_faults(sandbox, unavailable_rate=1.0)
    deliver(event("created", "crm-3", name="C"))
    work(replace(settings, retry_schedule=(600,)), redis)  # a 503: retried in 10 minutes

    activity = requests.get(f"{dashboard}/api/activity", auth=AUTH, timeout=10).json()
    totals = {name: sum(counts) for name, counts in activity["series"].items()}
    assert totals == {"accepted": 5, "applied": 2, "stale": 1, "retried": 1, "failed": 1}
    assert {len(counts) for counts in activity["series"].values()} == {ACTIVITY_MINUTES}
    # The test may straddle a minute: the window ends at the minute the request was served in.
    last_minute = activity["first_minute"] + ACTIVITY_MINUTES - 1
    assert started <= last_minute <= current_minute()
    # Each minute's counter expires on its own, after the chart's window has passed it.
    minutes = range(started, current_minute() + 1)
    ttls = [redis.ttl(job_minute_counter_key("succeeded", minute)) for minute in minutes]
    assert any(ACTIVITY_MINUTES * 60 < ttl <= MINUTE_COUNTER_TTL for ttl in ttls)


def test_the_overview_draws_each_series_as_an_svg_polyline_without_script(
    dashboard: str, redis: Redis
) -> None:
    minute = current_minute()
    redis.set(job_minute_counter_key("failed", minute - 30), 7)
    page = requests.get(f"{dashboard}/", auth=AUTH, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "<script" not in page.text
    lines = dict(
        re.findall(r'<polyline class="series series-(\w+)" data-series="\w+" data-total="(\d+)"', page.text)
    )
    assert lines == {"accepted": "0", "applied": "0", "stale": "0", "retried": "0", "failed": "7"}


def test_the_chart_scales_to_a_round_maximum_and_labels_the_minutes() -> None:
    first = 29_435_000  # 2025-12-18 23:20 UTC, as unix minutes
    chart = line_chart({"accepted": ("accepted", [0, 3, 7] + [0] * 117)}, first)
    (line,) = chart.lines
    points = [tuple(map(float, point.split(","))) for point in line.points.split()]
    assert len(points) == 120 and (line.total, line.peak) == (10, 7)
    assert [tick.label for tick in chart.y_ticks] == ["0", "2", "4", "6", "8", "10"]
    # The peak of 7 sits at 70 % of the height between the top and bottom of the plot.
    assert points[2][1] == round(chart.bottom - 0.7 * (chart.bottom - chart.top), 1)
    assert points[0][0] == chart.left and points[-1][0] == chart.right
    assert [tick.label for tick in chart.x_ticks][:2] == ["23:30", "23:45"]  # every quarter hour
