"""JSON log lines on stdout, one object per line (Heroku's log drain convention); plain lines for a
person reading a terminal when LOG_FORMAT=plain (`crmsync dev` sets it).

Only the fields named in SAFE_FIELDS are copied from a record's `extra`: identifiers, counts, outcomes and
timings. Names, descriptions, labels, signatures and secrets have no field here, so a careless
`extra={...}` cannot leak them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime

__all__ = ["configure", "line_formatter", "plain_logs", "SAFE_FIELDS", "ACCESS_LOG_FIELDS"]

# A WSGI environ key: where a view leaves the fields its request's access log line should carry, so
# that a request is one line, not an application line and an access line (crmsync/server/access_log.py
# sets it up; without it the view logs its own line).
ACCESS_LOG_FIELDS = "crmsync.access_log_fields"

SAFE_FIELDS = (
    "event",
    "webhook_id",
    "job_id",
    "type",
    "external_id",
    "outcome",
    "reason",
    "failure_class",
    "status",
    "duration_ms",
    "attempt",
    "retry_in_s",
    "method",
    "path",
    "remote",
    "sources",  # names of CRM sources (hubspot, salesforce, pipedrive)
    # A worker dyno's start: how many workers, in how many processes, chosen by what.
    "workers",
    "processes",
    "chosen_by",
    "memory_limit_mb",
    "source",  # the name of one CRM source
    # A CRM request's counts: its items queued, duplicate, ignored and rejected; the rejected ones by
    # reason (`{reason: count}`) and the first few of their ids (`[{id name: id}]`, never a value).
    "queued",
    "duplicates",
    "ignored",
    "rejected",
    "reasons",
    "first",
    "exit_code",  # of a worker dyno's process
    "pid",
)


# Third-party loggers whose messages carry request or response bodies.
BODY_LOGGERS = ("gql",)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object with a fixed set of allowed fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in SAFE_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The class and where it was raised, never its message: messages of third-party
            # exceptions may echo request data.
            line["exc_type"] = record.exc_info[0].__name__
            line["traceback"] = [
                f"{frame.filename}:{frame.lineno} in {frame.name}"
                for frame in traceback.extract_tb(record.exc_info[2])
            ]
        return json.dumps(line, default=str)


class PlainFormatter(logging.Formatter):
    """One readable line: time, level, logger, message and the same safe fields as `key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        fields = " ".join(
            f"{name}={record.__dict__[name]}" for name in SAFE_FIELDS if record.__dict__.get(name) is not None
        )
        line = f"{at} {record.levelname.lower():<7} {record.name}: {record.getMessage()} {fields}".rstrip()
        if record.exc_info and record.exc_info[0] is not None:
            line += f" ({record.exc_info[0].__name__})"  # the class only, as in the JSON lines
        return line


def plain_logs() -> bool:
    """Whether this process logs plain lines (LOG_FORMAT=plain) rather than JSON."""
    return os.environ.get("LOG_FORMAT", "json").strip().lower() == "plain"


def line_formatter() -> logging.Formatter:
    """The formatter of every log line of this process: JSON, or plain with LOG_FORMAT=plain."""
    return PlainFormatter() if plain_logs() else JsonFormatter()


def configure(level: str = "INFO") -> None:
    """Send every logger's records to stdout, one line each (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(line_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in BODY_LOGGERS:
        # They log whole request and response bodies (customer data) at DEBUG/INFO: never let them.
        logging.getLogger(name).setLevel(logging.WARNING)
