"""One module per CRM: each verifies a request, parses its body and maps it to crmsync events.

A source never reaches into the queue or the worker: it hands a `SourceBatch` (items.py) to intake.
`standard` is crmsync's own contract; `hubspot`, `salesforce` and `pipedrive` are the CRMs' native
webhooks, mapped by `webhooks.mappings`; `configured` serves each CRM declared under [sources.NAME]
in the mappings file (webhooks/declarations.py), without code. A new CRM is one module here with
`authenticate(request)` and `read(body) -> SourceBatch`, one entry in `crm_sources` and
`read_payload`, and its tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from crmsync.core.settings import Settings

from ..mappings import Mappings
from . import hubspot, pipedrive, salesforce
from .configured import ConfiguredSource, secrets_from_env
from .items import InboundRequest, SourceBatch
from .standard import StandardSource

__all__ = [
    "CrmSource",
    "crm_sources",
    "standard_source",
    "read_payload",
    "CRM_SOURCES",
    "sources_sharing_ids",
]

CRM_SOURCES = (hubspot.NAME, salesforce.NAME, pipedrive.NAME)


class CrmSource(Protocol):
    """A CRM's native webhooks: authenticate a request, then read its body as a batch."""

    name: str
    soap: bool  # answers are SOAP (Salesforce), else JSON

    def authenticate(self, request: InboundRequest) -> None: ...

    def read(self, body: bytes) -> SourceBatch: ...


def crm_sources(
    settings: Settings, mappings: Mappings, environ: Mapping[str, str] | None = None
) -> dict[str, CrmSource]:
    """The CRM sources these settings enable, by name (a source left out answers 404), and every
    source declared in the mappings file, its secrets read from `environ` (MappingError if unset)."""
    env = os.environ if environ is None else environ
    sources: dict[str, CrmSource] = {
        name: ConfiguredSource(declaration, secrets_from_env(declaration, env))
        for name, declaration in mappings.sources.items()
    }
    if hubspot.NAME in settings.sources:
        sources[hubspot.NAME] = hubspot.HubSpotSource(
            settings.hubspot_client_secret,
            mappings.hubspot,
            webhook_url=settings.hubspot_webhook_url,
            allow_legacy=settings.hubspot_allow_legacy_signatures,
        )
    if salesforce.NAME in settings.sources:
        sources[salesforce.NAME] = salesforce.SalesforceSource(
            settings.salesforce_webhook_token, settings.salesforce_organization_ids, mappings.salesforce
        )
    if pipedrive.NAME in settings.sources:
        sources[pipedrive.NAME] = pipedrive.PipedriveSource(
            settings.pipedrive_webhook_user, settings.pipedrive_webhook_password, mappings.pipedrive
        )
    return sources


def standard_source(settings: Settings) -> StandardSource | None:
    """crmsync's own contract, when WEBHOOK_SECRET is set."""
    if "crm" not in settings.sources:
        return None
    return StandardSource(settings.webhook_secrets, settings.tolerance_seconds)


def read_payload(source: str, body: bytes, mappings: Mappings) -> SourceBatch:
    """Map a saved payload of `source` without authenticating it (`crmsync mappings preview`)."""
    if source == hubspot.NAME:
        return hubspot.read_events(body, mappings.hubspot)
    if source == salesforce.NAME:
        return salesforce.read_message(salesforce.parse_message(body), mappings.salesforce)
    if source == pipedrive.NAME:
        return pipedrive.read_event(body, mappings.pipedrive)
    if source in mappings.sources:
        return ConfiguredSource(mappings.sources[source], ()).read(body)
    raise ValueError(f"unknown source {source!r}: expected one of {', '.join(CRM_SOURCES)}")


def sources_sharing_ids(settings: Settings, mappings: Mappings) -> list[str]:
    """The enabled CRM sources whose external ids share a prefix (most often: none), when two or more
    do: the same id in two CRMs (HubSpot company 5150, Pipedrive organization 5150) would then be one
    customer. `external_id_prefix` on each source's mapping keeps them apart."""
    prefixes = {
        hubspot.NAME: {mappings.hubspot.external_id_prefix},
        salesforce.NAME: {mapping.external_id_prefix for mapping in mappings.salesforce.values()},
        pipedrive.NAME: {mapping.external_id_prefix for mapping in mappings.pipedrive.values()},
    }
    enabled = [name for name in CRM_SOURCES if name in settings.sources]
    sharing = {
        name for name in enabled for other in enabled if other != name and prefixes[name] & prefixes[other]
    }
    return [name for name in enabled if name in sharing]
