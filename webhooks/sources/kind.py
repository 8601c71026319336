"""What a source is to the rest of crmsync. Each source module offers one *kind* (listed once, in
registry.py): its settings and their validation, its table in the mappings file, its sample request,
and `build()`, which makes the *source* serving `POST /webhooks/<name>`: it authenticates and reads a
request into a batch (items.py) and formats its own replies (JSON, or Salesforce's SOAP).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from .items import InboundRequest, SourceBatch

__all__ = [
    "EnvVar",
    "Reply",
    "Sample",
    "Acceptance",
    "Source",
    "SourceKind",
    "JsonReplies",
    "batch_summary",
    "JSON",
]

JSON = "application/json"

SettingsT = TypeVar("SettingsT")
MappingT = TypeVar("MappingT")


@dataclass(frozen=True)
class EnvVar:
    """A setting a source reads from the environment, described for `crmsync dev`, send-sample and
    app.json."""

    name: str
    description: str


class Reply(NamedTuple):
    """What a source answers: status, body and its content type (a tuple: made on every request)."""

    status: int
    body: bytes
    content_type: str = JSON


@dataclass(frozen=True)
class Sample:
    """A request as the CRM would send it (`crmsync send-sample`, `crmsync dev`)."""

    headers: dict[str, str]
    body: bytes
    # Added to the URL's query (Salesforce's token), unless the URL already carries it.
    query: dict[str, str] = field(default_factory=dict)


class Acceptance(Protocol):
    """How intake accepted one event (crmsync.core.queue's Accepted; a source never imports the queue)."""

    @property
    def is_new(self) -> bool: ...

    @property
    def job_id(self) -> str: ...


class Source(Protocol):
    """An enabled source, built from its settings and mapping: it serves `POST /webhooks/<name>`."""

    name: str
    # The content type a request must have (else 415, body unread); "" takes any.
    media_type: str
    # Whether a refused request is counted in the dashboard's last-hour figure of rejections.
    counts_refusals: bool

    def receive(self, request: InboundRequest) -> SourceBatch:
        """Authenticate `request` and read its body; a SourceError (items.py) carries the status."""
        ...

    def accepted(self, batch: SourceBatch, outcomes: Sequence[Acceptance]) -> Reply:
        """The answer once every event of `batch` is accepted."""
        ...

    def refused(self, status: int, reason: str, message: str, details: Mapping[str, Any]) -> Reply | None:
        """The answer refusing the whole request; None: the service's one JSON error shape."""
        ...

    def receipt(self, batch: SourceBatch, outcomes: Sequence[Acceptance]) -> tuple[str, dict[str, Any]]:
        """The log line of an accepted request: its message and fields (crmsync.core.logs.SAFE_FIELDS)."""
        ...


class SourceKind(Protocol[SettingsT, MappingT]):
    """One source module's offer to the registry."""

    @property
    def name(self) -> str:
        """Its path (`/webhooks/<name>`), its `--source` and its table in the mappings file."""
        ...

    @property
    def title(self) -> str: ...

    @property
    def env_vars(self) -> tuple[EnvVar, ...]:
        """What the source reads from the environment."""
        ...

    @property
    def enabled_by(self) -> tuple[str, ...]:
        """The settings that, set together, enable it."""
        ...

    @property
    def default_mapping(self) -> MappingT:
        """Its mapping when the mappings file has no table for it (None: it maps nothing)."""
        ...

    @property
    def sample_id(self) -> str:
        """The record id of its sample: each source's sample makes its own customer."""
        ...

    @property
    def sample_name(self) -> str: ...

    @property
    def version_fix(self) -> str:
        """What an operator changes when its records arrive without their version field (the
        dashboard and `crmsync sources ignored` show it next to the count)."""
        ...

    def settings_from_env(self, env: Mapping[str, str]) -> SettingsT | None:
        """Its settings, None when not enabled; SettingsError names a half-set or malformed one."""
        ...

    def load_mapping(self, table: Any, errors: list[str]) -> MappingT:
        """Its table of the mappings file, validated: a line per mistake is appended to `errors`."""
        ...

    def describe_mapping(self, mapping: MappingT) -> Any:
        """The mapping as plain data (`crmsync mappings show`)."""
        ...

    def mapping_lines(self, mapping: MappingT) -> list[str]:
        """The mapping as `crmsync mappings show` prints it (a heading, then one line per field)."""
        ...

    def id_prefixes(self, mapping: MappingT) -> set[str]:
        """The external-id prefixes the mapping puts on ids (sources sharing one may name one customer)."""
        ...

    def build(self, settings: SettingsT, mapping: MappingT) -> Source:
        """The source serving requests with these settings and this mapping."""
        ...

    def read_payload(self, body: bytes, mapping: MappingT) -> SourceBatch:
        """A saved body mapped without authenticating it (`crmsync mappings preview`)."""
        ...

    def dev_env(self) -> dict[str, str]:
        """Settings made up for one local run (`crmsync dev`) that enable the source."""
        ...

    def sample(self, env: Mapping[str, str], url: str, external_id: str, name: str) -> Sample:
        """A sample request creating customer `external_id` named `name`, authenticated with the
        settings in `env`; ValueError names a missing setting or an unusable id."""
        ...


def batch_summary(batch: SourceBatch, outcomes: Sequence[Acceptance]) -> dict[str, int]:
    """What became of a request's items: queued, duplicates, ignored, rejected."""
    queued = sum(outcome.is_new for outcome in outcomes)
    return {"queued": queued, "duplicates": len(outcomes) - queued, "ignored": len(batch.ignored),
            "rejected": len(batch.rejected)}  # fmt: skip


class JsonReplies:
    """The CRMs' replies: 200 with what became of the items (an invalid item is rejected alone, never
    answered 4xx: HubSpot would drop the batch), errors in the service's JSON shape."""

    media_type = ""
    counts_refusals = False
    name: str

    def accepted(self, batch: SourceBatch, outcomes: Sequence[Acceptance]) -> Reply:
        return Reply(200, json.dumps({"status": "accepted", **batch_summary(batch, outcomes)}).encode())

    def refused(self, status: int, reason: str, message: str, details: Mapping[str, Any]) -> Reply | None:
        return None

    def receipt(self, batch: SourceBatch, outcomes: Sequence[Acceptance]) -> tuple[str, dict[str, Any]]:
        return "webhook batch", {
            "event": "webhook_batch",
            "source": self.name,
            **batch_summary(batch, outcomes),
        }
