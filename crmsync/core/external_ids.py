"""What an external id must be to ever reach the platform: checked once, at the edge.

An id the platform can never store would be accepted, queued and then fail forever as a
`payload_error`; so every way in (a webhook of any source, `crmsync import`, `crmsync reconcile`)
refuses it at once with the reason `external_id_problem` gives. The platform publishes no length
limit for `externalId`: 255 characters is far above any CRM's ids (Salesforce 18, HubSpot and
Pipedrive at most 20 digits, plus a configured prefix) and within what any store indexes.
"""

from __future__ import annotations

import re

__all__ = ["MAX_EXTERNAL_ID_LENGTH", "external_id_problem"]

MAX_EXTERNAL_ID_LENGTH = 255
# C0 controls, DEL and C1 controls: they never belong in an id and could drive an operator's terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def external_id_problem(external_id: str) -> str | None:
    """Why `external_id` can never be a platform customer's external id; None when it can be.
    The reason names no part of the id."""
    if not external_id.strip():
        return "the external id is blank"
    if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        return f"the external id is longer than {MAX_EXTERNAL_ID_LENGTH} characters"
    if _CONTROL.search(external_id):
        return "the external id holds control characters"
    return None
