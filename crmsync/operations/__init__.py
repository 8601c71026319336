"""What operators do and see, used by both the CLI and the dashboard: failed jobs (list, replay,
discard), the erasure audit trail's views, and the activity snapshot.

Layer: above the receiving (webhooks) and applying (jobs) sides, below the web app and the CLI.
"""

from __future__ import annotations

from .failed_jobs import FailedJobs, MissingReason
from .time_filters import FailureFilter, parse_moment
from .views import ActionResult, FailedJob, FailedPage, ReplayedJob

__all__ = [
    "FailedJobs",
    "MissingReason",
    "FailureFilter",
    "parse_moment",
    "FailedJob",
    "FailedPage",
    "ActionResult",
    "ReplayedJob",
]
