"""GDPR erasure, end to end. An erasure is a legal obligation with a deadline; this folder is the
whole of what crmsync does for one, in the order it happens:

1. **Intake** (webhooks/intake.py): a `customer.erasure_requested` delivery is queued like any event,
   and right then `erasure_accepted` (below) records its receipt in the **audit trail**
   (`audit.py`) and **scrubs** the personal data of the customer's queued jobs (`scrub.py`), before
   any queued update can run.
2. **The job** (jobs/tasks.py, `erase_customer_data`) runs under the customer's lock and takes the
   **steps**: anonymise each purchase on the personal-data API, each one once even across retries
   (`purchases.py`); apply ERASURE_CUSTOMER_ACTION to the customer record (`customer_record.py`);
   scrub again the jobs accepted, finished or running since the intake. The API calls are passed in
   by the job, so this package knows nothing of the GraphQL client.
3. **The audit trail** records every step (received, each purchase, the customer, scrubbed,
   completed or failed) without personal data; operators read it with `crmsync erasures` and on the
   dashboard (crmsync.operations). A failure that ends the job's retries is audited as failed, by
   the job itself or, for a timeout or a lost worker, by the worker's failure handler.

Layer: above crmsync.core, below the receiving (webhooks) and applying (jobs) sides.
"""

from __future__ import annotations

from redis import Redis

from crmsync.core.events import Event
from crmsync.core.settings import Settings

from .audit import ErasureAudit
from .scrub import scrub_customer_jobs

__all__ = ["erasure_accepted"]


def erasure_accepted(redis: Redis, settings: Settings, erasure: Event) -> None:
    """Audit the receipt of a newly accepted erasure and scrub the customer's queued jobs now."""
    audit = ErasureAudit.of(redis, settings)
    audit.received(erasure.webhook_id, erasure.external_id, list(erasure.data["purchase_ids"]))
    report = scrub_customer_jobs(redis, erasure)
    if report.scrubbed:
        audit.scrubbed(erasure.webhook_id, erasure.external_id, report.scrubbed)
