"""`crmsync mappings show | preview` and `crmsync sources [ignored | rejected]`: the CRM sources' field
mappings, which this environment enables, what they did not map and what they ordered without a
version, from a shell (docs/crm-sources.md)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from crmsync.cli.settings import command_settings
from crmsync.core.display import printable
from crmsync.core.redis_conn import connect
from crmsync.core.settings import SettingsError
from crmsync.operations.source_items import (
    ignored_counts,
    rejected_items,
    rejected_type_counts,
    version_fallbacks,
)
from webhooks.mappings import MappingError, Mappings, mappings_from_env
from webhooks.sources.items import SourceError
from webhooks.sources.registry import DECLARED, NAMES, SOURCES, read_payload

__all__ = ["mappings_command", "sources_command"]


def _mappings() -> Mappings:
    try:
        return mappings_from_env()
    except MappingError as exc:
        click.echo(f"crmsync: {exc}", err=True)
        sys.exit(2)


@click.group("mappings")
def mappings_command() -> None:
    """The CRM sources' field mappings (CRMSYNC_MAPPINGS, else the defaults)."""


@mappings_command.command("show")
@click.option("--json", "as_json", is_flag=True, help="As one JSON document.")
def show_command(as_json: bool) -> None:
    """Print the mappings in force, defaults included."""
    mappings = _mappings()
    described = mappings.describe()
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    click.echo(f"mappings file: {described['file']}")
    for kind in SOURCES:
        for line in kind.mapping_lines(mappings.of(kind.name)):
            click.echo(line)
    for name, declared in described["sources"].items():
        preset = f" (preset {declared['preset']})" if declared["preset"] else ""
        external_id = declared["items"]["id"] + _prefix(declared["external_id_prefix"])
        click.echo(f"\n{name}: POST /webhooks/{name}, {declared['auth']['type']} auth{preset}, "
                   f"external id = {external_id}")  # fmt: skip
        for item_type, action in declared["types"].items():
            click.echo(f"  {item_type:<24} -> {action}")
        for field, names in declared["fields"].items():
            click.echo(f"  {field:<12} <- {', '.join(names)}")


def _prefix(prefix: str) -> str:
    return f' (prefixed "{prefix}")' if prefix else ""


@mappings_command.command("preview")
@click.argument("source")
@click.argument("payload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def preview_command(source: str, payload: Path) -> None:
    """Print what a saved PAYLOAD of SOURCE becomes: events, ignored and rejected items. Nothing is sent
    or queued (a HubSpot JSON array, a Salesforce SOAP message, a Pipedrive JSON body; SOURCE may also
    be a source declared under [sources.NAME])."""
    mappings = _mappings()
    if source not in (*NAMES, *mappings.sources):
        known = ", ".join((*NAMES, *mappings.sources))
        click.echo(f"crmsync: unknown source {source!r}: expected one of {known}", err=True)
        sys.exit(2)
    try:
        batch = read_payload(source, payload.read_bytes(), mappings)
    except SourceError as exc:
        click.echo(f"crmsync: {payload} cannot be read as a {source} payload: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{len(batch.events)} event(s), {len(batch.ignored)} ignored, {len(batch.rejected)} rejected")
    for mapped in batch.events:
        click.echo(f"event    {printable(mapped.delivery_id)}  {json.dumps(mapped.event)}")
    for item in batch.ignored:
        detail = f"  ({printable(item.detail)})" if item.detail else ""
        click.echo(f"ignored  {printable(item.type)}{detail}")
    for rejected in batch.rejected:
        click.echo(f"rejected {printable(rejected.reason)}  {json.dumps(rejected.identifiers)}")


@click.group("sources", invoke_without_command=True)
@click.pass_context
def sources_command(ctx: click.Context) -> None:
    """The CRM sources: alone, each with its path and whether this environment enables it (as the web
    would read it); `ignored` and `rejected`, what they did not map (kept in Redis; identifiers only)."""
    if ctx.invoked_subcommand is None:
        for line in source_lines(os.environ, _mappings()):
            click.echo(line)


def source_lines(env: Mapping[str, str], mappings: Mappings) -> list[str]:
    """One line per source of the registry, then per source the mappings file declares."""
    lines = []
    for kind in SOURCES:
        try:
            enabled = kind.settings_from_env(env) is not None
            served = "enabled" if enabled else f"off (set {' and '.join(kind.enabled_by)})"
        except SettingsError as exc:  # names the variable, never its value
            served = f"refused: {exc}"
        lines.append(f"{kind.name:<11} POST /webhooks/{kind.name:<11} {kind.title:<45} {served}")
    for name in mappings.sources:
        lines.append(f"{name:<11} POST /webhooks/{name:<11} {DECLARED.title:<45} {mappings.path}")
    return lines


@sources_command.command("rejected")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def rejected_command(limit: int, as_json: bool) -> None:
    """The last rejected items, newest first: when, source, reason, identifiers."""
    redis = connect(command_settings().redis_url)
    items = rejected_items(redis, limit)
    for item in items:
        row = item.to_json()
        if as_json:
            click.echo(json.dumps(row))
        else:
            reason, ids = printable(item.reason), json.dumps(item.identifiers)
            click.echo(f"{row['at']}  {printable(item.source):<10} {reason}  {ids}")
    click.echo(f"{len(items)} rejected item(s) shown (at most {limit})", err=True)


@sources_command.command("ignored")
def ignored_command() -> None:
    """How many items each source ignored and rejected, by type, and how many events it ordered
    without their version field (with the fix)."""
    redis = connect(command_settings().redis_url)
    ignored = ignored_counts(redis)
    for (source, item_type), count in ignored.items():
        click.echo(f"{printable(source):<10} ignored   {printable(item_type):<32} {count}")
    rejected = rejected_type_counts(redis)
    for (source, item_type), count in rejected.items():
        click.echo(f"{printable(source):<10} rejected  {printable(item_type):<32} {count}")
    fallbacks = version_fallbacks(redis)
    for fallback in fallbacks:
        what = printable(f"{fallback.record_type} by {fallback.used}")
        click.echo(
            f"{printable(fallback.source):<10} no version {what:<31} {fallback.count}  fix: {fallback.fix}"
        )
    if not (ignored or rejected or fallbacks):
        click.echo("no CRM source has ignored or rejected anything yet", err=True)
