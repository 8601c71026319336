"""`crmsync send-sample`: one signed sample webhook, in crmsync's own format or a CRM's."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import click

from crmsync.cli.sender import SAMPLE_SOURCES, SAMPLE_TYPES
from webhooks.sources.standard import ALIAS
from webhooks.sources.standard import NAME as STANDARD

if TYPE_CHECKING:
    import requests

__all__ = ["send_sample_command"]


@click.command("send-sample")
@click.argument("url", required=False)
@click.option(
    "--source", type=click.Choice([*SAMPLE_SOURCES, ALIAS]), default=STANDARD, show_default=True,
    help=f"The format: crmsync's own contract (signed with WEBHOOK_SECRET; `{ALIAS}` is its older name), "
    "or a source's own.",
)  # fmt: skip
@click.option(
    "--type", "event_type", type=click.Choice(SAMPLE_TYPES), default=SAMPLE_TYPES[0], show_default=True,
    help="The event type (crmsync's own contract only).",
)  # fmt: skip
@click.option("--external-id", help="The record's id [default: crm-0001; a CRM's sample has its own].")
@click.option("--name", help="The name a created customer gets [default: each source's sample has its own].")
@click.option(
    "--purchase-id", "purchase_ids", type=click.IntRange(min=1), multiple=True,
    help="A purchase to erase (repeatable) [default: the sandbox fixture's purchases].",
)  # fmt: skip
def send_sample_command(
    url: str | None,
    source: str,
    event_type: str,
    external_id: str | None,
    name: str | None,
    purchase_ids: tuple[int, ...],
) -> None:
    """Send a signed sample webhook to URL (default http://127.0.0.1:8000/webhooks/SOURCE); exit 1
    unless it is accepted. Signed or authenticated with the service's own settings for SOURCE, as
    `crmsync dev` prints them: WEBHOOK_SECRET for crmsync's own contract."""
    import requests

    from crmsync.cli.sender import SAMPLE_IDS, SAMPLE_NAMES, sample_event, send_event, send_sample
    from crmsync.core.settings import SettingsError
    from webhooks.sources.standard import parse_secrets

    source = STANDARD if source == ALIAS else source

    url = url or f"http://127.0.0.1:8000/webhooks/{source}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        _fail(f"send-sample needs an http:// or https:// URL, got {url!r}", 2)
    if source != STANDARD and (event_type != SAMPLE_TYPES[0] or purchase_ids):
        _fail(
            f"--type and --purchase-id are for --source {STANDARD}; the {source} sample creates a customer",
            2,
        )
    external_id = external_id or SAMPLE_IDS[source]
    name = name or SAMPLE_NAMES[source]
    try:
        if source == STANDARD:
            secrets = parse_secrets(os.environ.get("WEBHOOK_SECRET", ""))
            if not secrets:
                _fail("set WEBHOOK_SECRET to the secret the service verifies with", 2)
            response = send_event(url, secrets[0], sample_event(event_type, external_id, name, purchase_ids))
        else:
            response = send_sample(source, url, os.environ, external_id, name)
    except SettingsError as exc:
        _fail(f"configuration error: {exc}", 2)
    except ValueError as exc:
        _fail(str(exc), 2)
    except requests.ConnectionError:
        _fail(f"nothing answers at {url} (is crmsync running? `crmsync dev` starts it)")
    except requests.Timeout:
        _fail(f"{url} did not answer within 10 s")
    except requests.RequestException as exc:
        _fail(f"could not send to {url}: {type(exc).__name__}")
    click.echo(f"HTTP {response.status_code} {_body(response)}")
    if not response.ok:
        sys.exit(1)


def _body(response: requests.Response) -> str:
    try:
        return json.dumps(response.json())
    except ValueError:
        # Whole, on one line: a Salesforce Ack is a few hundred bytes, and cut short it reads as broken.
        return " ".join(response.text.split())


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"crmsync: {message}", err=True)
    sys.exit(code)
