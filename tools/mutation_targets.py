"""Which modules `python -m tools.mutation` mutates, the tests that must catch each mutant, and the
mutants known to be equivalent (no test can tell them apart from the original), each with why.

An equivalent mutant is named by its line's text and its change, as the tool prints them, so that it
stays excluded when the lines around it move; the tool says when one is no longer generated.
"""

from __future__ import annotations

TARGETS: dict[str, list[str]] = {
    "webhooks/signature.py": ["tests/sources/test_standard.py"],
    "webhooks/schemas.py": ["tests/test_schemas.py"],
    "jobs/ordering.py": ["tests/test_ordering.py"],
    "jobs/retry.py": ["tests/test_retry.py"],
    "crmsync/core/errors.py": ["tests/test_sync_errors.py"],
    "crmsync/operations/reconcile_plan.py": ["tests/test_reconcile_plan.py"],
    "crmsync/operations/records.py": ["tests/test_reconcile_plan.py", "tests/test_export_mappings.py"],
    "crmsync/operations/exports.py": ["tests/test_exports.py"],
}

_FROZEN = "a frozen dataclass only refuses assignments, which the code never makes"
_NO_X = "also skipping 'X' changes nothing: no JSON value starts with it"
_DIGEST = "field digests are only ever compared with digests made by the same function"

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
        ("_Check = Callable[[Any], bool]", "drop statement"): "a type alias, read only by mypy",
        ("kind: _Check", "drop statement"): "an annotation, read only by mypy",
        ("if not rules:", "drop statement"): "a shortcut: all() of no rules is true; the lambda agrees",
        ("return kind", "drop statement"): "as above: without the shortcut the lambda checks the same",
        ('assert all(field.required for field in _ENVELOPE.fields.values()), "quick_load wants them all"',
         "drop statement"): "an import-time check of the module's own consistency: it holds",
        ('assert all(field.required for field in _ENVELOPE.fields.values()), "quick_load wants them all"',
         "'quick_load wants them all' -> 'XXquick_load wants them allXX'"): "the message of that check",
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
    "crmsync/operations/records.py": {
        ("DIGEST_BYTES = 8", "8 -> 9"): "any digest size works alike; 8 bytes is the memory budget",
        ("@dataclass(frozen=True)", "True -> False"): _FROZEN,
        ("@dataclass(frozen=True)", "True -> False (#2)"): _FROZEN,
        ("@dataclass(frozen=True)", "True -> False (#3)"): _FROZEN,
        ("...", "drop statement"): "a Protocol's body",
        ("...", "drop statement (#2)"): "a Protocol's body",
        ("if record.version is not None and record.version > latest:", "> -> >="): (
            "a version equal to now + the skew, to the microsecond, cannot be made in a test"
        ),
        ('text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))', "False -> True"): _DIGEST,
        ('text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))', "',' -> 'XX,XX'"): _DIGEST,
        ('text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))', "':' -> 'XX:XX'"): _DIGEST,
        ('return b"".join(parts)', "b'' -> b'XXXX'"): _DIGEST,
    },
    "crmsync/operations/exports.py": {
        ("MAX_RECORD_CHARS = 1_000_000", "1000000 -> 1000001"): "a bound on memory, not on behaviour",
        ("_CHUNK_CHARS = 65_536", "65536 -> 65537"): "any buffer size reads alike (a test uses 7)",
        ("@dataclass(frozen=True)", "True -> False"): _FROZEN,
        ("head = stream.read(4096).lstrip()", "4096 -> 4097"): "any sniffing length past the blank lines",
        ("yield ExportLine(start, record=dict(zip(names, row, strict=True)))", "True -> False"): (
            "the row's length was checked against the header's just before"
        ),
        ('buffer, line, at_eof = "", 1, False', "False -> True"): "the first fill() sets it before any read",
        (r'stripped = buffer.lstrip(" \t\r\n" + chars)', r"' \t\r\n' -> 'XX \t\r\nXX'"): _NO_X,
        ('if skip("") != "[":', "'' -> 'XXXX'"): _NO_X,
        ('next_char = skip("")', "'' -> 'XXXX'"): _NO_X,
        (
            "if len(buffer) > MAX_RECORD_CHARS or not fill():",
            "> -> >=",
        ): "a bound on memory, one character apart",
        (r'line += buffer.count("\n", 0, end)', "0 -> 1"): (
            "the buffer starts with the record's first character, never a newline (skip() ran)"
        ),
    },
}  # fmt: skip
