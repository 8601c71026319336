"""The `sandbox` command: serve both fake APIs locally, configured from the environment."""

from __future__ import annotations

import os
from dataclasses import replace

import click

from sandbox.config import ConfigError, SandboxConfig
from sandbox.server import serve


def _default_port() -> int:
    """Read SANDBOX_PORT, falling back to 5050."""
    raw = os.environ.get("SANDBOX_PORT", "").strip()
    return int(raw) if raw else 5050


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=int, default=_default_port, help="Port to listen on [default: $SANDBOX_PORT or 5050]."
)
@click.option(
    "--api-latency-ms",
    type=click.IntRange(min=0),
    default=None,
    help="Answer every GraphQL call after this many ms [default: $SANDBOX_API_LATENCY_MS or 0].",
)
def sandbox_command(host: str, port: int, api_latency_ms: int | None) -> None:
    """Serve local stand-ins for the customers and personal-data GraphQL APIs."""
    try:
        config = SandboxConfig.from_env()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if api_latency_ms is not None:
        config = replace(config, api_latency_ms=api_latency_ms)
    click.echo(f"Customers API:     http://{host}:{port}/customers/graphql")
    click.echo(f"Personal-data API: http://{host}:{port}/personal-data/graphql")
    serve(config, host=host, port=port)
