"""Each failed attempt of a job, kept on the job (`meta`) for operators: when, why, in what words."""

from __future__ import annotations

from datetime import UTC, datetime

from rq.job import Job

from crmsync.core.queue import job_summary

__all__ = ["add_attempt"]


def add_attempt(job: Job, failure_class: str, message: str) -> int:
    """Append one failed attempt to `job.meta` (not saved yet); return how many attempts it has now.

    The message must already be free of personal data (redacted, or an exception's type only). The
    first failure also stamps the event's identifiers on `meta` (a queued job has none, to stay
    small), which is where operators' views of failed jobs read them.
    """
    job.meta.update(job_summary(job))  # meta's own identifiers, once stamped, are kept as they are
    attempts = job.meta.setdefault("attempts", [])
    attempts.append({"at": datetime.now(UTC).isoformat(timespec="seconds"), "class": failure_class,
                     "message": message})  # fmt: skip
    job.meta["failure_class"] = failure_class
    return len(attempts)
