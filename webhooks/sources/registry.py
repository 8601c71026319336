"""The one list of webhook sources. Everything that concerns every source iterates SOURCES: the
settings the web reads, the routes (`POST /webhooks/<name>`), the mappings file's tables, `crmsync
sources`, send-sample and `crmsync dev`, import/reconcile `--source`, the docs' table.

Adding a CRM is its module (see kind.py for what it offers) and one line here: docs/crm-sources.md,
"Add a CRM". The CRMs declared in the mappings file (`[sources.NAME]`, configured.py) are the
*declared* kind: one source per declaration, built at start-up, no code of their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from crmsync.core.settings import SettingsError

from . import configured, hubspot, pipedrive, salesforce, standard
from .items import SourceBatch
from .kind import Source, SourceKind

if TYPE_CHECKING:
    from ..mappings import Mappings

__all__ = [
    "SOURCES",
    "NAMES",
    "RESERVED_NAMES",
    "STANDARD",
    "DECLARED",
    "kind_named",
    "from_env",
    "build_sources",
    "no_source_enabled",
    "read_payload",
    "sources_sharing_ids",
]

SOURCES: tuple[SourceKind[Any, Any], ...] = (
    standard.KIND,
    hubspot.KIND,
    salesforce.KIND,
    pipedrive.KIND,
)
# The CRMs declared in the mappings file, without code: one source per [sources.NAME].
DECLARED = configured.KIND

NAMES = tuple(kind.name for kind in SOURCES)
STANDARD = standard.NAME
# Names a declared source cannot take: the paths the registry's sources answer at.
RESERVED_NAMES = (*NAMES, standard.ALIAS)
_BY_NAME = {kind.name: kind for kind in SOURCES}


def kind_named(name: str) -> SourceKind[Any, Any]:
    """The source kind called `name`; ValueError lists the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}: expected one of {', '.join(NAMES)}") from None


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings of each source `environ` (os.environ by default) enables, by name; SettingsError
    names a malformed setting or one set without its pair."""
    env = os.environ if environ is None else environ
    enabled = {}
    for kind in SOURCES:
        settings = kind.settings_from_env(env)
        if settings is not None:
            enabled[kind.name] = settings
    return enabled


def build_sources(
    enabled: Mapping[str, Any], mappings: Mappings, environ: Mapping[str, str] | None = None
) -> dict[str, Source]:
    """The sources the web serves, by name: each enabled one (`from_env`) with its mapping, and every
    source declared in the mappings file, its secrets read from `environ` (MappingError if unset).
    A source left out answers 404; SettingsError when there is none at all."""
    env = os.environ if environ is None else environ
    sources: dict[str, Source] = {**DECLARED.build_all(mappings.sources, env)}
    for kind in SOURCES:
        if kind.name in enabled:
            sources[kind.name] = kind.build(enabled[kind.name], mappings.of(kind.name))
    if not sources:
        raise SettingsError(no_source_enabled(mappings.path))
    return sources


def no_source_enabled(mappings_file: str = "") -> str:
    """The web's start-up error when no source has its settings, naming what enables each."""
    options = [" and ".join(kind.enabled_by) for kind in SOURCES]
    declared = f"{mappings_file} declares no [sources.NAME]" if mappings_file else "no mappings file"
    return (
        f"no webhook source is enabled: set {', '.join(options[:-1])}, or {options[-1]}; "
        f"or declare a [sources.NAME] in CRMSYNC_MAPPINGS ({declared})"
    )


def read_payload(name: str, body: bytes, mappings: Mappings) -> SourceBatch:
    """Map a saved payload of source `name` without authenticating it (`crmsync mappings preview`)."""
    if name in mappings.sources:
        return DECLARED.read_payload(body, mappings.sources[name])
    return kind_named(name).read_payload(body, mappings.of(name))


def sources_sharing_ids(enabled: Iterable[str], mappings: Mappings) -> list[str]:
    """Of the `enabled` sources, those whose external ids share a prefix (most often: none), when two
    or more do: the same id in two CRMs (HubSpot company 5150, Pipedrive organization 5150) would then
    be one customer. `external_id_prefix` on each source's mapping keeps them apart. crmsync's own
    contract is left out: its sender chooses its ids."""
    prefixes = {
        kind.name: kind.id_prefixes(mappings.of(kind.name))
        for kind in SOURCES
        if kind.name in enabled and kind.name != STANDARD
    }
    return [
        name
        for name, own in prefixes.items()
        if any(own & others for other, others in prefixes.items() if other != name)
    ]
