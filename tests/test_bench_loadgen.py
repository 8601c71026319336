"""The Python load generator (bench/loadgen.py, used where `wrk` is missing) reads every line
bench.ingest writes: a batched CRM request as wrk's script does, a signed single event as the
contract's delivery."""

from __future__ import annotations

from pathlib import Path

from bench.ingest import HUBSPOT, SALESFORCE, _batch_lines, _batch_request, _single_lines
from bench.loadgen import prepared_request


def test_a_batched_requests_line_gives_back_its_path_headers_and_body(tmp_path: Path) -> None:
    for label, first_bytes in ((HUBSPOT, b'[{"eventId":'), (SALESFORCE, b"<?xml")):
        path = tmp_path / "batch.txt"
        _batch_lines(path, label, 8000, 1, None, "t")
        target, headers, body = _batch_request(label, 8000, "t0")
        sent_target, sent_headers, sent_body = prepared_request(path.read_text().splitlines()[0])
        # Built again here, a request differs from the written one only in its times (signature,
        # timestamps), of the same width.
        assert sent_target == target
        assert sent_headers.keys() == headers.keys()
        assert sent_body.startswith(first_bytes) and len(sent_body) == len(body)


def test_a_single_events_line_posts_to_the_contracts_path(tmp_path: Path) -> None:
    path = tmp_path / "single.txt"
    _single_lines(path, "single", 8000, 1, None, "t")
    target, headers, body = prepared_request(path.read_text().splitlines()[0])
    assert target == "/webhooks/crm"
    assert headers["webhook-signature"].startswith("v1,") and body.startswith(b"{")
