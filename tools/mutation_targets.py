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

EQUIVALENT: dict[str, dict[tuple[str, str], str]] = {}
