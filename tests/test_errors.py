"""The one error shape, and what happens to an error nobody foresaw: answered, logged, counted."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from crmsync.core.logs import JsonFormatter
from crmsync.core.settings import Settings
from crmsync.web import create_app
from tests.support import STANDARD_ENV, served


def unexpected_errors(base_url: str, endpoint: str) -> float:
    text = requests.get(f"{base_url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "crmsync_unexpected_errors_total" and sample.labels["endpoint"] == endpoint
    )


def test_each_endpoints_unexpected_errors_are_exported_from_zero(settings: Settings, redis: Redis) -> None:
    with served(create_app(settings, environ=STANDARD_ENV)) as base_url:
        text = requests.get(f"{base_url}/metrics", timeout=5).text
    for endpoint in ("receive.receive_webhook", "receive.receive_standard_alias", "unknown"):
        assert f'crmsync_unexpected_errors_total{{endpoint="{endpoint}"}} 0.0' in text, endpoint


def test_an_unforeseen_error_is_answered_as_json_logged_with_its_traceback_and_counted(
    settings: Settings, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, environ=STANDARD_ENV)

    @app.post("/webhooks/broken")
    def broken_view() -> str:
        raise RuntimeError("customer Jane Doe")  # a bug, whose message may hold personal data

    with served(app) as base_url:
        before = unexpected_errors(base_url, "broken_view")
        with caplog.at_level(logging.ERROR):
            response = requests.post(f"{base_url}/webhooks/broken", timeout=5)
        after = unexpected_errors(base_url, "broken_view")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "The server failed to handle the request.",
    }
    assert after == before + 1
    (record,) = [record for record in caplog.records if getattr(record, "event", "") == "unhandled_error"]
    line = json.loads(JsonFormatter().format(record))
    assert line["exc_type"] == "RuntimeError"
    assert line["path"] == "/webhooks/broken"
    assert any(frame.endswith("in broken_view") for frame in line["traceback"])
    assert "Jane" not in json.dumps(line)
