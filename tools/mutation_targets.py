"""Which modules `python -m tools.mutation` mutates, the tests that must catch each mutant, and the
mutants known to be equivalent (no test can tell them apart from the original), each with why.

An equivalent mutant is named by its line's text and its change, as the tool prints them, so that it
stays excluded when the lines around it move; the tool says when one is no longer generated.
"""

from __future__ import annotations

TARGETS: dict[str, list[str]] = {
    "webhooks/signature.py": ["tests/test_signature.py"],
    "webhooks/schemas.py": ["tests/test_schemas.py"],
    "jobs/ordering.py": ["tests/test_ordering.py"],
    "jobs/retry.py": ["tests/test_retry.py"],
    "crmsync/core/errors.py": ["tests/test_sync_errors.py"],
}

_FILTER = 'if version != "v1" or not value:'
_HELD = "if held_for > 0 and time.monotonic() + held_for > deadline:"

EQUIVALENT: dict[str, dict[tuple[str, str], str]] = {
    "webhooks/signature.py": {
        ('reason = "invalid_signature"', "drop statement (#2)"):
            "InvalidSignature inherits the same reason from SignatureError",
        (_FILTER, "or -> and"):
            "the filter only skips entries early: an entry not of the form `v1,<value>` can never equal "
            "an expected `v1,<base64>` signature, so the comparison rejects it anyway",
        (_FILTER, "drop statement"): "as above: the comparison rejects what the filter skips",
        ("continue", "drop statement"): "as above: the comparison rejects what the filter skips",
    },
    "webhooks/schemas.py": {
        ("unknown = RAISE", "drop statement"): "RAISE is marshmallow's default for unknown fields",
        ('assert tuple(DATA_SCHEMAS) == EVENT_TYPES, "one data schema per event type"', "drop statement"):
            "an import-time check of the module's own consistency: it holds, so dropping it changes nothing",
        (
            'assert tuple(DATA_SCHEMAS) == EVENT_TYPES, "one data schema per event type"',
            "'one data schema per event type' -> 'XXone data schema per event typeXX'",
        ): "the message of that check, which never fails",
    },
    "jobs/ordering.py": {
        ("erased_ledger_ttl_seconds: int = 0,", "0 -> 1"):
            "only used as max(ledger_ttl_seconds, it), and ledger_ttl_seconds is at least 1",
        ("hold = self._hold_ms > 0 and unknown", "0 -> 1"):
            "differs only for a hold of exactly 1 ms; holds are whole seconds (0 or >= 1000 ms)",
        ("if job is not None and job.timeout and job.timeout > 0:", "> -> >="):
            "`job.timeout and` already excludes a timeout of 0",
        ("token = secrets.token_hex(16)", "16 -> 17"):
            "any unguessable token works: its length is not observable",
        (_HELD, "> -> >="):
            "held_for is 0 only for a key with under 1 ms left; both paths then wait, as for a working lock",
        (_HELD, "> -> >= (#2)"): "equality of two float clock readings: no run can tell them apart",
        ("if time.monotonic() >= deadline:", ">= -> >"): "equality of two float clock readings",
    },
}  # fmt: skip
